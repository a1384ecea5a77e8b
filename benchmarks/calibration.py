"""Benchmark: PIT-based recalibration of the MDN's P(z), globally and per SOM cell.

Usage::

    python benchmarks/calibration.py                 # default sky (~4 min to simulate each)
    python benchmarks/calibration.py --scale ci      # quick run on the CI sky

Steps (no step sees the data it is scored on):

1. Simulate the sky (``--seed``) and an independent sky (``--seed + 1``) with
   :func:`photozsom.sim.simulate` (reused when ``--workdir`` already holds them).
2. Catalogue features (:func:`photozsom.features.catalog_features`, NaNs imputed with the
   training medians), the paper's 80/10/10 split by ``OBJID``, and an MDN trained on the
   training split with early stopping on the validation split.
3. Held-out predictions to fit the recalibration: out-of-fold P(z) of the training and
   validation galaxies (:func:`photozsom.mdn.cross_val_predict`, ``--folds`` folds;
   ``--fit-on val`` uses the main model's validation predictions instead). Never the test
   split.
4. SOM cells: a (24, 24) SOM trained on the southern random sample's SOM features; northern
   or incomplete galaxies have cell -1 (global map).
5. ``Recalibrator(kind="global")`` and ``Recalibrator(kind="cell")`` fitted on step 3 and
   applied to the test split of the sky and to every galaxy of the independent sky.

Printed for each evaluation set, before and after: PCO (truth outside the central 99%), the
Kolmogorov-Smirnov statistic of the PIT against U(0, 1), the mean CRPS, the coverage of the
central 68% and 95% intervals (from the quantiles of the returned PDFs), the number of SOM
cells whose PCO is significantly above 1% (one-sided binomial test, Benjamini-Hochberg at
FDR 5% over the cells with >= 5 galaxies), the projection error (Wasserstein-1 distance
between the returned mixture and the exact ``g(F)``, in units of the component width) and
whether each target of issue 14 is met:
PCO 1.0 +- 0.3%, coverage 68 +- 2% and 95 +- 1%, CRPS at most 1% worse, and the per-cell
version with fewer significant cells than the global one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.impute import SimpleImputer

from photozsom.calibrate import Recalibrator
from photozsom.device import default_device
from photozsom.evaluation import metrics
from photozsom.features import catalog_features, som_features
from photozsom.mdn import MDN, cross_val_predict, train_val_test_split
from photozsom.pdf import MixturePDF
from photozsom.sim import simulate
from photozsom.som import SOM


def significant_pco_cells(pit: np.ndarray, cells: np.ndarray, n_cells: int, *, min_n: int = 5,
                          fdr: float = 0.05) -> tuple[int, int]:
    """Cells with PCO significantly above 1%: (Benjamini-Hochberg count, raw p < 0.05 count).

    One-sided exact binomial test of ``k`` outliers among ``n`` galaxies against ``p = 0.01``.
    """
    ok = cells >= 0
    n = np.bincount(cells[ok], minlength=n_cells)
    k = np.bincount(cells[ok], metrics.pco_mask(pit[ok]), minlength=n_cells)
    test = n >= min_n
    if not test.any():
        return 0, 0
    p = stats.binom.sf(k[test] - 1, n[test], 0.01)
    q = stats.false_discovery_control(p)
    return int((q < fdr).sum()), int((p < 0.05).sum())


def evaluate(pdf: MixturePDF, z: np.ndarray, cells: np.ndarray, n_cells: int) -> dict:
    pit = pdf.pit(z)
    out = {"PCO %": 100 * metrics.pco_fraction(pit), "KS": metrics.pit_stats(pit)["ks"],
           "CRPS": float(pdf.crps(z).mean())}
    for level in (0.68, 0.95):
        lo, hi = pdf.interval(level)
        out[f"cover{round(100 * level)} %"] = 100 * float(np.mean((z >= lo) & (z <= hi)))
    out["cells PCO>1% (BH)"], out["cells p<0.05"] = significant_pco_cells(pit, cells, n_cells)
    return out


def targets(before: dict, after: dict) -> dict:
    return {"PCO 1.0+-0.3%": abs(after["PCO %"] - 1.0) <= 0.3,
            "cover68 68+-2%": abs(after["cover68 %"] - 68.0) <= 2.0,
            "cover95 95+-1%": abs(after["cover95 %"] - 95.0) <= 1.0,
            "CRPS <= 1.01 x before": after["CRPS"] <= 1.01 * before["CRPS"]}


def features(spec: pd.DataFrame, imputer: SimpleImputer) -> np.ndarray:
    Xc, _ = catalog_features(spec, name="spec.parquet")
    return imputer.transform(Xc).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", default="default", help="simulation scale: default or ci")
    ap.add_argument("--seed", type=int, default=0, help="sky seed; the independent sky is seed+1")
    ap.add_argument("--workdir", default="runs/bench_calibration",
                    help="where the skies are simulated (reused if present)")
    ap.add_argument("--fit-on", choices=("oof", "val"), default="oof",
                    help="held-out predictions that fit the recalibration")
    ap.add_argument("--folds", type=int, default=5, help="out-of-fold folds")
    ap.add_argument("--max-epochs", type=int, default=None,
                    help="MDN epochs (default: the MDN's own)")
    ap.add_argument("--shrinkage", type=float, default=50.0, help="per-cell shrinkage n_0")
    ap.add_argument("--som-epochs", type=int, default=None, help="default 30, 10 for ci")
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256],
                    help="MDN hidden layer widths")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="MDN mini-batch size (default: the MDN's own)")
    ap.add_argument("--reuse", action="store_true",
                    help="use skies already in --workdir as they are (even if written by an "
                         "older simulator version) instead of calling simulate")
    args = ap.parse_args()
    ci = args.scale == "ci"
    som_epochs = args.som_epochs or (10 if ci else 30)
    work = Path(args.workdir)
    print(f"device: {default_device()}; scale {args.scale}, seed {args.seed}; recalibration "
          f"fitted on {args.fit_on}")

    def sky(seed: int) -> dict:
        d = work / f"sky{seed}"
        if args.reuse and (d / "spec.parquet").exists() and (d / "random.parquet").exists():
            print(f"reusing {d} as it is")
            return {"spec": d / "spec.parquet", "random": d / "random.parquet"}
        return simulate(d, scale=args.scale, seed=seed, progress=False)

    t0 = time.time()
    paths = sky(args.seed)
    print(f"sky ready in {time.time() - t0:.0f} s")

    spec = pd.read_parquet(paths["spec"])
    random = pd.read_parquet(paths["random"])
    z = spec["Z"].to_numpy(np.float64)
    objid = spec["OBJID"].to_numpy()
    i_tr, i_va, i_te = train_val_test_split(objid, (0.8, 0.1, 0.1), args.seed)
    Xc, _ = catalog_features(spec, name="spec.parquet")
    imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(Xc[i_tr])
    X = imputer.transform(Xc).astype(np.float32)

    # predictions are cached in the work directory under a name holding every setting
    mdn_kw = {"hidden": tuple(args.hidden)}
    if args.batch_size is not None:
        mdn_kw["batch_size"] = args.batch_size
    if args.max_epochs is not None:
        mdn_kw["max_epochs"] = args.max_epochs
    tag = (f"{args.scale}_s{args.seed}_h{'-'.join(map(str, args.hidden))}"
           f"_b{args.batch_size or 'def'}_e{args.max_epochs or 'def'}")
    cache = work / "predictions"
    cache.mkdir(parents=True, exist_ok=True)

    def cached(name: str, make) -> MixturePDF:
        path = cache / f"{name}_{tag}.npz"
        if path.exists():
            return MixturePDF.load(path)
        pdf = make()
        pdf.save(path)
        return pdf

    t0 = time.time()
    model: list[MDN] = []

    def main_model() -> MDN:
        if not model:
            m = MDN(n_inputs=X.shape[1], seed=0, **mdn_kw)
            m.fit(X[i_tr], z[i_tr], X[i_va], z[i_va], progress=False)
            print(f"MDN trained: best epoch {m.best_epoch_}, {time.time() - t0:.0f} s")
            model.append(m)
        return model[0]

    pdf_test = cached("test", lambda: main_model().predict(X[i_te]))
    print(f"MDN: {X.shape[1]} features, train {len(i_tr):,} / val {len(i_va):,} / test "
          f"{len(i_te):,}, {mdn_kw}; {time.time() - t0:.0f} s")

    t0 = time.time()
    if args.fit_on == "oof":
        pool = np.sort(np.concatenate([i_tr, i_va]))
        pdf_fit = cached(f"oof{args.folds}", lambda: cross_val_predict(
            X[pool], z[pool], objid[pool], n_folds=args.folds, seed=args.seed,
            progress=False, **mdn_kw)[0])
    else:
        pool = i_va
        pdf_fit = cached("val", lambda: main_model().predict(X[pool]))
    z_fit = z[pool]
    print(f"held-out predictions for the fit: {len(pool):,} galaxies ({args.fit_on}), "
          f"{time.time() - t0:.0f} s")

    t0 = time.time()
    paths_ind = sky(args.seed + 1)
    spec_ind = pd.read_parquet(paths_ind["spec"])
    z_ind = spec_ind["Z"].to_numpy(np.float64)
    pdf_ind = cached("independent", lambda: main_model().predict(features(spec_ind, imputer)))
    print(f"independent sky (seed {args.seed + 1}) ready and predicted, {time.time() - t0:.0f} s")

    t0 = time.time()
    Xr, ok_r = som_features(random, name="random.parquet")
    south = (random["PHOTSYS"] == "S").to_numpy() & ok_r
    som = SOM(shape=(24, 24), n_features=Xr.shape[1], seed=0)
    som.fit(Xr[south], epochs=som_epochs, progress=False)

    def cells_of(df: pd.DataFrame) -> np.ndarray:
        Xs, _ = som_features(df, name="spec")
        return np.asarray(som.predict(Xs, nan_policy="mark"), dtype=np.int64)

    cell = cells_of(spec)
    cell_ind = cells_of(spec_ind)
    print(f"SOM {som.shape} on {south.sum():,} southern random galaxies, {time.time() - t0:.0f} s; "
          f"{(cell[pool] >= 0).mean():.0%} of fit galaxies have a cell")

    t0 = time.time()
    rc_g = Recalibrator(kind="global").fit(pdf_fit, z_fit)
    rc_c = Recalibrator(kind="cell", shrinkage=args.shrinkage).fit(
        pdf_fit, z_fit, cell[pool], n_cells=som.n_cells)
    print(f"recalibrators fitted in {time.time() - t0:.1f} s; on the fit sample PCO "
          f"{100 * rc_g.pit_fit_['before']['pco']:.2f}% -> "
          f"{100 * rc_g.pit_fit_['after']['pco']:.2f}%"
          f" (global), cells with >= 50 fit galaxies: {(rc_c.cell_count_ >= 50).sum()}")

    sets = {"test split": (pdf_test, z[i_te], cell[i_te]),
            "independent sky": (pdf_ind, z_ind, cell_ind)}
    all_ok = True
    for name, (pdf, zz, cc) in sets.items():
        t0 = time.time()
        res = {"before": evaluate(pdf, zz, cc, som.n_cells)}
        cal_g = rc_g.apply(pdf)
        t_apply = time.time() - t0
        cal_c = rc_c.apply(pdf, cc)
        res["global"] = evaluate(cal_g, zz, cc, som.n_cells)
        res["per-cell"] = evaluate(cal_c, zz, cc, som.n_cells)
        table = pd.DataFrame(res).T
        print(f"\n== {name}: {len(zz):,} galaxies, {(cc >= 0).sum():,} with a SOM cell ==")
        with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 200,
                               "display.max_columns", None):
            print(table)
        sub = slice(0, min(len(pdf), 1000))
        err_g = rc_g.projection_error(pdf[sub]) / pdf.sigma
        err_c = rc_c.projection_error(pdf[sub], cc[sub]) / pdf.sigma
        print(f"projection error (W1 distance / sigma, {err_g.shape[0]} galaxies): global "
              f"median {np.median(err_g):.3f}, 99th pct "
              f"{np.percentile(err_g, 99):.3f}, max {err_g.max():.3f}; per-cell 99th pct "
              f"{np.percentile(err_c, 99):.3f}, max {err_c.max():.3f}")
        print(f"apply: {len(pdf) / t_apply:,.0f} galaxies/s (global, {default_device()} numpy)")
        for kind in ("global", "per-cell"):
            t = targets(res["before"], res[kind])
            line = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in t.items())
            print(f"targets [{kind}]: {line}")
            all_ok &= all(t.values())
        better = res["per-cell"]["cells PCO>1% (BH)"] < res["global"]["cells PCO>1% (BH)"]
        tie = res["per-cell"]["cells PCO>1% (BH)"] == res["global"]["cells PCO>1% (BH)"]
        raw_better = res["per-cell"]["cells p<0.05"] < res["global"]["cells p<0.05"]
        print(f"target per-cell beats global on cells with PCO significantly > 1%: "
              f"{'met' if better else ('tie' if tie else 'NOT met')} (BH "
              f"{res['per-cell']['cells PCO>1% (BH)']} vs {res['global']['cells PCO>1% (BH)']}; "
              f"raw p<0.05 {res['per-cell']['cells p<0.05']} vs {res['global']['cells p<0.05']}"
              f": {'fewer' if raw_better else 'not fewer'})")
    print(f"\nall interval/PCO/CRPS targets met: {all_ok}")


if __name__ == "__main__":
    main()
