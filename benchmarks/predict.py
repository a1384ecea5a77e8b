"""Benchmark: ``photozsom predict`` -- the P(z) summaries, the command's throughput, memory.

Three measurements in one run, on one CPU thread (``OMP_NUM_THREADS=1``, CPU seconds, so
other load on the machine matters less than for wall time):

1. ``predict_table`` against ``model.predict`` alone (the network, the support rule and the
   recalibration) on ``--rows`` galaxies: the issue's target is a ratio <= 1.5.
2. The summaries as the code computed them before (exact ``ppf`` for the median and the two
   intervals, the whole-support mode search: still in ``photozsom.pdf`` as ``ppf`` and
   ``_mode_grid``) against today's (``MixturePDF.quantiles`` and the windowed ``mode``):
   the speed-up and the largest difference in redshift.
3. ``photozsom predict`` in a fresh process on a Parquet catalogue, with and without
   ``--pdf``: rows per CPU-second of the child (target >= 50,000 on catalogue features),
   its peak resident memory and the P(z) file's bytes per row.

The model is a catalogue-feature :class:`~photozsom.model.PhotoZModel` trained for a few
epochs on the shipped DESI EDR BGS sample (north: g, r, z, W1, W2), unless ``--model`` names
a saved one; the catalogue is that sample tiled to ``--rows`` rows unless ``--input`` names one.

Usage::

    python benchmarks/predict.py                          # 200,000 rows
    python benchmarks/predict.py --rows 1000000 --cli-only  # the million-row run
    python benchmarks/predict.py --model DIR --input cat.parquet
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

# peak memory: VmHWM of the child's own address space (ru_maxrss would include the forking
# parent's resident memory, which Linux carries across exec)
_WRAP = ("import resource, sys, time\n"
         "from photozsom.cli import main\n"
         "try:\n    rc = main(sys.argv[1:])\n"
         "finally:\n"
         "    u = resource.getrusage(resource.RUSAGE_SELF)\n"
         "    peak = u.ru_maxrss\n"
         "    try:\n"
         "        peak = int(next(ln.split()[1] for ln in open('/proc/self/status')\n"
         "                        if ln.startswith('VmHWM')))\n"
         "    except (OSError, StopIteration):\n"
         "        pass\n"
         "    print('USAGE', u.ru_utime + u.ru_stime, peak, file=sys.stderr)\n"
         "sys.exit(rc)\n")


def cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def run_cli(args: list[str]) -> tuple[float, float, float]:
    """CPU seconds, wall seconds and peak RSS (MiB) of ``photozsom ARGS`` in a fresh process."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAP, *args], check=False, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("USAGE")][-1].split()
    return float(line[1]), wall, float(line[2]) / 1024.0


def train_model(path: Path):
    import numpy as np

    from photozsom.data.desi_edr import load_bgs_north
    from photozsom.features import NORTH_SOM_FEATURES
    from photozsom.model import PhotoZModel

    df = load_bgs_north()
    idx = np.random.default_rng(0).permutation(len(df))
    tr, va = df.iloc[idx[:40000]], df.iloc[idx[40000:50000]]
    model = PhotoZModel("catalog", seed=0, catalog_features=NORTH_SOM_FEATURES, max_epochs=3)
    model.fit(tr, tr["Z"], va, va["Z"], progress=False)
    return model.save(path)


def tiled_input(path: Path, n: int) -> Path:
    import numpy as np

    from photozsom.data.desi_edr import load_bgs_north

    df = load_bgs_north().drop(columns=["Z"])
    df = df.iloc[np.resize(np.arange(len(df)), n)].reset_index(drop=True)
    df["OBJID"] = np.arange(n, dtype=np.int64)
    df.to_parquet(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--model", default=None, help="a saved PhotoZModel (default: train one)")
    ap.add_argument("--input", default=None, help="a Parquet catalogue (default: DESI tiled)")
    ap.add_argument("--chunk-size", type=int, default=50_000)
    ap.add_argument("--cli-only", action="store_true", help="only measurement 3")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    from photozsom.model import PhotoZModel
    from photozsom.predict import predict_table

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = Path(args.model) if args.model else train_model(tmp / "model")
        inp = Path(args.input) if args.input else tiled_input(tmp / "in.parquet", args.rows)
        n = len(pd.read_parquet(inp, columns=["OBJID"])) if not args.input else None
        print(f"model {model_dir}; input {inp} ({n or '?'} rows); one thread, CPU seconds")
        if not args.cli_only:
            model = PhotoZModel.load(model_dir)
            cat = pd.read_parquet(inp)
            t_model, pdf = cpu(lambda: model.predict(cat))
            t_table, _ = cpu(lambda: predict_table(cat, model))
            print(f"1. model.predict {t_model:.2f} s, predict_table {t_table:.2f} s: "
                  f"ratio {t_table / t_model:.2f} (target <= 1.5)")
            levels = (0.5, 0.16, 0.84, 0.025, 0.975)

            def before():
                med = pdf.median()
                l68, u68 = pdf.interval(0.68)
                l95, u95 = pdf.interval(0.95)
                w = np.asarray(pdf.weights, dtype=np.float64)
                mode = pdf._mode_grid(w / w.sum(axis=1, keepdims=True))
                return np.column_stack([med, l68, u68, l95, u95]), mode

            def today():
                return pdf.quantiles(levels), pdf.mode()

            t_old, (q_old, m_old) = cpu(before)
            t_new, (q_new, m_new) = cpu(today)
            print(f"2. median + 68/95% intervals + mode: before {t_old:.2f} s, today "
                  f"{t_new:.2f} s: {t_old / t_new:.1f}x faster; largest |dz| quantiles "
                  f"{np.abs(q_old - q_new).max():.1e}, mode {np.abs(m_old - m_new).max():.1e}")
        base = ["predict", str(inp), "--model", str(model_dir), "--chunk-size",
                str(args.chunk_size), "--overwrite"]
        rows = n or args.rows
        c1, w1, m1 = run_cli(base + ["-o", str(tmp / "out.parquet")])
        print(f"3. photozsom predict: {rows / c1:,.0f} rows per CPU-second ({rows / w1:,.0f} "
              f"rows/s wall), peak {m1:,.0f} MiB")
        pdf_path = tmp / "pz.h5"
        c2, w2, m2 = run_cli(base + ["-o", str(tmp / "out.parquet"), "--pdf", str(pdf_path)])
        print(f"   with --pdf: {rows / c2:,.0f} rows per CPU-second ({rows / w2:,.0f} rows/s "
              f"wall), peak {m2:,.0f} MiB, P(z) file {pdf_path.stat().st_size / rows:,.0f} "
              f"bytes/row")


if __name__ == "__main__":
    main()
