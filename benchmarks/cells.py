"""Benchmark: per-cell report with bootstrap errors, and ``photozsom flag`` throughput.

Times :func:`photozsom.evaluation.cells.report` (1,000 bootstrap resamples, 1,024 cells, 1.2 million
test galaxies; target under 30 s on 2 CPU cores) against the straightforward approach a
user would write: a pandas ``groupby`` over cells with a numpy bootstrap per cell
(``rng.integers(0, n, (n_boot, n))`` and the metrics along axis 1). The loop is timed on a
random subset of cells and extrapolated to all cells in proportion to their galaxy counts
(its cost is linear in ``n_boot x count``); the script says so when it does. Then the
``photozsom flag`` command is run on a Parquet catalogue and its throughput in rows per
second is printed.

Usage::

    python benchmarks/cells.py            # the issue's sizes
    python benchmarks/cells.py --quick    # 10x fewer galaxies, 200 resamples
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd


def make_sample(n_gal: int, n_cells: int, seed: int = 0):
    """Test galaxies spread over cells like a real SOM (log-normal occupancy, some empty)."""
    rng = np.random.default_rng(seed)
    w = rng.lognormal(0.0, 1.5, n_cells)
    w[rng.choice(n_cells, n_cells // 50, replace=False)] = 0.0  # ~2% empty cells
    cell = rng.choice(n_cells, n_gal, p=w / w.sum())
    z = rng.uniform(0.02, 1.3, n_gal)
    dz = 0.03 * rng.standard_t(3, n_gal)  # heavy tails: a few % catastrophic outliers
    zp = z + dz * (1 + z)
    pit = rng.uniform(size=n_gal)
    return cell, z, zp, pit


def naive_report(cell, z, zp, pit, cells_subset, n_boot, seed=0):
    """The peer: pandas groupby over cells and a numpy bootstrap loop per cell."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"cell": cell, "z": z, "dz": (zp - z) / (1 + z), "pit": pit})
    df = df[df["cell"].isin(cells_subset)]
    rows = {}
    for c, g in df.groupby("cell"):
        dz, zz, pp = g["dz"].to_numpy(), g["z"].to_numpy(), g["pit"].to_numpy()
        n = len(dz)
        if n < 2:
            continue
        idx = rng.integers(0, n, size=(n_boot, n))
        d = dz[idx]
        rows[c] = {
            "mad_err": (1.4826 * np.median(np.abs(d), axis=1)).std(ddof=1),
            "bias_err": d.mean(axis=1).std(ddof=1),
            "eta_err": (np.abs(d) > 0.15).mean(axis=1).std(ddof=1),
            "pco_err": ((pp[idx] < 0.005) | (pp[idx] > 0.995)).mean(axis=1).std(ddof=1),
            "z_mean_err": zz[idx].mean(axis=1).std(ddof=1),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _timed(fn):
    """Run fn(); return (result, wall seconds, CPU seconds of this process, all threads)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def bench_report(n_gal, n_cells, n_boot, n_jobs, subset_cells):
    from photozsom.evaluation import cells

    cell, z, zp, pit = make_sample(n_gal, n_cells)
    print(
        f"report: {n_gal:,} galaxies, {n_cells} cells, {n_boot} bootstrap resamples "
        f"(os.cpu_count()={os.cpu_count()}); wall and CPU seconds"
    )
    times = {}
    configs = [("resample", j) for j in sorted({1, n_jobs})] + [("ideal", 1)]
    for boot, jobs in configs:
        out, wall, cpu = _timed(
            lambda b=boot, j=jobs: cells.report(
                cell, z, zp, pit, n_cells, n_boot=n_boot, seed=0, n_jobs=j, bootstrap=b
            )
        )
        if boot == "resample":
            rep = out
        key = f"{boot}, n_jobs={jobs}"
        times[key] = (wall, cpu)
        print(f"  cells.report({key:20s}) wall {wall:7.2f} s   CPU {cpu:7.2f} s")

    counts = np.bincount(cell, minlength=n_cells)
    rng = np.random.default_rng(1)
    occupied = np.flatnonzero(counts >= 2)
    sub = (
        occupied
        if subset_cells >= occupied.size
        else rng.choice(occupied, subset_cells, replace=False)
    )
    naive, wall, cpu = _timed(lambda: naive_report(cell, z, zp, pit, sub, n_boot))
    frac = counts[sub].sum() / counts[occupied].sum()
    wall_n, cpu_n = wall / frac, cpu / frac
    print(f"  pandas groupby + numpy loop        wall {wall_n:7.2f} s   CPU {cpu_n:7.2f} s")
    if sub.size < occupied.size:
        print(
            f"    (extrapolated from {sub.size} of {occupied.size} cells holding {frac:.1%} of "
            f"the galaxies: wall {wall:.1f} s, CPU {cpu:.1f} s; the loop's cost is linear in "
            f"n_boot x count)"
        )
    for key, (w, c) in times.items():
        print(f"  speed-up ({key:20s}): wall {wall_n / w:6.1f} x, CPU {cpu_n / c:6.1f} x")
    for m in ("mad", "bias", "eta", "pco", "z_mean"):
        r = (rep.loc[naive.index, f"{m}_err"] / naive[f"{m}_err"]).replace(
            [np.inf, -np.inf], np.nan
        )
        print(
            f"  {m + '_err':>10s} ours / loop: median ratio {np.nanmedian(r):.3f} "
            f"over {r.notna().sum()} cells"
        )
    return times, (wall_n, cpu_n)


def bench_flag(n_rows, chunk):
    from photozsom import flags
    from photozsom.cli import main as cli
    from photozsom.evaluation import cells
    from photozsom.features import SOM_FEATURES, som_features
    from photozsom.som import SOM

    sys_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
    import sys

    sys.path.insert(0, sys_path)
    from test_flags import make_catalogue  # the tests' DR10-like catalogue maker

    train, z = make_catalogue(50_000, 0, spread=0.3)
    X, _ = som_features(train)
    som = SOM((32, 32), n_features=6, feature_names=list(SOM_FEATURES), seed=0)
    som.fit(X, epochs=5, progress=False)
    c, d = som.predict_with_distances(X)
    counts = np.bincount(c, minlength=som.n_cells)
    rng = np.random.default_rng(0)
    zp = z + 0.03 * (1 + z) * rng.standard_normal(z.size)
    rep = cells.report(c, z, zp, rng.uniform(size=z.size), som.n_cells, counts, n_boot=100)
    fl = flags.Flagger(som, rep, counts, train_distances=d)
    cat, _ = make_catalogue(n_rows, 1, spread=0.35)
    cat.loc[cat.index[::97], "FLUX_IVAR_I"] = 0.0  # some rows without i-band
    cat.loc[cat.index[::89], "FLUX_Z"] *= -0.1  # some negative fluxes
    with tempfile.TemporaryDirectory() as tmp:
        model = fl.save(os.path.join(tmp, "model"))
        inp = os.path.join(tmp, "cat.parquet")
        cat.to_parquet(inp)
        fl.flag(cat.iloc[:1000])  # warm up torch
        t = time.perf_counter()
        fl.flag(cat)
        t_mem = time.perf_counter() - t
        out = os.path.join(tmp, "flagged.parquet")
        t = time.perf_counter()
        cli(["flag", inp, "-o", out, "--model", str(model), "--chunk-size", str(chunk)])
        t_cli = time.perf_counter() - t
        n_out = len(pd.read_parquet(out, columns=["PZ_FLAG"]))
    assert n_out == n_rows
    print(f"flag: {n_rows:,} rows, 32x32 SOM, chunk {chunk:,}")
    print(f"  Flagger.flag in memory        {n_rows / t_mem:12,.0f} rows/s")
    print(
        f"  photozsom flag (Parquet->Parquet, incl. load and write) {n_rows / t_cli:12,.0f} rows/s"
    )


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="10x fewer galaxies, 200 resamples")
    ap.add_argument("--n-jobs", type=int, default=2, help="threads for cells.report (default 2)")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share the cores)")
    if args.quick:
        bench_report(120_000, 1024, 200, args.n_jobs, subset_cells=1024)
        bench_flag(100_000, 50_000)
    else:
        bench_report(1_200_000, 1024, 1000, args.n_jobs, subset_cells=96)
        bench_flag(1_000_000, 250_000)


if __name__ == "__main__":
    main()
