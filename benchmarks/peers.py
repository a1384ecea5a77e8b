"""Benchmark: photozsom against RAIL's estimators, same galaxies, same photometry, one metric code.

Usage::

    pip install -e ".[rail,sim]" pz-rail-flexzboost pz-rail-gpz-v1 pz-rail-dnf pz-rail-sklearn \\
        pz-rail-cmnn pz-rail-tpz        # after torch==2.13.0 (CPU), as tasks.py does
    python benchmarks/peers.py                                   # both samples, 5k and 20k
    python benchmarks/peers.py --sizes 2000 --n-test 2000 --codes photozsom knn   # quick look
    python benchmarks/peers.py --out benchmarks/results/peers.csv   # the stored table

What runs
---------
Two samples:

* ``desi``: the shipped DESI EDR BGS galaxies (:func:`photozsom.data.desi_edr.load_bgs_north`),
  split by rosette as in the book's adapt chapter: rosettes 18 and 19 are the test sample
  (``--n-test`` of them, seeded), the other rosettes the training pool.
* ``sky``: the default simulated sky (:func:`photozsom.sim.simulate`, seed 0), simulated
  once into ``--sky`` with ``--sky-n`` spectroscopic galaxies (tiny cutouts: only the
  catalogue is used); ``--n-test`` seeded galaxies are the test sample, the rest the pool.

From each pool the first N of a seeded permutation train every code (N in ``--sizes``; the
smaller set is inside the larger). Every code sees the same five bands, g, r, z, W1, W2
(the bands both samples have for every galaxy): photozsom reads the DR10 fluxes through its
RAIL stage (:class:`photozsom.rail.PhotoZInformer`, features ``r, g-r, r-z, z-W1, W1-W2``;
it holds out 10% of the N for early stopping and its default global recalibration), the RAIL codes read the same fluxes as
extinction-corrected asinh magnitudes (:func:`photozsom.features.magnitudes`,
``mag_g ... mag_w2``, reference band ``mag_r``) with 1-sigma errors
``(2.5 / ln 10) sigma_f / sqrt(f^2 + 4 b^2)`` (the asinh magnitude's error), sigma_f from
``FLUX_IVAR``. The shipped DESI table has no inverse variances: there every band gets
``sigma_f = b``, the asinh softening (:data:`photozsom.features.SOFTENING`, about the 1-sigma
flux error at DR10 median depth), for every code alike.

The RAIL codes run with their defaults, except: output grid ``zmin=0, zmax=1.6,
nzbins=641``; and **CMNN**, whose ``_computecolordata`` (pz-rail-cmnn 2.0.2) stores the first
colour's error as a *variance* ``e_g^2 + e_r^2`` and the others as standard deviations
``sqrt(e_a^2 + e_b^2)``: it runs twice, as shipped (``cmnn``) and with the first colour's
error made a standard deviation like the others (``cmnn_fixed``, this script's patch of that
one function).

One metric code
---------------
Every code's P(z) (its ``qp.Ensemble``; photozsom's is the exact truncated density its stage
writes on 1601 points) is evaluated on one grid, 1601 points on [0, 1.6] (spacing 0.001),
clipped at 0 and renormalised there, and scored by :func:`photozsom.rail.grid_summary` with
:mod:`photozsom.evaluation.metrics`: point estimate = the median of that P(z) for every code; NMAD,
eta (|dz| > 0.15), bias (mean dz), PCO (PIT outside the central 99%), PIT KS statistic,
mean CRPS. Times are wall seconds of ``inform`` (train_s) and ``estimate`` (predict_s), all
codes single-threaded (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``); on a shared
machine they are rough.

Prints the table and writes it to ``--out`` (CSV) when given.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import itertools

import numpy as np
import pandas as pd

BANDS = ("G", "R", "Z", "W1", "W2")
FEATURES = ["r", "g-r", "r-z", "z-W1", "W1-W2"]
GRID = np.linspace(0.0, 1.6, 1601)
PEER_GRID = {"zmin": 0.0, "zmax": 1.6, "nzbins": 641}
CODES = ("photozsom", "flexzboost", "gpz", "dnf", "knn", "cmnn", "cmnn_fixed", "tpz")
#: Magnitude standing for an unmeasured band (RAIL's nondetect_val); none occurs in the five
#: bands of either sample, but the limits are set as RAIL expects: asinh magnitude at 5 b.
NONDETECT = 99.0


def _rail_columns(bands=BANDS) -> tuple[list[str], list[str]]:
    return [f"mag_{b.lower()}" for b in bands], [f"mag_err_{b.lower()}" for b in bands]


def rail_table(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The galaxies as a RAIL table: DR10 fluxes (photozsom's input) plus asinh magnitudes
    and errors (the RAIL codes' input), ``redshift``, ``object_id``."""
    from photozsom.features import SOFTENING, magnitudes

    mags = magnitudes(df, BANDS)
    out: dict[str, np.ndarray] = {"object_id": np.arange(len(df)),
                                  "redshift": df["Z"].to_numpy(np.float64)}
    for b in BANDS:
        out[f"FLUX_{b}"] = df[f"FLUX_{b}"].to_numpy(np.float64)
        if f"MW_TRANSMISSION_{b}" in df:
            out[f"MW_TRANSMISSION_{b}"] = df[f"MW_TRANSMISSION_{b}"].to_numpy(np.float64)
        soft = SOFTENING[b]
        if f"FLUX_IVAR_{b}" in df:
            out[f"FLUX_IVAR_{b}"] = df[f"FLUX_IVAR_{b}"].to_numpy(np.float64)
            with np.errstate(divide="ignore"):
                sig = 1.0 / np.sqrt(out[f"FLUX_IVAR_{b}"])
        else:
            sig = np.full(len(df), soft)
        mw = out.get(f"MW_TRANSMISSION_{b}", 1.0)
        f = out[f"FLUX_{b}"] / mw
        err = (2.5 / np.log(10.0)) * (sig / mw) / np.sqrt(f * f + 4 * soft * soft)
        m = mags[b.lower()].to_numpy(np.float64)
        bad = ~np.isfinite(m) | ~np.isfinite(err)
        out[f"mag_{b.lower()}"] = np.where(bad, NONDETECT, m)
        out[f"mag_err_{b.lower()}"] = np.where(bad, NONDETECT, err)
    return out


def _subset(table: dict, idx: np.ndarray) -> dict:
    return {k: v[idx] for k, v in table.items()}


def load_samples(args) -> dict[str, tuple[dict, dict]]:
    """``{sample: (pool, test)}`` RAIL tables."""
    rng = np.random.default_rng(args.seed)
    out = {}
    if "desi" in args.samples:
        from photozsom.data.desi_edr import load_bgs_north

        bgs = load_bgs_north()
        held = bgs["ROSETTE"].isin([18, 19]).to_numpy()
        test = np.flatnonzero(held)
        test = np.sort(rng.permutation(test)[: args.n_test])
        pool = rng.permutation(np.flatnonzero(~held))
        t = rail_table(bgs)
        out["desi"] = (_subset(t, pool), _subset(t, test))
    if "sky" in args.samples:
        from photozsom.sim import simulate

        sky = Path(args.sky)
        scale = {"n_spec": args.sky_n, "n_random": 2000, "n_random_cutouts": 1, "cutout_size": 8}
        paths = simulate(sky, scale=scale, seed=0, progress=False)
        spec = pd.read_parquet(paths["spec"])
        spec = spec[spec["Z"].between(0.0, 1.6)].reset_index(drop=True)
        perm = rng.permutation(len(spec))
        t = rail_table(spec)
        out["sky"] = (_subset(t, perm[args.n_test:]), _subset(t, np.sort(perm[: args.n_test])))
    return out


def _patch_cmnn(fixed: bool):
    """RAIL's CMNN colour maker, as shipped or with the first colour's error a std. dev."""
    from rail.estimation.algos import cmnn

    if not hasattr(cmnn, "_shipped_computecolordata"):
        cmnn._shipped_computecolordata = cmnn._computecolordata

    def fixed_colordata(data, column_names, err_names):
        cols = np.array([np.asarray(data[a]) - np.asarray(data[b])
                         for a, b in itertools.pairwise(column_names)])
        errs = np.array([np.sqrt(np.asarray(data[a]) ** 2 + np.asarray(data[b]) ** 2)
                         for a, b in itertools.pairwise(err_names)])
        return cols.T, errs.T

    cmnn._computecolordata = fixed_colordata if fixed else cmnn._shipped_computecolordata


def _stages(code: str, seed: int, workdir: Path):
    """(informer class, estimator class, informer kwargs, estimator kwargs) of a code."""
    mags, errs = _rail_columns()
    limits = {m: float(22.5 - 2.5 * np.log10(5 * s) + 0.0)
              for m, s in zip(mags, _softenings(), strict=True)}
    common = dict(hdf5_groupname="", bands=mags, err_bands=errs, ref_band="mag_r",
                  mag_limits=limits, nondetect_val=NONDETECT, **PEER_GRID)
    if code == "photozsom":
        from photozsom.rail import PhotoZEstimator, PhotoZInformer

        inf = {"hdf5_groupname": "", "catalog_features": FEATURES, "seed": seed,
                   "band_columns": {b: f"mag_{b.lower()}" for b in BANDS},
                   "err_columns": {b: f"mag_err_{b.lower()}" for b in BANDS}}
        est = {"hdf5_groupname": "", "n_grid": GRID.size,
                   "band_columns": inf["band_columns"], "err_columns": inf["err_columns"]}
        return PhotoZInformer, PhotoZEstimator, inf, est
    if code == "flexzboost":
        from rail.estimation.algos.flexzboost import FlexZBoostEstimator, FlexZBoostInformer

        return FlexZBoostInformer, FlexZBoostEstimator, dict(common, seed=seed), dict(common)
    if code == "gpz":
        from rail.estimation.algos.gpz import GPzEstimator, GPzInformer

        rep = {"replace_error_vals": [0.1] * len(BANDS)}
        return GPzInformer, GPzEstimator, dict(common, seed=seed, **rep), dict(common, **rep)
    if code == "dnf":
        from rail.estimation.algos.dnf import DNFEstimator, DNFInformer

        return DNFInformer, DNFEstimator, dict(common), dict(common)
    if code == "knn":
        from rail.estimation.algos.k_nearneigh import KNearNeighEstimator, KNearNeighInformer

        c = {k: v for k, v in common.items() if k != "err_bands"}
        return KNearNeighInformer, KNearNeighEstimator, dict(c, seed=seed), dict(c)
    if code in ("cmnn", "cmnn_fixed"):
        from rail.estimation.algos.cmnn import CMNNEstimator, CMNNInformer

        _patch_cmnn(code == "cmnn_fixed")
        return CMNNInformer, CMNNEstimator, dict(common), dict(common, seed=seed)
    if code == "tpz":
        from rail.estimation.algos.tpz_lite import TPZliteEstimator, TPZliteInformer

        return TPZliteInformer, TPZliteEstimator, dict(common, seed=seed), dict(common)
    raise ValueError(f"unknown code {code!r}: use {CODES}")


def _softenings() -> list[float]:
    from photozsom.features import SOFTENING

    return [SOFTENING[b] for b in BANDS]


def run_one(code: str, sample: str, n: int, pool: dict, test: dict, *, seed: int,
            workdir: Path) -> dict:
    """Train ``code`` on the first ``n`` pool galaxies, score it on ``test``."""
    from photozsom.rail import grid_summary

    inf_cls, est_cls, inf_kw, est_kw = _stages(code, seed, workdir)
    tag = f"{code}_{sample}_{n}"
    model = workdir / f"model_{tag}.{inf_cls.outputs[0][1].suffix}"
    train = _subset(pool, np.arange(n))
    t0 = time.perf_counter()
    inf = inf_cls.make_stage(name=f"inform_{tag}", model=str(model), output_mode="return",
                             **inf_kw)
    inf.inform(train)
    t1 = time.perf_counter()
    est = est_cls.make_stage(name=f"estimate_{tag}", model=inf.get_handle("model"),
                             output_mode="return", **est_kw)
    ens = est.estimate(test).data
    t2 = time.perf_counter()
    z = test["redshift"]
    s = grid_summary(ens.pdf(GRID), GRID, z)
    return {"sample": sample, "n_train": n, "code": code, "n_test": s["n"], "n_bad": s["n_bad"],
            "nmad": s["nmad"], "eta": s["eta"], "bias": s["bias"], "pco": s["pco"],
            "pit_ks": s["pit_ks"], "crps": s["crps"], "train_s": t1 - t0, "predict_s": t2 - t1}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", nargs="+", default=["desi", "sky"], choices=["desi", "sky"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[5000, 20000])
    ap.add_argument("--n-test", type=int, default=10000)
    ap.add_argument("--codes", nargs="+", default=list(CODES), choices=CODES)
    ap.add_argument("--sky", default="runs/bench/peers_sky", help="simulated sky directory")
    ap.add_argument("--sky-n", type=int, default=32000, help="spectroscopic galaxies of the sky")
    ap.add_argument("--workdir", default="runs/bench/peers", help="model files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="CSV to write the table to")
    args = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    samples = load_samples(args)
    rows = []
    for sample, (pool, test) in samples.items():
        for n in sorted(args.sizes):
            if n > len(pool["redshift"]):
                raise ValueError(f"--sizes {n} exceeds the {sample} pool "
                                 f"({len(pool['redshift'])} galaxies)")
            for code in args.codes:
                try:
                    row = run_one(code, sample, n, pool, test, seed=args.seed, workdir=workdir)
                except Exception as err:  # noqa: BLE001 (a peer failing is reported, not hidden)
                    print(f"{sample} N={n} {code}: FAILED {type(err).__name__}: {err}",
                          file=sys.stderr, flush=True)
                    row = {"sample": sample, "n_train": n, "code": code,
                           "error": f"{type(err).__name__}: {err}"[:200]}
                rows.append(row)
                print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1,
                                                    float_format="%.4g"), flush=True)
                if args.out:
                    pd.DataFrame(rows).to_csv(args.out, index=False, float_format="%.6g")
    table = pd.DataFrame(rows)
    print()
    print(table.to_string(index=False, float_format="%.4g"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False, float_format="%.6g")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
