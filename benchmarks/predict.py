"""Benchmark: ``photozsom predict`` -- the P(z) summaries, the command's throughput, memory.

Measurements in one run, on one CPU thread (``OMP_NUM_THREADS=1``, CPU seconds, so other
load on the machine matters less than for wall time), each for the model recalibrated (the
default, ``recalibration="global"``) and the same model without its recalibration:

1. ``predict_table`` against ``model.predict`` alone (the network, the support rule and the
   recalibration) on ``--rows`` galaxies: the issue's target is a ratio <= 1.5. For the
   recalibrated model also with today's lazy :class:`~photozsom.calibrate.RecalibratedPDF`
   (quantiles of ``g(F)`` exactly; the projection onto mixture weights computed on first
   use) against the eager projection of the code before it ("before": every ``apply``
   projects at once, :meth:`Recalibrator.project`'s default path): the ratio both ways, the
   cost of the projection and of each summary on the recalibrated P(z) (``mean``, ``std``
   and ``mode`` come from the projected weights, so ``predict_table`` still forces the
   projection), and the difference between the quantiles of ``g(F)`` and those of the
   projection (redshift). That difference is a change of definition -- the projection
   approximates ``g(F)`` between the grid's mid-points -- not an error of either path.
2. The summaries as the code computed them before (exact ``ppf`` for the median and the two
   intervals, the whole-support mode search: still in ``photozsom.pdf`` as ``ppf`` and
   ``_mode_grid``) against today's (``MixturePDF.quantiles`` and the windowed ``mode``):
   the speed-up and the largest difference in redshift.
3. ``photozsom predict`` in a fresh process on a Parquet catalogue, with and without
   ``--pdf``: rows per CPU-second of the child (target >= 50,000 on catalogue features), also
   net of the start-up (imports, model loading: a 1,000-row run), its peak resident memory
   and the P(z) file's bytes per row.

With ``--baseline REV`` (default: b0cf07c, the numpy code before ``photozsom.kernels``)
measurements 1 and 3 are repeated, in the same run, with the package as it was at that git
revision (a temporary ``git worktree`` put first on ``sys.path`` of a child process), and
the ratios printed.

Before any timing, ``predict_table`` runs once on 100 rows (compiled loops loaded, tables
built, as in a run); the command-line measurement includes that start-up.

The model is a catalogue-feature :class:`~photozsom.model.PhotoZModel` trained for a few
epochs on the shipped DESI EDR BGS sample (north: g, r, z, W1, W2), unless ``--model`` names
a saved one; the catalogue is that sample tiled to ``--rows`` rows unless ``--input`` names one.

Usage::

    python benchmarks/predict.py                          # 200,000 rows
    python benchmarks/predict.py --rows 1000000 --cli-only  # the million-row run
    python benchmarks/predict.py --model DIR --input cat.parquet
    python benchmarks/predict.py --baseline none          # no same-run baseline
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


def baseline_checkout(rev: str, where: Path) -> Path:
    """A detached ``git worktree`` of this repository at ``rev`` (removed by the caller)."""
    root = Path(__file__).resolve().parents[1]
    subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "-q", str(where),
                    rev], check=True)
    return where


def child_ratio(checkout: Path, model_dir: Path, inp: Path) -> tuple[float, float]:
    """model.predict and predict_table CPU seconds with the package of ``checkout``."""
    res = subprocess.run([sys.executable, __file__, _CHILD, str(checkout), str(model_dir),
                          str(inp)], check=True, capture_output=True, text=True)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RATIO")][-1].split()
    return float(line[1]), float(line[2])


#: First argument of this script run as the child of :func:`child_ratio`.
_CHILD = "--ratio-child"


def ratio_child(checkout: str, model_dir: str, inp: str) -> None:
    """:func:`table_ratio` with the package of ``checkout`` first on the path (the child
    process of :func:`child_ratio`); prints ``RATIO model_seconds table_seconds``."""
    sys.path.insert(0, checkout)
    import pandas as pd

    import photozsom
    from photozsom.model import PhotoZModel

    assert photozsom.__file__.startswith(checkout), photozsom.__file__
    t_model, t_table, _ = table_ratio("baseline", PhotoZModel.load(model_dir),
                                      pd.read_parquet(inp))
    print("RATIO", t_model, t_table, flush=True)


def base_ratio(label: str, base_co: Path | None, model_dir: Path, inp: Path) -> None:
    """Measurement 1 with the baseline's package (nothing without a baseline)."""
    if base_co is None:
        return
    t_model, t_table = child_ratio(base_co, model_dir, inp)
    print(f"   baseline, {label}, same run: model.predict {t_model:.2f} s, predict_table "
          f"{t_table:.2f} s (best of 3): ratio {t_table / t_model:.2f}", flush=True)


def cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def best(fn, repeat: int = 3):
    """The least CPU time of ``repeat`` calls (single runs of the same code move by up to
    30%: page faults of the large arrays) and the last result."""
    times = []
    for _ in range(repeat):
        t, out = cpu(fn)
        times.append(t)
    return min(times), out


def run_cli(args: list[str], checkout: Path | None = None) -> tuple[float, float, float]:
    """CPU seconds, wall seconds and peak RSS (MiB) of ``photozsom ARGS`` in a fresh process
    (with the package of ``checkout`` first on its path, when given)."""
    code = _WRAP if checkout is None else (
        f"import sys; sys.path.insert(0, {str(checkout)!r})\n" + _WRAP)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True,
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


def raw_copy(model_dir: Path, path: Path) -> Path:
    """The saved model without its recalibration (P(z) of the network alone)."""
    from photozsom.model import PhotoZModel

    model = PhotoZModel.load(model_dir)
    model.recalibration, model.recalibrator_ = None, None
    return model.save(path)


def table_ratio(label: str, model, cat) -> tuple[float, float, object]:
    """model.predict and predict_table CPU seconds on ``cat``; prints the ratio."""
    from photozsom.predict import predict_table

    predict_table(cat.iloc[:100], model)             # compiled loops loaded, tables built
    t_model, pdf = best(lambda: model.predict(cat))
    t_table, _ = best(lambda: predict_table(cat, model))
    print(f"1. {label}: model.predict {t_model:.2f} s, predict_table {t_table:.2f} s (best of "
          f"3): ratio {t_table / t_model:.2f} (target <= 1.5)", flush=True)
    return t_model, t_table, pdf


def recalibrated(model, cat) -> None:
    """Measurement 1 for the recalibrated model: today's lazy path against the eager
    projection, the summaries' costs, and the quantiles of ``g(F)`` against the projection's."""
    import numpy as np

    from photozsom.calibrate import Recalibrator
    from photozsom.predict import _LEVELS

    t_model, _, _ = table_ratio("recalibrated, today (lazy g(F))", model, cat)
    lazy_apply = Recalibrator.apply

    def eager_apply(self, pdf, cells=None, **kw):
        out = lazy_apply(self, pdf, cells, **kw)
        out.projected()                         # project now, as before
        return out

    Recalibrator.apply = eager_apply
    try:
        _, _, pdf_ref = table_ratio("recalibrated, before (eager projection)", model, cat)
    finally:
        Recalibrator.apply = lazy_apply
    # the summaries of today's recalibrated P(z), one by one, from a fresh (lazy) object
    fresh = model.predict(cat)
    t_q, q_exact = cpu(lambda: fresh.quantiles(_LEVELS))
    t_proj, _ = cpu(fresh.projected)
    t_mom, _ = cpu(fresh.moments)
    t_mode, _ = cpu(fresh.mode)
    print(f"   model.predict {t_model:.2f} s; on its recalibrated P(z): quantiles of g(F) "
          f"{t_q:.2f} s, projection (forced by mean/std/mode) {t_proj:.2f} s, mean+std "
          f"{t_mom:.2f} s, mode {t_mode:.2f} s", flush=True)
    proj = pdf_ref.projected()
    dq = np.abs(q_exact - proj.quantiles(_LEVELS))
    print(f"   change of definition, quantiles of g(F) (today) - those of its projection "
          f"(before), |dz| median + 68/95% bounds: largest {dq.max():.1e}, 99.9th percentile "
          f"{np.percentile(dq, 99.9):.1e}, median {np.median(dq):.1e} (by level "
          f"{', '.join(f'{lv}: {d:.1e}' for lv, d in zip(_LEVELS, dq.max(axis=0), strict=True))})",
          flush=True)
    # mean and std of the projection (Z_PHOT_MEAN, Z_PHOT_STD) against those of g(F) itself,
    # by the trapezoid rule of 1 - G over the support (16,001 points) on 2,000 galaxies
    sub = fresh[np.sort(np.random.default_rng(1).choice(len(fresh), min(2000, len(fresh)),
                                                        replace=False))]
    lo, hi = sub.bounds
    zg = np.linspace(lo, hi, 16001)
    surv = 1.0 - sub.cdf(np.broadcast_to(zg, (len(sub), zg.size)))
    mean = lo + np.trapezoid(surv, zg, axis=1)
    std = np.sqrt(lo**2 + np.trapezoid(2.0 * zg * surv, zg, axis=1) - mean**2)
    print(f"   mean/std of the projection - those of g(F) (2,000 galaxies): largest |dz| "
          f"{np.abs(sub.mean() - mean).max():.1e} / {np.abs(sub.std() - std).max():.1e}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--model", default=None, help="a saved PhotoZModel (default: train one)")
    ap.add_argument("--input", default=None, help="a Parquet catalogue (default: DESI tiled)")
    ap.add_argument("--chunk-size", type=int, default=50_000)
    ap.add_argument("--cli-only", action="store_true", help="only measurement 3")
    ap.add_argument("--baseline", default="b0cf07c",
                    help="git revision measured beside today's code ('none': skip)")
    args = ap.parse_args()

    import pandas as pd
    import torch

    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = Path(args.model) if args.model else train_model(tmp / "model")
        raw_dir = raw_copy(model_dir, tmp / "model_raw")
        inp = Path(args.input) if args.input else tiled_input(tmp / "in.parquet", args.rows)
        n = len(pd.read_parquet(inp, columns=["OBJID"]))
        small = tmp / "small.parquet"
        pd.read_parquet(inp).iloc[:1000].to_parquet(small)
        print(f"model {model_dir}; input {inp} ({n} rows); one thread, CPU seconds", flush=True)
        base_co = None
        if args.baseline.lower() != "none":
            base_co = baseline_checkout(args.baseline, tmp / "baseline")
            print(f"baseline: the package at {args.baseline} ({base_co})", flush=True)
        try:
            measure(args, model_dir, raw_dir, inp, n, small, tmp, base_co)
        finally:
            if base_co is not None:
                subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]),
                                "worktree", "remove", "--force", str(base_co)], check=False)


def measure(args, model_dir: Path, raw_dir: Path, inp: Path, n: int, small: Path, tmp: Path,
            base_co: Path | None) -> None:
    """Measurements 1-3 (see the module docstring)."""
    import numpy as np
    import pandas as pd

    from photozsom.model import PhotoZModel

    if not args.cli_only:
        model = PhotoZModel.load(model_dir)
        if model.recalibrator_ is None:
            print("(the model has no recalibration: the recalibrated rows are skipped)")
        cat = pd.read_parquet(inp)
        try:
            model.predict(cat.iloc[:100])               # tables built once, as in a run
        except Exception as err:                        # noqa: BLE001 - report, go on
            print(f"1. recalibrated: skipped, the recalibrated model fails "
                  f"({type(err).__name__}: {err})", flush=True)
            model.recalibrator_ = None
        if model.recalibrator_ is not None:
            recalibrated(model, cat)
            base_ratio("recalibrated", base_co, model_dir, inp)
        model_raw = PhotoZModel.load(raw_dir)
        _, _, pdf = table_ratio("not recalibrated", model_raw, cat)
        base_ratio("not recalibrated", base_co, raw_dir, inp)
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
              f"{np.abs(q_old - q_new).max():.1e}, mode {np.abs(m_old - m_new).max():.1e}",
              flush=True)
    for label, mdir in (("recalibrated", model_dir), ("not recalibrated", raw_dir)):
        base = ["predict", "--model", str(mdir), "--chunk-size", str(args.chunk_size),
                "--overwrite"]
        try:
            c0, _, _ = run_cli(base[:1] + [str(small)] + base[1:]
                               + ["-o", str(tmp / "s.parquet")])
        except RuntimeError as err:
            print(f"3. photozsom predict, {label}: skipped, the command fails "
                  f"({str(err).strip().splitlines()[-1][:200]})", flush=True)
            continue
        c1, w1, m1 = run_cli(base[:1] + [str(inp)] + base[1:] + ["-o", str(tmp / "out.parquet")])
        print(f"3. photozsom predict, {label}: {n / c1:,.0f} rows per CPU-second "
              f"({n / w1:,.0f} rows/s wall; net of the {c0:.1f} CPU-s start-up "
              f"{(n - 1000) / max(c1 - c0, 1e-9):,.0f} rows per CPU-second; target >= 50,000), "
              f"peak {m1:,.0f} MiB", flush=True)
        if base_co is not None:
            b0, _, _ = run_cli(base[:1] + [str(small)] + base[1:]
                               + ["-o", str(tmp / "s.parquet")], base_co)
            b1, _, bm = run_cli(base[:1] + [str(inp)] + base[1:]
                                + ["-o", str(tmp / "out.parquet")], base_co)
            print(f"   baseline ({args.baseline}), same run: {n / b1:,.0f} rows per CPU-second "
                  f"(start-up {b0:.1f} CPU-s), peak {bm:,.0f} MiB: today {b1 / c1:.2f}x its "
                  f"throughput", flush=True)
        pdf_path = tmp / "pz.h5"
        c2, w2, m2 = run_cli(base[:1] + [str(inp)] + base[1:]
                             + ["-o", str(tmp / "out.parquet"), "--pdf", str(pdf_path)])
        print(f"   with --pdf: {n / c2:,.0f} rows per CPU-second ({n / w2:,.0f} rows/s "
              f"wall), peak {m2:,.0f} MiB, P(z) file {pdf_path.stat().st_size / n:,.0f} "
              f"bytes/row", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == [_CHILD]:
        ratio_child(*sys.argv[2:5])
    else:
        main()
