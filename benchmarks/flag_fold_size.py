"""Benchmark: does the flag's threshold choice depend on how much its fold models saw?

The flag's thresholds are chosen on out-of-fold predictions (``mdn/oof_predictions.parquet``):
each labelled galaxy predicted by one of ``cv_folds`` networks trained without its fold. A
fold network trains on ``(k - 1) / k`` of the training and validation galaxies, less the
10% it keeps for early stopping: 65% of the labelled galaxies with the default book's five
folds, against the 80% the final network trains on. The choice could therefore describe a
weaker model than the one users run.

This script re-runs the ``mdn`` (out-of-fold part), ``cells`` and ``flags`` stages of an
existing run directory with several fold counts -- the data, SOM and embedding stages are
linked, not recomputed -- and reports, per fold count and map, the fraction of labelled
galaxies the fold networks trained on, the catastrophic outliers among the out-of-fold
predictions, the chosen ``(min_count, distance_quantile)`` and the flag's nested scores
(:func:`photozsom.workflow.validation.run_nested_flags`).

Usage::

    python benchmarks/flag_fold_size.py --run runs/default --folds 5 10

Writes ``benchmarks/results/flag_fold_size.csv``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
#: Stages whose folders are linked from the source run (inputs of mdn, cells and flags).
LINKED = ("sky", "som", "embed")


def run_folds(src: Path, work: Path, k: int) -> pd.DataFrame:
    """Re-run mdn, cells and flags of ``src`` with ``k`` folds in ``work``; one row per map."""
    from photozsom.mdn import cross_val_predict
    from photozsom.workflow import pipeline, validation

    dst = work / f"folds_{k}"
    dst.mkdir(parents=True, exist_ok=True)
    for d in LINKED:
        if not (dst / d).exists():
            (dst / d).symlink_to((src / d).resolve())
    mdn = json.loads((src / "mdn" / "provenance.json").read_text())["params"]
    cells = json.loads((src / "cells" / "provenance.json").read_text())["params"]
    flags = json.loads((src / "flags" / "provenance.json").read_text())["params"]
    scale, seed = mdn["scale"], int(mdn["seed"])
    run = pipeline.Run(dst)
    t0 = time.perf_counter()
    pipeline.run_mdn(run, scale=scale, seed=seed, inputs=mdn["inputs"], hidden=mdn["hidden"],
                     max_epochs=mdn["max_epochs"], cv_folds=k,
                     catalog_features=mdn["catalog_features"], progress=False)
    pipeline.run_cells(run, scale=scale, seed=seed, n_boot=cells["n_boot"], fdr=cells["fdr"],
                       evaluate_on=cells["evaluate_on"])
    res = pipeline.run_flags(run, scale=scale, min_count=flags["min_count"],
                             distance_quantile=flags["distance_quantile"],
                             flag_metrics=flags["metrics"])
    nested = validation.run_nested_flags(run, flagger=res["flagger"], seed=seed)
    seconds = time.perf_counter() - t0
    split = pd.read_parquet(run.read("sky/split.parquet"))
    frac = {s: float((split["SPLIT"] == s).mean()) for s in ("train", "val")}
    pool = frac["train"] + frac["val"]
    # the share of its training folds each fold network keeps for early stopping
    val_fraction = inspect.signature(cross_val_predict).parameters["val_fraction"].default
    sc = nested["scores"]
    rows = []
    for som, (min_count, quantile) in res["chosen"].items():
        row = {"folds": k, "fold_train_fraction": pool * (k - 1) / k * (1.0 - val_fraction),
               "final_train_fraction": frac["train"], "som": som, "min_count": min_count,
               "distance_quantile": quantile, "seconds": round(seconds, 1)}
        for part in ("flag", "underperforming"):
            r = sc.loc[(som, "nested", part)]
            row.update({f"{part}_J": r["J"], f"{part}_J_se": r["J_se"],
                        f"{part}_recall": r["recall"], f"{part}_flagged": r["flagged"]})
        row["n_bad"] = int(sc.loc[(som, "nested", "flag"), "n_bad"])
        row["n"] = int(sc.loc[(som, "nested", "flag"), "n"])
        rows.append(row)
        print(f"{k:2d} folds (fold networks on {row['fold_train_fraction']:.0%} of the labelled "
              f"galaxies) map {som}: chosen min_count {min_count}, quantile {quantile}; "
              f"outliers {row['n_bad']}/{row['n']}; nested J flag {row['flag_J']:.3f} +- "
              f"{row['flag_J_se']:.3f}, underperforming {row['underperforming_J']:.3f} +- "
              f"{row['underperforming_J_se']:.3f} ({seconds:.0f} s)", flush=True)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a built run directory")
    ap.add_argument("--folds", nargs="+", type=int, default=[5, 10])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/photozsom_flag_folds"))
    ap.add_argument("--out", type=Path, default=RESULTS / "flag_fold_size.csv")
    args = ap.parse_args(argv)
    out = pd.concat([run_folds(args.run.resolve(), args.workdir, k) for k in args.folds],
                    ignore_index=True)
    out.to_csv(args.out, index=False)
    with pd.option_context("display.width", 160, "display.precision", 3):
        print(out)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
