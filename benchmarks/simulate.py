"""Speed of the simulated sky: galaxies per second, cutouts per second, peak memory.

Usage::

    python benchmarks/simulate.py [--quick] [--scale ci|default|N] [--out DIR]

Two peers are measured in the same run, on small samples:

- **catalogue**: the vectorised SED-grid photometry (:meth:`SEDGrid.maggies`) against calling
  ``speclite`` once per galaxy on its redshifted spectrum (the obvious, slow way);
- **images**: the batched Fourier-space renderer (:func:`mock_images.render_batch`) against
  ``astropy.modeling.models.Sersic2D`` evaluated per galaxy on an oversampled grid and
  convolved with a ``Moffat2D`` PSF by ``scipy.signal.fftconvolve``.

Then the whole :func:`photozsom.sim.simulate` runs at the chosen scale (``default``
unless ``--quick``) and its wall time per stage, throughput and peak resident memory are
printed. The default scale must build in under 15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def bench_photometry(n_fast: int = 200_000, n_slow: int = 200) -> tuple[float, float]:
    import speclite.filters

    from photozsom.sim.sed import (
        GRID_FILTERS,
        get_grid,
        load_templates,
        madau_transmission,
    )

    grid = get_grid()
    rng = np.random.default_rng(0)
    bands = ["G_S", "R_S", "I_S", "Z_S", "W1", "W2"]
    coeffs = rng.random((n_fast, 6))
    z = rng.uniform(0.01, 1.5, n_fast)
    ebv = rng.uniform(0, 0.3, n_fast)
    t0 = time.perf_counter()
    grid.maggies(coeffs, z, ebv, bands)
    fast = n_fast / (time.perf_counter() - t0)
    wave, flux = load_templates()
    filt = speclite.filters.load_filters(*[GRID_FILTERS[b] for b in bands])
    t0 = time.perf_counter()
    for i in range(n_slow):
        obs = wave * (1 + z[i])
        spec = coeffs[i] @ flux * madau_transmission(obs, z[i]) / (1 + z[i])
        filt.get_ab_maggies(spec, obs)
    slow = n_slow / (time.perf_counter() - t0)
    return fast, slow


def bench_images(size: int = 64, n_fast: int = 512, n_slow: int = 16) -> tuple[float, float]:
    from astropy.modeling.models import Moffat2D, Sersic2D
    from scipy.signal import fftconvolve

    from photozsom.sim import images as mock_images

    rng = np.random.default_rng(1)
    per = 5  # sources per cutout (galaxy + neighbours)
    n_src = n_fast * per
    cut = np.repeat(np.arange(n_fast), per)
    x = rng.uniform(0, size, n_src)
    y = rng.uniform(0, size, n_src)
    flux = rng.uniform(1, 50, (n_src, 4))
    n = rng.uniform(0.5, 5, n_src)
    rh = rng.uniform(0.1, 2.0, n_src)
    q = rng.uniform(0.3, 1, n_src)
    phi = rng.uniform(0, np.pi, n_src)
    fwhm = rng.uniform(1.0, 1.6, (n_fast, 4))
    t0 = time.perf_counter()
    for lo in range(0, n_fast, 48):
        sl = (cut >= lo) & (cut < lo + 48)
        mock_images.render_batch(size, cut[sl] - lo, x[sl], y[sl], flux[sl], n[sl], rh[sl], q[sl], phi[sl],
                                 fwhm[lo:lo + 48])
    fast = n_fast / (time.perf_counter() - t0)
    over = 3
    yy, xx = np.mgrid[0:size * over, 0:size * over] / over
    ky, kx = np.mgrid[-15:16, -15:16] / 1.0
    t0 = time.perf_counter()
    for i in range(n_slow):
        img = np.zeros((4, size, size))
        for b in range(4):
            a = fwhm[i, b] / 0.262 / (2 * np.sqrt(2 ** (1 / 3.5) - 1))
            psf = Moffat2D(1.0, 0, 0, a, 3.5)(kx, ky)
            psf /= psf.sum()
            model = np.zeros_like(xx)
            for s in range(i * per, (i + 1) * per):
                model += Sersic2D(1.0, rh[s] / 0.262, n[s], x[s], y[s], 1 - q[s], phi[s])(xx, yy)
            binned = model.reshape(size, over, size, over).mean(axis=(1, 3))
            img[b] = fftconvolve(binned, psf, mode="same")
    slow = n_slow / (time.perf_counter() - t0)
    return fast, slow


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small peers and the 'ci' scale")
    p.add_argument("--scale", default=None, help="scale of the full run (default: 'default'; 'ci' with --quick)")
    p.add_argument("--out", default=None, help="directory for the simulated files (default: a temporary one)")
    a = p.parse_args(argv)
    scale = a.scale or ("ci" if a.quick else "default")

    fast, slow = bench_photometry(50_000 if a.quick else 200_000, 50 if a.quick else 200)
    print(f"photometry: SED grid {fast:12,.0f} galaxies/s | speclite per galaxy {slow:8,.0f} galaxies/s "
          f"| ratio {fast / slow:8.0f}x")
    fast, slow = bench_images(64, 192 if a.quick else 512, 4 if a.quick else 16)
    print(f"images (64 px, 5 sources, 4 bands): Fourier batch {fast:8,.1f} cutouts/s | astropy Sersic2D + "
          f"fftconvolve {slow:6,.2f} cutouts/s | ratio {fast / slow:6.0f}x")

    from photozsom.sim import sky as mock

    tmp = None
    out = Path(a.out) if a.out else Path(tmp := tempfile.mkdtemp(prefix="photozsom-sim-"))
    try:
        t0 = time.perf_counter()
        paths = mock.simulate(out, scale=scale, seed=0, overwrite=True, progress=True)
        wall = time.perf_counter() - t0
        r = dict(mock.LAST_RUN)
        size_gb = paths["cutouts"].stat().st_size / 1e9
        n_cat = r["n_random"] + r["n_spec"]
        t_cat = r["seconds_setup"] + r["seconds_random"] + r["seconds_spec"] + r["seconds_write"]
        print(f"simulate(scale={scale!r}): {wall:7.1f} s wall ({wall / 60:.1f} min)")
        print(f"  setup (SED grid, tables, neighbour pool) {r['seconds_setup']:7.1f} s")
        print(f"  random sample   {r['n_random']:9,d} sources   {r['seconds_random']:7.1f} s")
        print(f"  spectroscopic   {r['n_spec']:9,d} galaxies  {r['seconds_spec']:7.1f} s")
        print(f"  catalogue throughput: {n_cat / t_cat:9,.0f} kept galaxies/s, "
              f"{r['n_candidates_observed'] / t_cat:9,.0f} observed candidates/s "
              f"({r['n_candidates_drawn']:,} drawn, {r['n_candidates_observed']:,} observed)")
        print(f"  cutouts {r['n_cutouts']:,} x {r['cutout_size']} px: {r['seconds_cutouts']:7.1f} s, "
              f"{r['n_cutouts'] / r['seconds_cutouts']:7.1f} cutouts/s; store {size_gb:.2f} GB")
        print(f"  peak resident memory {_peak_rss_gb():.2f} GB")
        import json

        import pandas as pd

        from photozsom.data.summary import mock_density_table

        settings = json.loads(paths["settings"].read_text())
        print(f"  stars: {settings['star_fraction_random']:.1%} of the random sample")
        with pd.option_context("display.width", 200, "display.max_colwidth", 40):
            print(mock_density_table(pd.read_parquet(paths["random"]), settings)
                  .drop(columns=["selection", "reference"]).round(2))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
