"""Benchmark: 2" nearest-neighbour cross-match of N spectroscopic x N photometric positions.

Times :func:`photozsom.data.crossmatch.crossmatch` (one KD-tree on the photometry, the
spectroscopic rows matched in chunks) and :func:`~photozsom.data.crossmatch.crossmatch_stream`
(the photometry fed in 10 pieces, as sweep files would be) against two peers measured in the
same run:

- ``astropy one call``: a single ``SkyCoord.match_to_catalog_sky`` on all rows at once (what a
  user would write; no chunking, no join);
- ``scipy cKDTree``: a bare ``scipy.spatial.cKDTree`` on unit vectors with
  ``distance_upper_bound`` (the lower bound on cost: no astropy, no separations, no join).

The sky: N photometric positions uniform in a 10 x 10 deg patch (10^4 per deg^2 at N = 10^6,
about a DR10 sweep's density); half the spectroscopic positions are photometric ones moved by
up to 1", half are uniform in the patch (mostly unmatched), so both branches are exercised.
Each method runs in its own subprocess; peak memory is the largest resident set size
(psutil, sampled every 5 ms) above the level after the inputs were built, so it counts the
KD-tree, temporaries and the output table.

Usage::

    python benchmarks/crossmatch.py              # N = 1e6
    python benchmarks/crossmatch.py --n 200000
    python benchmarks/crossmatch.py --quick      # N = 1e5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

METHODS = ("photozsom", "photozsom_stream", "astropy_one_call", "scipy_ckdtree")


def make_sky(n: int, seed: int = 0):
    """Photometric and spectroscopic positions (degrees) plus a photometry table."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    ra_p = rng.uniform(150.0, 160.0, n)
    dec_p = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-5.0)),
                                             np.sin(np.radians(5.0)), n)))
    phot = pd.DataFrame({"RA": ra_p, "DEC": dec_p,
                         "FLUX_G": rng.normal(1, 0.5, n).astype(np.float32),
                         "FLUX_R": rng.normal(2, 0.5, n).astype(np.float32),
                         "MASKBITS": rng.integers(0, 8, n).astype(np.int32),
                         "OBJID": np.arange(n, dtype=np.int64)})
    half = n // 2
    k = rng.choice(n, half, replace=False)
    r = np.radians(rng.uniform(0, 1.0, half) / 3600.0)
    th = rng.uniform(0, 2 * np.pi, half)
    ra_s = np.r_[ra_p[k] + np.degrees(r * np.cos(th)) / np.cos(np.radians(dec_p[k])),
                 rng.uniform(150.0, 160.0, n - half)]
    dec_s = np.r_[dec_p[k] + np.degrees(r * np.sin(th)), rng.uniform(-5.0, 5.0, n - half)]
    spec = pd.DataFrame({"RA": ra_s, "DEC": dec_s, "Z": rng.uniform(0, 1.6, n)})
    return spec, phot


def _unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def run_method(method: str, spec, phot, radius: float, chunk: int) -> int:
    """Run one method; return the number of matched rows."""
    if method == "photozsom":
        from photozsom.data.crossmatch import crossmatch

        out = crossmatch(spec, phot, radius, chunk_size=chunk, progress=False)
        return int(out["MATCHED"].sum())
    if method == "photozsom_stream":
        from photozsom.data.crossmatch import crossmatch_stream

        step = -(-len(phot) // 10)
        pieces = (phot.iloc[i:i + step] for i in range(0, len(phot), step))
        return int(crossmatch_stream(spec, pieces, radius, progress=False)["MATCHED"].sum())
    if method == "astropy_one_call":
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        a = SkyCoord(spec["RA"].to_numpy() * u.deg, spec["DEC"].to_numpy() * u.deg)
        b = SkyCoord(phot["RA"].to_numpy() * u.deg, phot["DEC"].to_numpy() * u.deg)
        _, sep, _ = a.match_to_catalog_sky(b)
        return int((sep.arcsec <= radius).sum())
    if method == "scipy_ckdtree":
        from scipy.spatial import cKDTree

        tree = cKDTree(_unit(phot["RA"].to_numpy(), phot["DEC"].to_numpy()))
        chord = 2 * np.sin(np.radians(radius / 3600.0) / 2)
        d, _ = tree.query(_unit(spec["RA"].to_numpy(), spec["DEC"].to_numpy()),
                          distance_upper_bound=chord)
        return int(np.isfinite(d).sum())
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def worker(method: str, n: int, radius: float, chunk: int, seed: int) -> dict:
    """Build the sky, then time ``method`` while sampling the resident set size."""
    import psutil

    spec, phot = make_sky(n, seed)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    matched = run_method(method, spec, phot, radius, chunk)
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return {"method": method, "seconds": dt, "rows_per_s": n / dt, "matched": matched,
            "peak_mib": (peak[0] - base) / 2**20, "inputs_mib": base / 2**20}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=float, default=1e6, help="rows on each side (default 1e6)")
    ap.add_argument("--quick", action="store_true", help="N = 1e5")
    ap.add_argument("--chunk", type=int, default=100_000, help="left rows per chunk")
    ap.add_argument("--radius", type=float, default=2.0, help="match radius, arcsec")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n = int(1e5 if args.quick else args.n)
    if args.worker:
        print(json.dumps(worker(args.worker, n, args.radius, args.chunk, args.seed)))
        return

    env = dict(os.environ, OMP_NUM_THREADS="1")
    results = {}
    print(f"cross-match {n:,} x {n:,} positions, radius {args.radius}\", chunk {args.chunk:,}")
    for m in args.methods.split(","):
        out = subprocess.run([sys.executable, __file__, "--worker", m, "--n", str(n),
                              "--chunk", str(args.chunk), "--radius", str(args.radius),
                              "--seed", str(args.seed)],
                             capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            print(f"{m}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[m] = r
        print(f"  {m:18s} {r['seconds']:8.2f} s  {r['rows_per_s']:12,.0f} rows/s  "
              f"peak +{r['peak_mib']:7.1f} MiB  matched {r['matched']:,}")
    if "photozsom" in results:
        me = results["photozsom"]
        for peer in ("astropy_one_call", "scipy_ckdtree"):
            if peer in results:
                p = results[peer]
                print(f"photozsom vs {peer}: speed x{me['rows_per_s'] / p['rows_per_s']:.2f}, "
                      f"peak memory x{me['peak_mib'] / max(p['peak_mib'], 1e-9):.2f}")
        counts = {r["matched"] for r in results.values()}
        print("matched counts agree" if len(counts) == 1 else f"matched counts differ: {counts}")


if __name__ == "__main__":
    main()
