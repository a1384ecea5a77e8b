"""Benchmark: reading scattered rows of a cutout store, photozsom vs plain h5py.

:meth:`photozsom.embed.store.CutoutStore.read` with an index array (what the flagging
chapter, a user's subset or an embedding of selected galaxies does) against the peer an
h5py user writes: a point selection ``ds[np.unique(rows)]`` and a reorder. Both return the
same arrays (checked). The store is written by the script (or pass ``--store`` to time an
existing one, e.g. ``runs/default/sky/cutouts.h5``); each read is timed ``--repeat`` times
and the best kept, after one untimed read that warms the page cache for both.

Usage::

    python benchmarks/store.py                 # 40,000 rows of 64 px in a temporary store
    python benchmarks/store.py --quick         # 8,000 rows
    python benchmarks/store.py --store runs/default/sky/cutouts.h5
"""

from __future__ import annotations

import argparse
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

from photozsom.embed.store import CutoutStore


def write_store(path: Path, n: int, size: int, seed: int = 0) -> None:
    """A store of ``n`` random ``size`` x ``size`` cutouts, appended in 4,096-row batches."""
    rng = np.random.default_rng(seed)
    with CutoutStore.create(path, size=size) as st:
        for start in range(0, n, 4096):
            k = min(4096, n - start)
            st.append(rng.normal(size=(k, 4, size, size)).astype(np.float32),
                      np.ones((k, 4), bool), np.arange(start, start + k, dtype=np.int64))


def h5py_points(st: CutoutStore, rows: np.ndarray) -> np.ndarray:
    """The plain-h5py way: point selection of the sorted unique rows, then reorder."""
    uniq, inv = np.unique(rows, return_inverse=True)
    return st._h5["images"][uniq][inv]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None, help="time this store instead")
    ap.add_argument("--n", type=int, default=40_000, help="rows of the written store")
    ap.add_argument("--size", type=int, default=64, help="cutout side of the written store, px")
    ap.add_argument("--quick", action="store_true", help="8,000 rows")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if args.quick:
        args.n = 8_000
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store
        if path is None:
            path = Path(tmp) / "c.h5"
            t = time.perf_counter()
            write_store(path, args.n, args.size)
            print(f"wrote {args.n:,} random {args.size}-px cutouts in {time.perf_counter() - t:.1f} s")
        with CutoutStore(path) as st:
            n = len(st)
            print(f"store: {path} ({n:,} rows of {st.size} px, HDF5 chunks "
                  f"{st._h5['images'].chunks})")
            print(f"{'rows read':>10} {'photozsom [s]':>14} {'h5py points [s]':>16} {'speed-up':>9}")
            rng = np.random.default_rng(1)
            for k in (50, 500, 2_000, min(8_192, n // 2)):
                rows = rng.choice(n, k, replace=False)  # scattered, unsorted
                np.testing.assert_array_equal(st.read(rows)[0], h5py_points(st, rows))
                t_pz = min(timeit.repeat(lambda rows=rows: st.read(rows), number=1, repeat=args.repeat))
                t_h5 = min(timeit.repeat(lambda rows=rows: h5py_points(st, rows), number=1,
                                         repeat=args.repeat))
                print(f"{k:>10,} {t_pz:>14.3f} {t_h5:>16.3f} {t_h5 / t_pz:>8.1f}x")


if __name__ == "__main__":
    main()
