"""The embedded default sky: a simulated DESI Legacy Survey with 20 spectroscopic surveys.

:func:`simulate` writes, into one directory, files in exactly the schema the real-data
readers produce (DR10 column names, nanomaggies), so that every chapter of the book runs
unchanged on the mock or on real data:

``random.parquet``
    The representative random sample: every galaxy the Legacy Survey would detect
    (optical S/N >= 6) in random sky positions of the footprint (70% of the area is DECam
    south with i-band, 30% BASS/MzLS north without; the deeper south holds ~78% of the
    detections). A pair that the pipeline merges is one source, credited to the member that
    dominates its r-band flux. Milky Way stars are part of it (~20% of the detections, in
    proportion to their simulated surface density; Z_TRUE = 0), typed mostly PSF as a real
    catalogue types them. DR10 columns plus ``PSFSIZE_*``, ``PSFDEPTH_*``, ``FIBERFLUX_*``,
    ``HAS_CUTOUT`` (the object has an image in ``cutouts.h5``) and the simulation-only truth
    ``Z_TRUE``, ``BLEND_FRAC_TRUE`` (fraction of the r-band catalogue flux that belongs to
    neighbours) and ``IS_STAR`` -- a real catalogue has none of them; use them for
    diagnostics only, never as training features. The random sample stands for every
    detection in an area ``random_area_deg2`` (settings), so a selection's surface density
    is its count over that area (:func:`photozsom.data.summary.mock_density_table`).
``spec.parquet``
    The spectroscopic compilation matched to its photometry: the same columns plus ``Z``
    (the measured redshift, including the rare wrong ones), ``Z_ERR``, ``SURVEY``,
    ``PROGRAM``. Spectroscopic targets are drawn from parent catalogues far larger than the
    random sample (each survey's own volume), so OBJIDs never repeat. It holds no stars
    (``IS_STAR`` all False): the compilation keeps galaxy redshifts in 0 < z < 1.6, as a
    real one drops SPECTYPE STAR and z ~ 0 (the few stars a galaxy target list lets in are
    removed by exactly those cuts).
``cutouts.h5``
    g, r, i, z cutouts of every spectroscopic galaxy and of a random subset of the random
    sample, written with :class:`photozsom.embed.store.CutoutStore` (nanomaggies per pixel,
    0.262"/pixel; the i-band is NaN with ``band_mask`` False in the north; ``sigma`` is
    the per-pixel sky noise). Pixels carry the sky noise plus the photon noise of the
    sources, variance ``image / gain``, with ``gain`` the photo-electrons per nanomaggy at
    which the sky noise is the photon noise of a sky of nominal brightness
    (``photometry.SKY_BRIGHTNESS``, in settings.json).
``settings.json``
    What was asked for and what came out (counts per survey, the survey table).

The physics lives in ``population`` (luminosity functions, spectra, sizes),
``sed`` (templates and filter curves), ``photometry`` (depths, noise, blends,
extinction, morphology), ``surveys`` (the survey table) and ``images``
(Fourier-space rendering). Nothing in them refers to photo-z results: outliers arise from
noise, blends, colour degeneracies and wrong spectroscopic redshifts.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from photozsom.embed.store import CutoutStore
from photozsom.schema import COLUMNS
from photozsom.sim import images as mock_images
from photozsom.sim import photometry as mph
from photozsom.sim import population as mpop
from photozsom.sim.sed import get_grid
from photozsom.sim.surveys import SURVEYS, Survey, Targets, assign_redshifts, survey_table

__all__ = ["FILES", "SCALES", "cli_main", "resolve_scale", "simulate"]

#: Named sizes: spectroscopic galaxies, random sample, random-sample cutouts, cutout side.
SCALES: dict[str, dict] = {
    "tiny": {"n_spec": 400, "n_random": 3000, "n_random_cutouts": 100, "cutout_size": 24},
    "ci": {"n_spec": 3000, "n_random": 30000, "n_random_cutouts": 1000, "cutout_size": 32},
    "default": {"n_spec": 25000, "n_random": 250000, "n_random_cutouts": 6000, "cutout_size": 64},
}
#: Output file names.
FILES: dict[str, str] = {"random": "random.parquet", "spec": "spec.parquet", "cutouts": "cutouts.h5",
                         "settings": "settings.json"}
#: Fraction of the random sample in the DECam (south) footprint.
SOUTH_FRACTION: float = 0.7
#: Detection threshold: S/N of the optical (g, r, i, z) fluxes added in quadrature.
DETECTION_SNR: float = 6.0
#: Redshift range of the spectroscopic compilation (the paper's).
Z_SPEC_RANGE: tuple[float, float] = (0.0, 1.6)
#: Smallest number of galaxies per survey programme (fewer for very small simulations).
MIN_PER_SURVEY: int = 8
_VERSION = 2
#: Square degrees per steradian.
SR_PER_DEG2: float = (np.pi / 180.0) ** 2
#: Wall-clock seconds of each stage of the last :func:`simulate` run in this process (for
#: benchmarks; not written to settings.json, which stays deterministic).
LAST_RUN: dict = {}
_COUNTS = {"drawn": 0, "observed": 0}


def resolve_scale(scale, cutout_size: int | None = None) -> dict:
    """Sizes of a simulation.

    Parameters
    ----------
    scale : str, int or dict
        ``"tiny"``, ``"ci"``, ``"default"``; a number of spectroscopic galaxies (the random
        sample is 10x larger, a quarter as many random cutouts); or a dict with any of
        ``n_spec``, ``n_random``, ``n_random_cutouts``, ``cutout_size`` (the rest as for a
        number).
    cutout_size : int, optional
        Overrides the cutout side, pixels.

    Returns
    -------
    dict
        ``n_spec``, ``n_random``, ``n_random_cutouts``, ``cutout_size``.
    """
    if isinstance(scale, str):
        if scale in SCALES:
            out = dict(SCALES[scale])
        elif scale.strip().isdigit():
            return resolve_scale(int(scale), cutout_size)
        else:
            raise ValueError(f"unknown scale {scale!r}: use one of {sorted(SCALES)}, a number of "
                             f"spectroscopic galaxies, or a dict of sizes")
    elif isinstance(scale, (int, np.integer)) and not isinstance(scale, bool):
        n = int(scale)
        out = {"n_spec": n, "n_random": 10 * n, "n_random_cutouts": max(n // 4, 1), "cutout_size": 64}
    elif isinstance(scale, dict):
        unknown = set(scale) - {"n_spec", "n_random", "n_random_cutouts", "cutout_size"}
        if unknown:
            raise ValueError(f"unknown scale keys {sorted(unknown)}; allowed: n_spec, n_random, "
                             f"n_random_cutouts, cutout_size")
        n = int(scale.get("n_spec", 3000))
        out = {"n_spec": n, "n_random": 10 * n, "n_random_cutouts": max(n // 4, 1), "cutout_size": 64}
        out.update({k: int(v) for k, v in scale.items()})
    else:
        raise TypeError(f"scale must be a name, a number or a dict, got {type(scale).__name__}")
    if cutout_size is not None:
        out["cutout_size"] = int(cutout_size)
    if out["n_spec"] < 2 * len(SURVEYS):
        raise ValueError(f"n_spec must be at least {2 * len(SURVEYS)} (two per survey programme), "
                         f"got {out['n_spec']}")
    if out["n_random"] < 1 or out["cutout_size"] < 8:
        raise ValueError(f"n_random must be >= 1 and cutout_size >= 8 pixels, got {out}")
    out["n_random_cutouts"] = int(np.clip(out["n_random_cutouts"], 0, out["n_random"]))
    return out


# ----------------------------------------------------------------------------------------------------
# truth tables
# ----------------------------------------------------------------------------------------------------
def _take(d: dict, idx) -> dict:
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in d.items()}


def _concat(parts: list) -> dict:
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _draw_truth(rng, grid, lc, n, limits, z_range=None, south_fraction=SOUTH_FRACTION,
                margin: float = 0.5) -> dict:
    """Candidates from the light cone with true photometry, pre-filtered on true magnitudes."""
    _COUNTS["drawn"] += n
    s = lc.sample(rng, n, limits, z_range)
    t = {"z": s["z"], "mag_abs": s["mag_abs"], "red": s["red"]}
    t.update(mpop.morphology(rng, t["z"], t["mag_abs"], t["red"]))
    t["coeffs"], t["ebv_int"] = mpop.sed_coefficients(rng, grid, t["z"], t["mag_abs"], t["red"], t["q"])
    t["photsys"] = np.where(rng.random(n) < south_fraction, "S", "N")
    t["is_star"] = np.zeros(n, bool)
    mph.add_photometry(grid, lc.cosmo, t)
    T = Targets(t, {}, rng)
    ok = np.zeros(n, bool)
    for band, m in limits.items():
        ok |= T.true(band) < m + margin
    return _take(t, np.flatnonzero(ok))


def _place(rng, t: dict) -> dict:
    t["ra"], t["dec"], t["gal_b"] = mpop.sky_positions(rng, t["photsys"])
    return t


def _detected(cat: dict) -> np.ndarray:
    chi2 = np.zeros(cat["FLUX_G"].size)
    for b in ("G", "R", "I", "Z"):
        f = np.nan_to_num(cat[f"FLUX_{b}"].astype(np.float64))
        chi2 += np.clip(f, 0, None) ** 2 * cat[f"FLUX_IVAR_{b}"]
    return np.sqrt(chi2) >= DETECTION_SNR


def _build_pool(rng, grid, lc, n_pool: int) -> mph.NeighbourPool:
    lim = mph.NEIGHBOUR_MAG_LIMIT
    limits = {"R_S": lim}
    s = lc.sample(rng, n_pool, limits)
    t = {"z": s["z"], "mag_abs": s["mag_abs"], "red": s["red"]}
    t.update(mpop.morphology(rng, t["z"], t["mag_abs"], t["red"]))
    t["coeffs"], t["ebv_int"] = mpop.sed_coefficients(rng, grid, t["z"], t["mag_abs"], t["red"], t["q"])
    mph.add_photometry(grid, lc.cosmo, t)
    r = 22.5 - 2.5 * np.log10(t["flux_ls"][:, 1])
    keep = r < lim
    frac = keep.mean()
    per_arcsec2 = lc.expected_per_sr(limits) * frac / (180 / np.pi * 3600) ** 2
    return mph.NeighbourPool(_take(t, np.flatnonzero(keep)), per_arcsec2)


def _observe(rng, t, pool, seed):
    _COUNTS["observed"] += t["z"].size
    if "ra" not in t:  # stars come with their positions
        _place(rng, t)
    nb = mph.draw_neighbours(rng, t["z"], pool)
    if t["is_star"].any():  # a star has no physical companions
        keep = ~(nb["companion"] & t["is_star"][nb["owner"]])
        nb = {k: v[keep] for k, v in nb.items()}
    cat, obs = mph.observe(rng, t, nb, pool, seed)
    return nb, cat, obs


def _random_sample(rng, grid, lc, pool, n_random, seed, progress) -> tuple[dict, dict, dict, dict, dict]:
    """The random sample: detected galaxies and stars in proportion to their surface densities.

    Returns truth, catalogue, observing conditions and neighbours of the ``n_random`` sources
    (rows shuffled), and ``{"galaxies": ..., "stars": ...}``, the detected surface densities
    in deg^-2.
    """
    from tqdm.auto import tqdm

    limits = {}
    for ps in ("S", "N"):
        for b in ("G", "R", "Z"):
            limits[f"{b}_{ps}"] = mph.DEPTH_PSF[ps][b] + 1.5
    limits["I_S"] = mph.DEPTH_PSF["S"]["I"] + 1.5
    parts = []
    have, drawn, eff, n_det_all = 0, 0, 0.3, 0
    with tqdm(total=n_random, desc="random sample", unit="gal", disable=None if progress else True) as bar:
        while have < n_random:
            want = n_random - have
            batch = int(np.clip(1.2 * want / max(eff, 0.01) + 200, 1000, 200_000))
            t = _draw_truth(rng, grid, lc, batch, limits, margin=0.0)
            nb, cat, obs = _observe(rng, t, pool, seed)
            # a pair merged by the pipeline is one catalogue source, credited to its brighter
            # member: an object whose r-band catalogue flux is mostly a neighbour's is that
            # neighbour's detection, drawn (with its own redshift) when the neighbour is a primary
            own = ~(np.nan_to_num(cat["BLEND_FRAC_TRUE"]) > 0.5)
            det_all = np.flatnonzero(_detected(cat) & own)
            n_det_all += det_all.size
            det = det_all[:want]
            drawn += batch
            have += det.size
            eff = max(have / drawn, 1e-3)
            n_t = t["z"].size
            parts.append((_take(t, det), _take(cat, det), _take(obs, det),
                          mph.subset_neighbours(nb, det, n_t)))
            bar.update(det.size)
    # surface density of detected galaxies: candidates per sr times the detected fraction
    gal_per_deg2 = lc.expected_per_sr(limits) * n_det_all / drawn * SR_PER_DEG2
    # stars, in proportion to their detected surface density
    stars = mpop.get_star_counts()
    star_parts, n_star, have_s, drawn_s, det_s = [], None, 0, 0, 0
    while n_star is None or have_s < n_star:
        batch = 4000 if n_star is None else int(np.clip(1.3 * (n_star - have_s) / max(det_s / drawn_s, 1e-3)
                                                        + 200, 1000, 200_000))
        t = stars.sample(rng, batch, limits)
        nb, cat, obs = _observe(rng, t, pool, seed)
        own = ~(np.nan_to_num(cat["BLEND_FRAC_TRUE"]) > 0.5)
        det_all = np.flatnonzero(_detected(cat) & own)
        drawn_s += batch
        det_s += det_all.size
        if n_star is None:
            star_per_deg2 = stars.expected_per_sr(limits) * det_s / drawn_s * SR_PER_DEG2
            n_star = round(n_random * star_per_deg2 / (star_per_deg2 + gal_per_deg2))
        det = det_all[:max(n_star - have_s, 0)]
        have_s += det.size
        star_parts.append((_take(t, det), _take(cat, det), _take(obs, det), mph.subset_neighbours(nb, det, batch)))
    star_per_deg2 = stars.expected_per_sr(limits) * det_s / drawn_s * SR_PER_DEG2
    t_g, cat_g, obs_g, nb_g = _merge(parts)
    keep = np.arange(n_random - n_star)
    gal = (_take(t_g, keep), _take(cat_g, keep), _take(obs_g, keep),
           mph.subset_neighbours(nb_g, keep, t_g["z"].size))
    t_s, cat_s, obs_s, nb_s = _merge(star_parts)
    for d in (t_s, t_g):
        for k in ("temp", "dist_pc"):
            d.pop(k, None)
    merged = _permute(*_merge([gal, (t_s, cat_s, obs_s, nb_s)]), rng.permutation(n_random))
    return (*merged, {"galaxies": gal_per_deg2, "stars": star_per_deg2})


def _permute(t, cat, obs, nb, perm):
    """Reorder the objects (and re-index their neighbours) so that row order carries no information."""
    t, cat, obs = _take(t, perm), _take(cat, perm), _take(obs, perm)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    nb = {**nb, "owner": inv[nb["owner"]]}
    order = np.argsort(nb["owner"], kind="stable")
    return t, cat, obs, {k: v[order] for k, v in nb.items()}


def _merge(parts):
    t = _concat([p[0] for p in parts])
    cat = _concat([p[1] for p in parts])
    obs = _concat([p[2] for p in parts])
    offs = np.cumsum([0] + [p[0]["z"].size for p in parts])
    nb = _concat([{**p[3], "owner": p[3]["owner"] + o} for p, o in zip(parts, offs[:-1])])
    return t, cat, obs, nb


def _survey_counts(n_spec: int) -> list[int]:
    share = np.array([s.share for s in SURVEYS])
    share = share / share.sum()
    floor = int(np.clip(n_spec // 200, 2, MIN_PER_SURVEY))
    counts = np.maximum(np.round(share * n_spec).astype(int), floor)
    # keep the total: take the excess from the largest programmes
    excess = counts.sum() - n_spec
    order = np.argsort(-counts, kind="stable")
    i = 0
    while excess != 0:
        j = order[i % 3]
        step = 1 if excess > 0 else -1
        counts[j] -= step
        excess -= step
        i += 1
    return counts.tolist()


def _fibre_neighbour(t, cat, nb, pool):
    """Redshift of the brightest neighbour in the fibre and whether it outshines the target."""
    n = t["z"].size
    d = np.hypot(nb["dx"], nb["dy"])
    f_nb = mph.region_fluxes(pool.t["flux_ls"][nb["pool"]], t["photsys"][nb["owner"]])[:, 1]
    contrib = np.nan_to_num(f_nb) * 0.8 * np.exp(-0.5 * (d / 0.55) ** 2)
    best = np.zeros(n)
    z_best = np.full(n, np.nan)
    if contrib.size:
        order = np.lexsort((contrib, nb["owner"]))
        last = np.r_[nb["owner"][order][1:] != nb["owner"][order][:-1], True]
        idx = order[last]
        best[nb["owner"][idx]] = contrib[idx]
        z_best[nb["owner"][idx]] = pool.t["z"][nb["pool"][idx]]
    target = np.nan_to_num(cat["FIBERFLUX_R"] / cat["MW_TRANSMISSION_R"])
    return z_best, best > target


def _one_survey(rng, grid, lc, pool, survey: Survey, n_want: int, seed: int) -> tuple:
    parts = []
    have, drawn, eff, it = 0, 0, 0.05, 0
    while have < n_want and it < 60:
        it += 1
        want = n_want - have
        batch = int(np.clip(1.3 * want / max(eff, 1e-4) + 100, 500, 200_000))
        t = _draw_truth(rng, grid, lc, batch, survey.prelimit, survey.z_range, survey.south_fraction)
        drawn += batch
        if t["z"].size == 0:
            eff = max(have / drawn, 1e-5)
            continue
        nb, cat, obs = _observe(rng, t, pool, seed)
        T = Targets(t, cat, rng)
        with np.errstate(invalid="ignore"):
            sel = survey.select(T) & _detected(cat)
        p = np.nan_to_num(survey.success(T))
        ok = sel & (rng.random(sel.size) < p)
        idx = np.flatnonzero(ok)
        z_nb, dom = _fibre_neighbour(t, cat, nb, pool)
        zm, ze = assign_redshifts(rng, survey, t["z"][idx], z_nb[idx], dom[idx])
        good = (zm > Z_SPEC_RANGE[0]) & (zm < Z_SPEC_RANGE[1])
        idx, zm, ze = idx[good][:want], zm[good][:want], ze[good][:want]
        have += idx.size
        eff = max(have / drawn, 1e-5)
        n_t = t["z"].size
        cat_s = _take(cat, idx)
        cat_s["Z"] = zm
        cat_s["Z_ERR"] = ze.astype(np.float32)
        cat_s["SURVEY"] = np.full(idx.size, survey.name, dtype=object)
        cat_s["PROGRAM"] = np.full(idx.size, survey.program, dtype=object)
        parts.append((_take(t, idx), cat_s, _take(obs, idx), mph.subset_neighbours(nb, idx, n_t)))
    if have < n_want:
        warnings.warn(f"{survey.name}/{survey.program}: only {have} of {n_want} galaxies found after "
                      f"{drawn} candidates", RuntimeWarning, stacklevel=2)
    return _merge(parts) if parts else None


# ----------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------
def _column_order(cat: dict) -> list[str]:

    first = [c for c in COLUMNS if c in cat]
    return first + [c for c in cat if c not in first]


def _write_parquet(cat: dict, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, names = [], []
    for name in _column_order(cat):
        v = cat[name]
        if v.dtype == object or v.dtype.kind in "US":
            arrays.append(pa.array(v.astype(str).tolist(), type=pa.string()))
        else:
            arrays.append(pa.array(v))
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd", compression_level=3, write_statistics=True,
                   use_dictionary=["PHOTSYS", "TYPE", "SURVEY", "PROGRAM"] if "SURVEY" in cat
                   else ["PHOTSYS", "TYPE"], data_page_version="2.0")
    os.replace(tmp, path)


def _render_cutouts(rng, store, t, obs, nb, pool, objid, size, progress, batch=48):
    from tqdm.auto import tqdm

    n = t["z"].size
    pixscale = mock_images.PIXSCALE
    pad = max(8, size // 4)
    half_pad = (size / 2 + pad - 1) * pixscale
    bands = [0, 1, 2, 3]  # g r i z of the catalogue order
    south = np.asarray(t["photsys"]) == "S"
    true = mph.region_fluxes(t["flux_ls"], t["photsys"])
    with tqdm(total=n, desc="cutouts", unit="img", disable=None if progress else True) as bar:
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            ids = np.arange(lo, hi)
            b = ids.size
            sub_nb = mph.subset_neighbours(nb, ids, n)
            extra = mph.draw_neighbours(rng, t["z"][ids], pool, annulus=(mph.NEIGHBOUR_RADIUS, half_pad))
            owner = np.concatenate([sub_nb["owner"], extra["owner"]])
            dx = np.concatenate([sub_nb["dx"], extra["dx"]]) / pixscale
            dy = np.concatenate([sub_nb["dy"], extra["dy"]]) / pixscale
            pidx = np.concatenate([sub_nb["pool"], extra["pool"]])
            inside = (np.abs(dx) < size / 2 + pad - 1) & (np.abs(dy) < size / 2 + pad - 1)
            owner, dx, dy, pidx = owner[inside], dx[inside], dy[inside], pidx[inside]
            c0 = (size - 1) / 2.0
            off = rng.uniform(-0.5, 0.5, (b, 2))
            mw = obs["mw"][ids][:, bands]
            f_prim = true[ids][:, bands] * mw
            f_nb = mph.region_fluxes(pool.t["flux_ls"][pidx], t["photsys"][ids][owner])[:, bands] * mw[owner]
            cut = np.concatenate([np.arange(b), owner])
            x = np.concatenate([c0 + off[:, 0], c0 + off[owner, 0] + dx])
            y = np.concatenate([c0 + off[:, 1], c0 + off[owner, 1] + dy])
            flux = np.concatenate([f_prim, f_nb])
            ser = np.concatenate([t["sersic"][ids], pool.t["sersic"][pidx]])
            rh = np.concatenate([t["r_half"][ids], pool.t["r_half"][pidx]])
            q = np.concatenate([t["q"][ids], pool.t["q"][pidx]])
            phi = np.concatenate([t["phi"][ids], pool.t["phi"][pidx]])
            order = np.argsort(cut, kind="stable")
            img = mock_images.render_batch(size, cut[order], x[order], y[order], flux[order], ser[order],
                                           rh[order], q[order], phi[order], obs["fwhm"][ids][:, bands],
                                           pixscale=pixscale, pad=pad)
            # star halo pedestal with a gradient, then sky noise
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
            grad = (obs["halo_grad"][ids, 0, None, None] * (xx - c0)[None] / size
                    + obs["halo_grad"][ids, 1, None, None] * (yy - c0)[None] / size)
            halo = obs["halo"][ids][:, bands]
            img += (np.nan_to_num(halo)[:, :, None, None] * (1 + grad[:, None])).astype(np.float32)
            sig = obs["sigma_pix"][ids][:, bands].astype(np.float32)
            gain = mph.electrons_per_nanomaggy(sig)
            img = mock_images.add_noise(rng, img, sig, gain)
            mask = np.ones((b, 4), bool)
            mask[~south[ids], 2] = False
            img[~mask] = np.nan
            sig[~mask] = np.nan
            store.append(img, mask, objid[ids], sigma=sig)
            bar.update(b)


def _settings_request(sizes: dict, seed: int) -> dict:
    return {"version": _VERSION, "seed": int(seed), **sizes}


def simulate(out_dir: str | os.PathLike, scale="ci", seed: int = 0, cutout_size: int | None = None,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Simulate the Legacy Survey sky, its spectroscopic compilation and image cutouts.

    Parameters
    ----------
    out_dir : path
        Directory to write ``random.parquet``, ``spec.parquet``, ``cutouts.h5`` and
        ``settings.json`` into (created).
    scale : str, int or dict
        ``"ci"`` (3,000 spectroscopic galaxies with 32-pixel cutouts, 30,000 random; about a
        minute), ``"default"`` (25,000 with 64-pixel cutouts, 250,000 random, 6,000 random
        cutouts; the book), ``"tiny"`` (tests), a number of spectroscopic galaxies, or a dict
        of sizes (see :func:`resolve_scale`).
    seed : int
        Random seed: the same seed gives byte-identical Parquet files and identical cutouts.
    cutout_size : int, optional
        Cutout side in pixels (0.262"/pixel), overriding the scale's.
    overwrite : bool
        Rewrite existing files. When False and the directory already holds a simulation made
        with the same scale and seed, nothing is done; a different one raises.
    progress : bool
        Show progress bars (quiet when not a TTY).

    Returns
    -------
    dict
        ``{"random": Path, "spec": Path, "cutouts": Path, "settings": Path}``.

    Raises
    ------
    FileExistsError
        Files from a different simulation exist and ``overwrite`` is False.

    Examples
    --------
    >>> paths = simulate("runs/ci/sky", scale="ci", seed=0)     # doctest: +SKIP
    >>> spec = pd.read_parquet(paths["spec"])                    # doctest: +SKIP
    """

    sizes = resolve_scale(scale, cutout_size)
    seed = int(seed)
    out = Path(out_dir)
    paths = {k: out / v for k, v in FILES.items()}
    request = _settings_request(sizes, seed)
    if paths["settings"].exists() and not overwrite:
        try:
            old = json.loads(paths["settings"].read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("request") == request and all(p.exists() for p in paths.values()):
            return paths
        raise FileExistsError(f"{out} holds a different simulation ({old.get('request')}); "
                              f"pass overwrite=True (--overwrite on the command line) or choose "
                              f"another directory")
    out.mkdir(parents=True, exist_ok=True)
    if paths["settings"].exists():
        paths["settings"].unlink()

    import time

    clock = {"start": time.perf_counter()}
    _COUNTS.update(drawn=0, observed=0)
    ss = np.random.SeedSequence(seed)
    (s_pool, s_rand, s_spec, s_img, s_id) = ss.spawn(5)
    grid = get_grid()
    lc = mpop.LightCone(grid)
    n_pool = int(np.clip(4 * (sizes["n_spec"] + sizes["n_random_cutouts"]), 4000, 60000))
    pool = _build_pool(np.random.default_rng(s_pool), grid, lc, n_pool)

    # -- random sample --------------------------------------------------------------------------
    clock["setup"] = time.perf_counter()
    t_r, cat_r, obs_r, nb_r, per_deg2 = _random_sample(np.random.default_rng(s_rand), grid, lc, pool,
                                             sizes["n_random"], seed, progress)
    clock["random"] = time.perf_counter()
    # -- spectroscopic surveys ----------------------------------------------------------------------
    from tqdm.auto import tqdm

    counts = _survey_counts(sizes["n_spec"])
    parts = []
    for survey, n_s, s_s in tqdm(list(zip(SURVEYS, counts, s_spec.spawn(len(SURVEYS)))), desc="surveys",
                                 disable=None if progress else True):
        got = _one_survey(np.random.default_rng(s_s), grid, lc, pool, survey, n_s, seed)
        if got is not None:
            parts.append(got)
    t_s, cat_s, obs_s, nb_s = _merge(parts)
    # shuffle the compilation so that row order carries no survey information
    rng_id = np.random.default_rng(s_id)
    t_s, cat_s, obs_s, nb_s = _permute(t_s, cat_s, obs_s, nb_s, rng_id.permutation(t_s["z"].size))
    # OBJIDs: unique across both tables, carrying no order information
    n_r, n_s = t_r["z"].size, t_s["z"].size
    ids = rng_id.permutation(n_r + n_s).astype(np.int64) + 1
    for cat, t, id_part in ((cat_r, t_r, ids[:n_r]), (cat_s, t_s, ids[n_r:])):
        cat["OBJID"] = id_part
        cat["RA"] = t["ra"]
        cat["DEC"] = t["dec"]
        cat["PHOTSYS"] = np.asarray(t["photsys"], dtype=object)
        cat["Z_TRUE"] = t["z"]
        cat["IS_STAR"] = np.asarray(t["is_star"], bool)
    has_cut = np.zeros(n_r, bool)
    has_cut[rng_id.choice(n_r, sizes["n_random_cutouts"], replace=False)] = True
    cat_r["HAS_CUTOUT"] = has_cut
    cat_s["HAS_CUTOUT"] = np.ones(n_s, bool)
    clock["spec"] = time.perf_counter()
    _write_parquet(cat_r, paths["random"])
    _write_parquet(cat_s, paths["spec"])
    clock["catalogues"] = time.perf_counter()

    # -- cutouts --------------------------------------------------------------------------------------
    size = sizes["cutout_size"]
    rng_img = np.random.default_rng(s_img)
    sub = np.flatnonzero(has_cut)
    nb_rsub = mph.subset_neighbours(nb_r, sub, n_r)
    store = CutoutStore.create(paths["cutouts"], size, overwrite=True)
    try:
        _render_cutouts(rng_img, store, t_s, obs_s, nb_s, pool, cat_s["OBJID"], size, progress)
        _render_cutouts(rng_img, store, _take(t_r, sub), _take(obs_r, sub), nb_rsub, pool,
                        cat_r["OBJID"][sub], size, progress)
    finally:
        store.close()
    clock["cutouts"] = time.perf_counter()

    # -- settings ---------------------------------------------------------------------------------------
    survey_n = {}
    for name in cat_s["SURVEY"]:
        survey_n[name] = survey_n.get(name, 0) + 1
    settings = {
        "request": request,
        "n_random": int(n_r),
        "n_spec": int(n_s),
        "n_cutouts": int(n_s + sub.size),
        "cutout_size": size,
        "pixscale_arcsec": mock_images.PIXSCALE,
        "south_fraction_random": SOUTH_FRACTION,
        "detection_snr": DETECTION_SNR,
        "z_spec_range": list(Z_SPEC_RANGE),
        "depth_psf_5sigma_ab": mph.DEPTH_PSF,
        "seeing_fwhm_arcsec": mph.SEEING,
        "sky_brightness_ab_arcsec2": {"S": dict(mph.SKY_BRIGHTNESS),
                                      "N": {b: v for b, v in mph.SKY_BRIGHTNESS.items() if b != "I"}},
        "extinction_coefficients": mph.R_EXT,
        "neighbour_density_per_arcsec2": round(pool.density, 6),
        "random_density_per_deg2": {k: round(float(v), 3) for k, v in per_deg2.items()},
        "random_area_deg2": round(float(n_r / sum(per_deg2.values())), 6),
        "star_fraction_random": round(float(cat_r["IS_STAR"].mean()), 6),
        "blend_scale_fwhm": mph.BLEND_SCALE_FWHM,
        "luminosity_functions": {k: vars(v) for k, v in mpop.POPULATIONS.items()},
        "spec_counts": dict(sorted(survey_n.items(), key=lambda kv: -kv[1])),
        "surveys": survey_table().drop(columns=["rule"]).to_dict(orient="records"),
        "cosmology": "Planck18",
        "templates": "kcorrect-default-v4 (Blanton & Roweis 2007)",
    }
    paths["settings"].write_text(json.dumps(settings, indent=1, default=float))
    c = clock
    LAST_RUN.clear()
    LAST_RUN.update({
        "seconds_setup": c["setup"] - c["start"], "seconds_random": c["random"] - c["setup"],
        "seconds_spec": c["spec"] - c["random"], "seconds_write": c["catalogues"] - c["spec"],
        "seconds_cutouts": c["cutouts"] - c["catalogues"], "seconds_total": time.perf_counter() - c["start"],
        "n_random": int(n_r), "n_spec": int(n_s), "n_cutouts": int(n_s + sub.size), "cutout_size": size,
        "n_candidates_drawn": _COUNTS["drawn"], "n_candidates_observed": _COUNTS["observed"],
    })
    return paths


def cli_main(args) -> int:
    """``photozsom simulate OUT --scale ci|default|N --seed S [--cutout-size P] [--overwrite]``."""
    import time

    t0 = time.time()
    try:
        paths = simulate(args.out_dir, scale=args.scale, seed=args.seed, cutout_size=args.cutout_size,
                         overwrite=args.overwrite, progress=True)
    except (ValueError, TypeError, FileExistsError) as err:
        print(f"photozsom simulate: {err}")
        return 2
    settings = json.loads(paths["settings"].read_text())
    print(f"wrote {settings['n_random']:,} random sources ({settings['star_fraction_random']:.0%} stars) and "
          f"{settings['n_spec']:,} spectroscopic galaxies, "
          f"{settings['n_cutouts']:,} cutouts of {settings['cutout_size']} px to {args.out_dir} "
          f"in {time.time() - t0:.0f} s")
    for name, n in settings["spec_counts"].items():
        print(f"  {name:10s} {n:8,d}")
    return 0
