"""Benchmark: predict + flag and the 2" cross-match at survey scale, LSDB/Dask vs one process.

In one run, on this machine:

1. **The catalogue.** ``--rows`` (default 10^7) photometry-only rows: rows of a simulated
   sky's random sample (:func:`photozsom.sim.simulate`, ``--scale``) drawn with
   replacement, positions jittered by a Gaussian of 0.5 deg, fresh OBJIDs; written as one
   Parquet file (the single-process input) and imported as a HATS catalogue with
   hats-import on a 2-process local cluster (the time is printed: it is the cost of
   converting DR10 sweeps once).
2. **Models.** A Flagger (a 16x16 SOM) and a PhotoZModel (the default MDN, one epoch; its
   cost per row does not depend on training) fitted on the sky's spectroscopic sample.
3. **Flag.** ``photozsom flag IN.parquet -o OUT.parquet --model DIR`` (the single-process
   streaming command, in a subprocess) against :func:`photozsom.survey.flag_hats` with a local
   cluster of 1 and of 2 worker processes (one thread each) on all rows.
4. **Predict + flag.** ``photozsom predict IN -o OUT --model M --flagger F`` against
   :func:`photozsom.survey.predict_hats` with 1 and 2 workers, on the first
   ``--predict-rows`` rows (P(z) summaries cost ~100x more per row than flags; the rate per
   row does not depend on the catalogue's size).
5. **Cross-match** of ``--xmatch`` spectroscopic x ``--xmatch`` photometric positions (a
   10x10 deg patch, half the spectra 0-1" from a photometric object): the chunked astropy
   matcher (:func:`photozsom.data.crossmatch.crossmatch`) against LSDB (HATS conversion
   of both sides with margins, then :func:`photozsom.survey.crossmatch_hats` on 2 workers);
   the two results are checked to be identical.

Rates are rows per second of wall time without start-up: the single-process commands' own
reported time (after imports and model loading), and for Dask the run on workers that have
already imported their libraries (cluster start-up and imports printed separately).
Peak memory: the resident-set high-water mark (``VmHWM``) of the single-process command,
and of each Dask worker process (a fresh cluster per measurement, so it covers start-up
imports plus the run). Prints the device and core count, since every rate depends on them.

Usage::

    python benchmarks/survey.py                           # 1e7 rows, 2e5 predicted, 1e6 x 1e6
    python benchmarks/survey.py --rows 1000000 --predict-rows 50000 --xmatch 100000   # quick
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DROP = ("Z_TRUE", "HAS_CUTOUT", "BLEND_FRAC_TRUE")


def make_catalogue(sky: Path, out: Path, n: int, seed: int = 0, chunk: int = 1_000_000) -> Path:
    """``n`` rows resampled from the sky's random sample with jittered positions (Parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = pd.read_parquet(sky / "random.parquet")
    src = src.drop(columns=[c for c in DROP if c in src.columns])
    rng = np.random.default_rng(seed)
    writer = None
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        df = src.iloc[rng.integers(0, len(src), m)].reset_index(drop=True)
        dec = np.clip(df["DEC"].to_numpy() + rng.normal(0, 0.5, m), -89.9, 89.9)
        ra = (df["RA"].to_numpy() + rng.normal(0, 0.5, m) / np.cos(np.radians(dec))) % 360
        df["RA"], df["DEC"] = ra, dec
        df["OBJID"] = np.arange(lo, lo + m, dtype=np.int64)
        t = pa.Table.from_pandas(df, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(out, t.schema)
        writer.write_table(t)
    writer.close()
    return out


def fit_models(sky: Path, root: Path) -> tuple[Path, Path]:
    from photozsom.evaluation import cells
    from photozsom.features import SOM_FEATURES, som_features
    from photozsom.flags import Flagger
    from photozsom.model import PhotoZModel
    from photozsom.som import SOM

    spec = pd.read_parquet(sky / "spec.parquet")
    X, ok = som_features(spec)
    som = SOM(shape=(16, 16), n_features=X.shape[1], feature_names=list(SOM_FEATURES), seed=0)
    som.fit(X[ok], epochs=3, progress=False)
    cell = som.predict(X[ok])
    z = spec["Z"].to_numpy()[ok]
    rng = np.random.default_rng(0)
    counts = np.bincount(cell, minlength=som.n_cells)
    rep = cells.report(cell, z, z + 0.03 * rng.standard_normal(z.size), rng.uniform(size=z.size),
                       som.n_cells, counts, n_boot=50, seed=0)
    Flagger(som, rep, counts).save(root / "flagger")
    half = len(spec) * 4 // 5
    model = PhotoZModel(seed=0, max_epochs=1)
    model.fit(spec.iloc[:half], spec["Z"].iloc[:half], spec.iloc[half:], spec["Z"].iloc[half:],
              progress=False)
    model.save(root / "model")
    return root / "model", root / "flagger"


_WRAP = ("import sys\nfrom photozsom.cli import main\nrc = main(sys.argv[1:])\n"
         "hwm = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
         "print('PEAK_KIB', hwm, file=sys.stderr)\nsys.exit(rc)\n")


def _peak_mib() -> float:
    """Peak resident set of this process since it started (VmHWM; not inherited from a
    parent, unlike ``ru_maxrss``), MiB."""
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0]) / 1024


def run_cli(args: list[str]) -> tuple[float, float]:
    """Time (s) and peak RSS (MiB) of the ``photozsom ARGS`` command in a subprocess.

    The time is the one the command reports for its own work (after imports and loading the
    model), so it compares with warmed-up Dask workers."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"photozsom {args[0]} failed:\n{proc.stderr}")
    import re

    own = re.search(r" in ([0-9.]+) s \(", proc.stderr)
    peak = int(proc.stderr.split("PEAK_KIB")[1].split()[0]) / 1024
    return (float(own.group(1)) if own else dt), peak


def _warm() -> None:
    """Import what the tasks need on a worker, so that start-up is not timed."""
    import lsdb  # noqa: F401
    import torch  # noqa: F401

    import photozsom.predict
    import photozsom.survey  # noqa: F401


def run_hats(fn, workers: int, **kw) -> tuple[float, float, list[float]]:
    """(cluster start s, wall s, peak RSS MiB per worker) of ``fn(scheduler=..., **kw)``."""
    from photozsom import survey

    t0 = time.perf_counter()
    with survey.dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        client.run(_warm)
        t_start = time.perf_counter() - t0
        t1 = time.perf_counter()
        fn(scheduler=client.scheduler.address, progress=False, **kw)
        dt = time.perf_counter() - t1
        peaks = sorted(client.run(_peak_mib).values())
    return t_start, dt, peaks


def xmatch_sky(n: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ra = rng.uniform(150.0, 160.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-5.0)), np.sin(np.radians(5.0)),
                                           n)))
    phot = pd.DataFrame({"RA": ra, "DEC": dec, "OBJID": np.arange(n, dtype=np.int64),
                         "FLUX_R": rng.normal(2, 0.5, n).astype(np.float32)})
    half = n // 2
    k = rng.choice(n, half, replace=False)
    r = rng.uniform(0, 1.0, half) / 3600.0
    th = rng.uniform(0, 2 * np.pi, half)
    ra_s = np.r_[ra[k] + r * np.cos(th) / np.cos(np.radians(dec[k])),
                 rng.uniform(150.0, 160.0, n - half)]
    dec_s = np.r_[dec[k] + r * np.sin(th), rng.uniform(-5.0, 5.0, n - half)]
    spec = pd.DataFrame({"RA": ra_s, "DEC": dec_s, "Z": rng.uniform(0, 1.5, n),
                         "TARGETID": np.arange(n, dtype=np.int64)})
    return spec, phot


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--predict-rows", type=int, default=200_000)
    p.add_argument("--xmatch", type=int, default=1_000_000)
    p.add_argument("--scale", default="ci", help="scale of the simulated sky the rows come from")
    p.add_argument("--workdir", default=None, help="scratch directory (default: a temp dir)")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args()

    import torch

    from photozsom import survey
    from photozsom.data.crossmatch import crossmatch
    from photozsom.sim import simulate

    res: dict = {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                 "device": "cuda" if torch.cuda.is_available() else "cpu"}
    print(f"device: {res['device']}, {res['cores']} cores; rows {a.rows:,}, predicted rows "
          f"{a.predict_rows:,}, cross-match {a.xmatch:,} x {a.xmatch:,}", flush=True)
    tmp = tempfile.TemporaryDirectory(dir=a.workdir) if a.workdir is None else None
    root = Path(tmp.name if tmp else a.workdir)
    root.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    sky = Path(simulate(root / "sky", scale=a.scale, seed=0, progress=False)["random"]).parent
    big = make_catalogue(sky, root / "big.parquet", a.rows)
    small = make_catalogue(sky, root / "small.parquet", a.predict_rows)
    model_dir, flagger_dir = fit_models(sky, root)
    print(f"inputs built in {time.perf_counter() - t:.0f} s", flush=True)

    t = time.perf_counter()
    survey.to_hats(big, root / "big_hats", margin_arcsec=None, partition_rows=500_000,
                   workers=2, progress=False)
    res["import_s"] = time.perf_counter() - t
    survey.to_hats(small, root / "small_hats", margin_arcsec=None, partition_rows=20_000,
                   workers=2, progress=False)
    print(f"hats-import of {a.rows:,} rows (2 workers): {res['import_s']:.0f} s "
          f"({a.rows / res['import_s']:,.0f} rows/s)", flush=True)

    # --- flag
    dt, rss = run_cli(["flag", str(big), "-o", str(root / "flag_cli.parquet"), "--model",
                       str(flagger_dir)])
    res["flag"] = {"single": {"s": dt, "rows_s": a.rows / dt, "peak_mib": rss}}
    print(f"flag  single process (photozsom flag): {a.rows / dt:10,.0f} rows/s  peak {rss:,.0f} "
          f"MiB", flush=True)
    for w in (1, 2):
        ts, dt, peaks = run_hats(functools.partial(
            survey.flag_hats, root / "big_hats", root / f"flag_w{w}", flagger_dir,
            overwrite=True), w)
        res["flag"][f"workers{w}"] = {"s": dt, "rows_s": a.rows / dt, "peak_mib": peaks,
                                      "cluster_start_s": ts}
        print(f"flag  LSDB, {w} worker(s):               {a.rows / dt:10,.0f} rows/s  peak per "
              f"worker {', '.join(f'{x:,.0f}' for x in peaks)} MiB  (x{res['flag']['single']['s'] / dt:.2f} "
              f"vs single; cluster start {ts:.0f} s)", flush=True)

    # --- predict + flag
    n = a.predict_rows
    dt, rss = run_cli(["predict", str(small), "-o", str(root / "pred_cli.parquet"), "--model",
                       str(model_dir), "--flagger", str(flagger_dir)])
    res["predict"] = {"single": {"s": dt, "rows_s": n / dt, "peak_mib": rss}}
    print(f"predict+flag single process:           {n / dt:10,.0f} rows/s  peak {rss:,.0f} MiB",
          flush=True)
    for w in (1, 2):
        ts, dt, peaks = run_hats(functools.partial(
            survey.predict_hats, root / "small_hats", root / f"pred_w{w}", model_dir,
            flagger_dir, overwrite=True), w)
        res["predict"][f"workers{w}"] = {"s": dt, "rows_s": n / dt, "peak_mib": peaks,
                                         "cluster_start_s": ts}
        print(f"predict+flag LSDB, {w} worker(s):        {n / dt:10,.0f} rows/s  peak per worker "
              f"{', '.join(f'{x:,.0f}' for x in peaks)} MiB  (x{res['predict']['single']['s'] / dt:.2f} "
              f"vs single)", flush=True)
    got = survey.read_hats_frame(root / "pred_w2")
    ref = pd.read_parquet(root / "pred_cli.parquet").sort_values("OBJID").reset_index(drop=True)
    diff = np.nanmax(np.abs(got["Z_PHOT_MEDIAN"].to_numpy() - ref["Z_PHOT_MEDIAN"].to_numpy()))
    res["predict"]["max_abs_diff_median"] = float(diff)
    assert len(got) == n and got["OBJID"].is_unique and diff <= 1e-6, diff
    print(f"  LSDB output == single-process output (rows {len(got):,}, max |dz| {diff:.1e})")

    # --- cross-match
    spec, phot = xmatch_sky(a.xmatch)
    t = time.perf_counter()
    ref = crossmatch(spec, phot, 2.0, progress=False)
    t_astropy = time.perf_counter() - t
    t = time.perf_counter()
    survey.to_hats(spec, root / "xspec", margin_arcsec=None, partition_rows=250_000,
                   progress=False)
    survey.to_hats(phot, root / "xphot", margin_arcsec=5.0, partition_rows=250_000,
                   progress=False)
    t_conv = time.perf_counter() - t
    with survey.dask_client(workers=2) as client:
        client.run(_warm)
        t = time.perf_counter()
        x = survey.crossmatch_hats(root / "xspec", root / "xphot", 2.0).compute(
            progress_bar=False)
        t_lsdb = time.perf_counter() - t
        del client
    ok = (int(x["MATCHED"].sum()) == int(ref["MATCHED"].sum()) and len(x) == len(ref))
    m = ref["MATCHED"].to_numpy()
    pairs_ref = set(zip(ref["TARGETID"].to_numpy()[m], ref["OBJID"].to_numpy()[m].astype(int)))
    xm = x["MATCHED"].to_numpy(dtype=bool)
    pairs_x = set(zip(x["TARGETID"].to_numpy()[xm], x["OBJID"].to_numpy()[xm].astype(int)))
    ok = ok and pairs_ref == pairs_x
    res["xmatch"] = {"astropy_s": t_astropy, "lsdb_convert_s": t_conv, "lsdb_match_s": t_lsdb,
                     "identical": bool(ok)}
    print(f"cross-match {a.xmatch:,} x {a.xmatch:,}: astropy chunked {t_astropy:.1f} s; LSDB "
          f"2 workers {t_lsdb:.1f} s (+ {t_conv:.1f} s to write both as HATS) -> x"
          f"{t_astropy / t_lsdb:.2f} (x{t_astropy / (t_lsdb + t_conv):.2f} with conversion); "
          f"same pairs: {ok}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
