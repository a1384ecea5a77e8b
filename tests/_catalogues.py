"""Small DR10-like catalogues for the tests (fluxes in nanomaggies), made here."""

from __future__ import annotations

import numpy as np
import pandas as pd

BANDS = ("G", "R", "I", "Z", "W1", "W2")


def make_catalogue(n: int, seed: int, *, north_fraction: float = 0.0,
                   colours=(0.8, 0.4, 0.3, 0.6, -0.2), spread: float = 0.12) -> pd.DataFrame:
    """Galaxies around given colours (g-r, r-i, i-z, z-W1, W1-W2) with a redshift ``Z`` that is
    a smooth function of the colours and r, plus DR10 shape columns. Northern rows have no
    i-band measurement (FLUX_IVAR_I = 0)."""
    rng = np.random.default_rng(seed)
    c = np.asarray(colours)[None, :] + spread * rng.standard_normal((n, 5))
    r = rng.uniform(18.0, 21.5, n)
    mags = [r + c[:, 0], r]
    mags.append(r - c[:, 1])
    mags.append(mags[2] - c[:, 2])
    mags.append(mags[3] - c[:, 3])
    mags.append(mags[4] - c[:, 4])
    north = rng.random(n) < north_fraction
    cat = {
        "OBJID": np.arange(n, dtype=np.int64) + 10_000 * seed,
        "RA": rng.uniform(150, 151, n),
        "DEC": rng.uniform(1, 2, n),
        "TYPE": np.array(["REX"] * n),
        "PHOTSYS": np.where(north, "N", "S"),
        "SHAPE_R": rng.uniform(0.3, 2.0, n),
        "SHAPE_E1": rng.normal(0, 0.1, n),
        "SHAPE_E2": rng.normal(0, 0.1, n),
        "SERSIC": rng.uniform(0.5, 4.0, n),
    }
    for b, m in zip(BANDS, mags, strict=True):
        flux = 10 ** ((22.5 - m) / 2.5)
        cat[f"FLUX_{b}"] = flux * (1 + 0.03 * rng.standard_normal(n))
        cat[f"FLUX_IVAR_{b}"] = 1.0 / (0.03 * flux) ** 2
        cat[f"MW_TRANSMISSION_{b}"] = np.full(n, 0.95)
    cat["FLUX_IVAR_I"] = np.where(north, 0.0, cat["FLUX_IVAR_I"])
    cat["FLUX_I"] = np.where(north, 0.0, cat["FLUX_I"])
    z = 0.15 + 0.9 * (c[:, 0] - 0.5) + 0.4 * (c[:, 2] - 0.2) + 0.08 * (r - 19.5)
    cat["Z"] = np.clip(z + 0.01 * rng.standard_normal(n), 0.02, 1.5)
    return pd.DataFrame(cat)
