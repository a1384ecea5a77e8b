"""Diagnostic: where the default model's calibrated PCO lands at small training sizes, on the
test rosettes and on unseen galaxies of its own training rosettes (issue 24).

``benchmarks/sizes.py`` and ``benchmarks/seed_spread.py`` score the default
:class:`~photozsom.model.PhotoZModel` on the shipped DESI sample's test rosettes: sky regions
none of its training galaxies come from. This script fits the same model (catalogue features,
``recalibration="global"``, seeds 0..4, each its own draw of ``--size`` training galaxies as in
``seed_spread.py``) and scores its raw and recalibrated P(z) twice, on the same fit:

- ``test rosettes``: the test split of ``sizes.py`` (as those benchmarks do);
- ``training rosettes``: 30,000 galaxies of the training pool that the seed did not draw,
  from the same rosettes as its training galaxies but never seen by the model.

The gap between the two separates what a map fitted on the training galaxies can correct
(calibration on galaxies like them) from the shift between sky regions, which no such map
sees. ``--folds`` sets the number of out-of-fold folds behind the map (the default is
:data:`photozsom.model.RECAL_FOLDS`).

A second line per seed compares the networks behind the fit on the same galaxies: the final
network and each fold network whose out-of-fold predictions the map was fitted on (the
networks :class:`~photozsom.mdn.MDN` trains inside ``fit``, recorded in order), their raw
PCO and their PCO after the model's map. A map fitted on the fold networks' P(z) transfers
to the final network only as far as they are calibrated alike.

Usage::

    python benchmarks/calibration_transfer.py                  # 5k, 5 seeds
    python benchmarks/calibration_transfer.py --size 15000 --folds 10

Prints one line per seed and the mean and seed-to-seed sd of each column.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sizes  # the samples and splits of the size benchmark


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=5000, help="training galaxies")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--folds", type=int, default=None, help="out-of-fold folds of the map")
    args = ap.parse_args(argv)

    import photozsom.model as pm
    from photozsom import mdn
    from photozsom.evaluation.metrics import pco_fraction
    from photozsom.pdf import MixturePDF

    nets: list = []                  # every MDN fitted inside model.fit: final, then folds
    fit = mdn.MDN.fit

    def recording_fit(self, *a, **k):
        nets.append(self)
        return fit(self, *a, **k)

    mdn.MDN.fit = recording_fit
    if args.folds is not None:
        pm.RECAL_FOLDS = int(args.folds)
    parts = sizes.desi_parts()
    pool_tr, _, test = parts
    rows, fold_rows = [], []
    for seed in args.seeds:
        train, val, _ = sizes.draw(parts, args.size, seed)
        unused = pool_tr.drop(index=train.index)
        pick = np.random.default_rng(99).choice(len(unused), min(30_000, len(unused)),
                                                replace=False)
        same = unused.iloc[np.sort(pick)]
        t0 = time.perf_counter()
        nets.clear()
        model = pm.PhotoZModel("catalog", seed=seed, catalog_features=sizes.DESI_FEATURES)
        model.fit(train, train["Z"].to_numpy(np.float64), val, val["Z"].to_numpy(np.float64),
                  progress=False)
        row = []
        for d in (test, same):
            z = d["Z"].to_numpy(np.float64)
            raw, ok, _ = model.predict_with_status(d, recalibrate=False)
            cal = model.predict_with_status(d)[0]
            row += [sizes.score(raw, z[ok])["pco"], sizes.score(cal, z[ok])["pco"]]
        rows.append(row)
        print(f"N={len(train)} seed {seed} ({model.recalibration_source_}): PCO test rosettes "
              f"raw {row[0]:.2f}%, recalibrated {row[1]:.2f}%; training rosettes (unseen) raw "
              f"{row[2]:.2f}%, recalibrated {row[3]:.2f}% (fit {time.perf_counter() - t0:.0f} s)",
              flush=True)
        parts_txt = []
        for name, d in (("test rosettes", test), ("training rosettes", same)):
            X, ok, _ = model.transform(d)
            z = d["Z"].to_numpy(np.float64)[ok]
            pit = [MixturePDF(net.predict_weights(X[ok])).pit(z) for net in nets]
            raw = [100 * pco_fraction(u) for u in pit]
            cal = [100 * pco_fraction(model.recalibrator_.transform(u)) for u in pit]
            parts_txt.append(f"{name}: final network raw {raw[0]:.2f}%, mapped {cal[0]:.2f}%; "
                             f"{len(nets) - 1} fold networks raw {np.mean(raw[1:]):.2f}% ("
                             + " ".join(f"{v:.2f}" for v in raw[1:])
                             + f"), mapped {np.mean(cal[1:]):.2f}%")
        print("   " + "; ".join(parts_txt), flush=True)
        fold_rows.append([np.mean(raw[1:]), raw[0], np.mean(cal[1:]), cal[0]])
    a = np.array(rows)
    mean, sd = a.mean(axis=0), a.std(axis=0, ddof=1) if len(a) > 1 else np.zeros(4)
    print("mean (sd over seeds): test rosettes raw {:.2f} ({:.2f}), recalibrated {:.2f} ({:.2f}); "
          "training rosettes raw {:.2f} ({:.2f}), recalibrated {:.2f} ({:.2f})".format(
              *np.column_stack([mean, sd]).ravel()), flush=True)
    f = np.array(fold_rows)
    print("training rosettes, mean over seeds: fold networks raw {:.2f}%, final {:.2f}%; "
          "mapped: fold networks {:.2f}%, final {:.2f}%".format(*f.mean(axis=0)), flush=True)


if __name__ == "__main__":
    main()
