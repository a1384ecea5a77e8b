"""Benchmark: ``photozsom predict`` throughput and peak memory, with and without flags.

On the default sky's random sample (every row, north and south, as a user's catalogue):
a catalogue-feature :class:`~photozsom.model.PhotoZModel` and the book's
:class:`~photozsom.flags.RegionalFlagger` are trained on the sky's spectroscopic sample
(with ``--run``, the flagger of a finished book run), then the command line is timed
in a fresh process for each chunk size, Parquet in and out, reporting rows per second and
the process's peak resident memory (``ru_maxrss`` of the child). ``photozsom flag`` alone
is the peer measured in the same run.

Usage::

    python benchmarks/predict.py                      # default sky (simulated if missing)
    python benchmarks/predict.py --scale ci           # quick
    python benchmarks/predict.py --run runs/default   # a finished book run's sky and flagger
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_WRAP = ("import resource, sys\n"
         "from photozsom.cli import main\n"
         "try:\n    rc = main(sys.argv[1:])\n"
         "finally:\n"
         "    print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
         "sys.exit(rc)\n")


def timed(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of ``photozsom ARGS`` in a fresh process."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAP, *args], check=True, capture_output=True,
                         text=True)
    dt = time.perf_counter() - t
    peak = [int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("PEAK")]
    return dt, peak[-1] / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="default")
    ap.add_argument("--run", default=None, help="a book run directory with mdn/model and flags/flagger")
    ap.add_argument("--chunks", default="50000,200000,1000000")
    args = ap.parse_args()

    from photozsom import pipeline
    from photozsom.device import default_device

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.run:  # a finished book run: its sky and flagger; a catalogue model on its split
            run = pipeline.Run(args.run)
            flagger_dir = run.need("flags/flagger")
            model = pipeline.fit_photoz_model(run, run.spec_with_split(), "catalog",
                                              scale=args.scale)
            model_dir = model.save(tmp / "model")
        else:
            run = pipeline.Run(tmp / "run")
            print(f"training the models on the {args.scale} sky ...", flush=True)
            pipeline.run_data(run, scale=args.scale, progress=False)
            pipeline.run_som(run, scale=args.scale, progress=False)
            pipeline.run_mdn(run, scale=args.scale, inputs="catalog", progress=False)
            pipeline.run_cells(run, scale=args.scale)
            pipeline.run_flags(run, scale=args.scale)
            model_dir, flagger_dir = run.root / "mdn" / "model", run.root / "flags" / "flagger"
        inp = run.need("sky/random.parquet")
        import pyarrow.parquet as pq

        n = pq.ParquetFile(inp).metadata.num_rows
        print(f"photozsom predict on {n:,} rows of {inp} (device {default_device()}, "
              f"model {model_dir})")
        print(f"{'command':<34} {'chunk':>9} {'rows/s':>10} {'peak MiB':>9}")
        for chunk in (int(c) for c in args.chunks.split(",")):
            out = tmp / f"out_{chunk}.parquet"
            rows = {}
            for name, extra in (("flag (peer)", ["flag", str(inp), "-o", str(out), "--model",
                                                 str(flagger_dir)]),
                                ("predict", ["predict", str(inp), "-o", str(out), "--model",
                                             str(model_dir)]),
                                ("predict --flagger", ["predict", str(inp), "-o", str(out),
                                                       "--model", str(model_dir), "--flagger",
                                                       str(flagger_dir)])):
                dt, peak = timed(extra + ["--chunk-size", str(chunk), "--overwrite"])
                rows[name] = n / dt
                print(f"photozsom {name:<24} {chunk:>9,} {n / dt:>10,.0f} {peak:>9,.0f}")
            print(f"  predict --flagger / flag: {rows['predict --flagger'] / rows['flag (peer)']:.2f}x "
                  f"the rows/s of flagging alone")


if __name__ == "__main__":
    main()
