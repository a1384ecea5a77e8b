"""Benchmark: the default PhotoZModel against the earlier MDN schedules, by training-set size.

Usage::

    python benchmarks/sizes.py                          # DESI + default sky, writes the CSV
    python benchmarks/sizes.py --data desi --sizes 5000 15000
    python benchmarks/sizes.py --sky-n 8000 --sizes 5000   # a smaller sky (development)

Regenerates ``benchmarks/results/sizes.csv`` (read by the MDN chapter, ``book/mdn.py``).

Samples (catalogue features only; one seed):

- ``desi``: the shipped DESI EDR BGS sample (:func:`photozsom.data.desi_edr.load_bgs_north`),
  split by rosette as in ``book/adapt.py``: training galaxies from rosettes 3, 6, 7, 11, 12, 13,
  validation galaxies from rosette 15, test = rosettes 14, 18 and 19 (32,000 galaxies no model
  sees). Features ``r, g-r, r-z, z-W1, W1-W2`` (the bands the sample has).
- ``sky``: the default simulated sky (:func:`photozsom.sim.simulate`, ``--sky-n``
  spectroscopic galaxies, seed 0; 80/10/10 split by ``OBJID``, the 10% test split unused), tested
  on every galaxy of an independent sky (seed 1) of the same size. Features
  :data:`photozsom.features.CATALOG_FEATURES`.
- ``sky-griz``: the same skies with ``r, g-r, r-i, i-z`` only (fewer bands, no WISE, no shape).
- ``sky-5band`` (only when asked for): the same skies with the DESI sample's features
  ``r, g-r, r-z, z-W1, W1-W2`` (the peer benchmark's bands).

At each training size ``N`` (``--sizes``, plus ``full``: every training galaxy) a seeded random
``N`` training galaxies and ``N / 8`` validation galaxies (the 80/10 ratio a user would have) are
drawn, and three models are fitted on them:

- ``default``: ``PhotoZModel(features="catalog", seed=0)`` as shipped: the MDN schedule set by
  ``N`` (:func:`photozsom.mdn.auto_schedule`), float32, recalibrated (``recalibration="global"``;
  out of fold below 1,000 validation galaxies: ``photozsom.model.RECAL_OOF_BELOW``). Both its raw (``default_raw``) and recalibrated
  (``default``) P(z) are scored;
- ``plateau``: the first schedule (batch 256, lr 1e-3 halved on plateaus, patience 10, at most
  100 epochs), not recalibrated;
- ``onecycle``: the previous default (batch 1024, one-cycle to lr 0.01 over 24 epochs), not
  recalibrated.

Printed and written per row: test CRPS, NMAD, PCO (%), and the wall time of ``fit`` (training
plus, for ``default``, its recalibration), the training and test sizes. Then the targets of
issue 24: ``default_raw`` CRPS at most 2% above the better of ``plateau`` and ``onecycle``,
``default`` PCO 1.0 +- 0.3%.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from photozsom.evaluation import metrics
from photozsom.features import CATALOG_FEATURES
from photozsom.mdn import train_val_test_split

RESULTS = Path(__file__).resolve().parent / "results"
DESI_FEATURES = ["r", "g-r", "r-z", "z-W1", "W1-W2"]
GRIZ_FEATURES = ["r", "g-r", "r-i", "i-z"]
TRAIN_ROSETTES, VAL_ROSETTES, TEST_ROSETTES = (3, 6, 7, 11, 12, 13), (15,), (14, 18, 19)
#: The earlier schedules, for the comparison (no recalibration).
PLATEAU = {"lr": 1e-3, "batch_size": 256, "max_epochs": 100, "patience": 10,
           "schedule": "plateau", "min_improvement": 0.0}
ONECYCLE = {"batch_size": 1024, "max_epochs": 24, "schedule": "onecycle"}
CRPS_TARGET, PCO_TARGET = 1.02, (0.7, 1.3)


def desi_parts() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train pool, validation pool, test) of the shipped DESI sample, split by rosette."""
    from photozsom.data.desi_edr import load_bgs_north

    bgs = load_bgs_north()
    ros = bgs["ROSETTE"].to_numpy()
    return (bgs[np.isin(ros, TRAIN_ROSETTES)], bgs[np.isin(ros, VAL_ROSETTES)],
            bgs[np.isin(ros, TEST_ROSETTES)])


def sky_parts(workdir: Path, n_spec: int, *, with_test_split: bool = False) -> tuple[pd.DataFrame, ...]:
    """(train pool, validation pool, test) of the default sky; test = an independent sky.
    ``with_test_split``: the sky's own (unused) 10% test split too, as a fourth table."""
    from photozsom.sim import simulate

    skies = []
    for seed in (0, 1):
        out = workdir / f"sky_{n_spec}_seed{seed}"
        # the spectroscopic sample is what is scored: few random galaxies, tiny cutouts
        simulate(out, scale={"n_spec": n_spec, "n_random": 1000, "n_random_cutouts": 1,
                             "cutout_size": 16}, seed=seed, progress=False)
        skies.append(pd.read_parquet(out / "spec.parquet"))
    spec = skies[0]
    tr, va, te = train_val_test_split(spec["OBJID"].to_numpy(), seed=0)
    parts = (spec.iloc[tr], spec.iloc[va], skies[1])
    return (*parts, spec.iloc[te]) if with_test_split else parts


def score(pdf, z: np.ndarray) -> dict[str, float]:
    """Test CRPS, NMAD of the median and PCO (%) of ``pdf`` against ``z``."""
    pit = pdf.pit(z)
    return {"crps": float(np.mean(pdf.crps(z))), "nmad": float(metrics.nmad(z, pdf.median())),
            "pco": 100.0 * float(metrics.pco_fraction(pit))}


def draw(parts, n: int | None, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training, validation, test) galaxies: a seeded random ``n`` of the training pool (all
    for None) and ``n / 8`` of the validation pool (the 80/10 ratio a user would have)."""
    pool_tr, pool_va, test = parts
    rng = np.random.default_rng(seed)
    n_tr = len(pool_tr) if n is None else min(int(n), len(pool_tr))
    train = pool_tr.iloc[np.sort(rng.choice(len(pool_tr), n_tr, replace=False))]
    n_va = min(len(pool_va), max(n_tr // 8, 1))
    val = pool_va.iloc[np.sort(rng.choice(len(pool_va), n_va, replace=False))]
    return train, val, test


def run_size(sample: str, parts, features: list[str], n: int | None, seed: int) -> list[dict]:
    """Fit the three models at one training size and score them on the test galaxies."""
    from photozsom.model import PhotoZModel

    train, val, test = draw(parts, n, seed)
    n_tr, n_va = len(train), len(val)
    z_te = test["Z"].to_numpy(np.float64)
    rows = []
    configs = {"default": ({}, "global"), "plateau": (PLATEAU, None), "onecycle": (ONECYCLE, None)}
    for name, (opts, recal) in configs.items():
        model = PhotoZModel("catalog", seed=seed, catalog_features=features,
                            recalibration=recal, **opts)
        t0 = time.perf_counter()
        model.fit(train, train["Z"].to_numpy(np.float64), val, val["Z"].to_numpy(np.float64),
                  progress=False)
        seconds = time.perf_counter() - t0
        est = model.estimator_
        info = {"sample": sample, "size": "full" if n is None else str(n), "n_train": n_tr,
                "n_val": n_va, "seconds": round(seconds, 1), "epochs": len(model.history_),
                "batch_size": est.batch_size_, "max_epochs": est.max_epochs_}
        variants = [(name, True)] if recal is None else [(f"{name}_raw", False), (name, True)]
        for label, recalibrate in variants:
            pdf, ok, _ = model.predict_with_status(test, recalibrate=recalibrate)
            row = dict(info, model=label, n_test=int(ok.sum()), **score(pdf, z_te[ok]))
            if label == "default":
                row["recalibration"] = getattr(model, "recalibration_source_", "")
            rows.append(row)
            print(f"{sample:9s} {row['size']:>6s} {label:12s} N={n_tr:6d} val={n_va:5d} "
                  f"test={row['n_test']:6d} CRPS={row['crps']:.5f} NMAD={row['nmad']:.4f} "
                  f"PCO={row['pco']:5.2f}% fit {seconds:6.1f} s  "
                  f"(batch {est.batch_size_}, {len(model.history_)}/{est.max_epochs_} epochs)",
                  flush=True)
    return rows


def verdict(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (sample, size): CRPS ratio of the default to the best earlier schedule, and
    whether the targets are met."""
    out = []
    for (sample, size), g in df.groupby(["sample", "size"], sort=False):
        c = g.set_index("model")["crps"]
        best_prev = min(c["plateau"], c["onecycle"])
        pco = float(g.set_index("model").loc["default", "pco"])
        out.append({"sample": sample, "size": size, "crps_ratio": c["default_raw"] / best_prev,
                    "crps_ratio_calibrated": c["default"] / best_prev, "pco_default": pco,
                    "crps_ok": c["default_raw"] / best_prev <= CRPS_TARGET,
                    "pco_ok": PCO_TARGET[0] <= pco <= PCO_TARGET[1]})
    return pd.DataFrame(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", nargs="+", default=["desi", "sky", "sky-griz"],
                    choices=["desi", "sky", "sky-griz", "sky-5band"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[5000, 15000, 50000])
    ap.add_argument("--no-full", action="store_true", help="skip the full training size")
    ap.add_argument("--sky-n", type=int, default=25000,
                    help="spectroscopic galaxies of each simulated sky (default: the default sky's)")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) /
                    "photozsom_sizes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS / "sizes.csv")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads outside training (default: torch's; MDN training uses "
                         "its fixed count, photozsom.device.TRAIN_THREADS)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), float32; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rows: list[dict] = []
    for sample in args.data:
        if sample == "desi":
            parts, feats = desi_parts(), DESI_FEATURES
        else:
            parts = sky_parts(args.workdir, args.sky_n)
            feats = {"sky": list(CATALOG_FEATURES), "sky-griz": GRIZ_FEATURES,
                     "sky-5band": DESI_FEATURES}[sample]
        sizes: list[int | None] = [s for s in args.sizes if s < len(parts[0])]
        if not args.no_full:
            sizes.append(None)
        for n in sizes:
            rows += run_size(sample, parts, feats, n, args.seed)
            df = pd.DataFrame(rows)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(args.out, index=False)       # after every size: a partial run is kept
    df = pd.DataFrame(rows)
    v = verdict(df)
    with pd.option_context("display.width", 160, "display.precision", 4):
        print(df.pivot_table(index=["sample", "size"], columns="model",
                             values=["crps", "pco", "seconds"], sort=False))
        print(v)
    print(f"targets: default CRPS <= {CRPS_TARGET:.2f}x the best earlier schedule in "
          f"{int(v['crps_ok'].sum())}/{len(v)} rows; PCO in [{PCO_TARGET[0]}, {PCO_TARGET[1]}]% "
          f"in {int(v['pco_ok'].sum())}/{len(v)} rows")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
