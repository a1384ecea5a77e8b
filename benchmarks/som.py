"""Benchmark: photozsom's torch batch SOM against minisom and torchsom, and predict throughput.

Usage::

    python benchmarks/som.py            # 200,000 x 6 features, 32x32 map, 10 epochs (~12 min)
    python benchmarks/som.py --quick    # 20,000 rows, 5 epochs (~1 min)

Data: :func:`photozsom.features.som_features` of the mock random sample when a
``runs/*/sky/random.parquet`` with enough valid rows exists (the default scale has ~198,000
southern rows; or ``--data PATH``), else a Gaussian-mixture
stand-in for DR10-south galaxy colours (two galaxy types along a redshift sequence,
photometric noise growing with magnitude; see :func:`gaussian_mixture_colours`).
All three SOMs train on the same standardised matrix, with the same number of passes
over the data (``--epochs``), on 2 CPU threads, from the same PCA-plane initial
prototypes where the library allows it:

- photozsom ``SOM(backend="torch")``: batch map on sub-batches of 4 samples per cell
  (~49 updates per pass at N = 200,000), the last pass one full batch update; sigma 16 -> 1.
- minisom ``MiniSom.train_batch(X, epochs * N)``: one online update per sample, cycling
  through the data ``epochs`` times in order; sigma 16 -> 1 (``inverse_decay_to_one``),
  learning rate 0.5 -> 0 (``linear_decay_to_zero``). (The installed minisom 2.3.6 also
  has ``train_batch_offline``, Kohonen's batch map with a Python loop over samples; it is
  timed only with ``--offline``.)
- torchsom ``SOM.fit``: mini-batches of ``--torchsom-batch`` samples (each size listed is
  timed), ``epochs`` epochs, sigma 16 -> 1 (``sig_inverse_decay_to_one``), learning rate
  0.5 -> 0 (``lr_linear_decay_to_zero``), Gaussian neighbourhood, brute-force torch BMU
  search (FAISS is not installed). torchsom scales each mini-batch step by
  ``learning_rate / batch_size``, so large batches learn little per pass and small ones
  pay its per-batch overhead (three ``torch.cdist`` calls per batch for the BMU, QE and TE;
  ~90 ms per 64-sample batch on this shared machine, so batch 64 would take ~50 min on
  200,000 x 10 passes; not run).

Timings on a CPU shared with other processes are noisy: each line prints the 1-minute load
average, photozsom's fit and predict are timed ``--repeat`` times (best kept) and the much
longer peer runs once.

Quantization and topographic errors of every map are computed by the same code
(photozsom's, checked against minisom in the tests) on the standardised training data.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

from photozsom.features import SOM_FEATURES, Standardizer, som_features
from photozsom.som import SOM

SHAPE = (32, 32)
N_SURVEY = 18_000_000


def gaussian_mixture_colours(n: int, seed: int = 0) -> np.ndarray:
    """A stand-in for the SOM features of DR10-south galaxies, shape ``(n, 6)``, AB mag.

    Columns ``g-r, r-i, i-z, z-W1, W1-W2, r``. A mixture of 2 types (red, blue) x 12
    redshift bins on ``0.05 < z < 1.2``; mean colours follow a smooth redshift track per
    type, with intrinsic scatter 0.05-0.15 mag and photometric noise growing with r
    (19 < r < 23.4, number counts rising ~0.35 dex per mag).
    """
    rng = np.random.default_rng(seed)
    z_bins = np.linspace(0.05, 1.2, 12)
    comp_z = np.repeat(z_bins, 2)
    comp_red = np.tile([1.0, 0.0], 12)
    w = np.exp(-0.5 * ((comp_z - 0.45) / 0.3) ** 2) * np.where(comp_red == 1, 0.4, 0.6)
    k = rng.choice(len(w), size=n, p=w / w.sum())
    z, red = comp_z[k] + rng.uniform(-0.05, 0.05, n), comp_red[k]
    mu = np.column_stack([
        0.35 + 0.45 * red + 1.1 * np.tanh(1.8 * z) * (0.6 + 0.4 * red),   # g-r (4000 A break)
        0.15 + 0.15 * red + 0.9 * np.clip(z - 0.35, 0, None),              # r-i
        0.05 + 0.10 * red + 0.7 * np.clip(z - 0.7, 0, None) + 0.1 * z,     # i-z
        0.6 + 0.5 * red + 0.8 * z - 0.3 * z**2,                           # z-W1
        -0.45 + 0.25 * z + 0.1 * (1 - red),                                # W1-W2
    ])
    scatter = np.array([0.08, 0.06, 0.06, 0.15, 0.12]) * np.where(red == 1, 0.7, 1.3)[:, None]
    # r: brighter at low z, exponential number counts cut at the depth
    r = np.clip(23.4 - rng.exponential(1.0 / (0.35 * np.log(10)), n), 17.5, 23.4)
    r = r - 1.5 * (0.5 - z).clip(0, None)
    noise = 0.03 * 10 ** (0.4 * (r - 21.0))
    colours = mu + rng.normal(size=mu.shape) * np.hypot(scatter, noise[:, None] * [1, 1.2, 1.5,
                                                                                    2, 3])
    return np.column_stack([colours, r]).astype(np.float32)


def load_features(n: int, data: str | None, seed: int) -> tuple[np.ndarray, str]:
    """``n`` rows of SOM features: from ``data``, else from the first
    ``runs/*/sky/random.parquet`` with at least ``0.9 n`` valid rows, else the stand-in."""
    import pandas as pd

    paths = [data] if data else sorted(glob.glob("runs/*/sky/random.parquet")
                                       + glob.glob("runs/*/random.parquet"))
    small = []
    for p in paths:
        if not os.path.exists(p):
            raise SystemExit(f"--data {p}: no such file")
        X, valid = som_features(pd.read_parquet(p), name=p)
        X = X[valid]
        if len(X) >= n:
            idx = np.random.default_rng(seed).choice(len(X), n, replace=False)
            return X[np.sort(idx)], f"{p} (som_features, {n} of {len(X)} valid rows)"
        if data or len(X) >= 0.9 * n:  # e.g. the default mock: 250,000 rows, ~198,000 south
            return X, f"{p} (som_features, all {len(X)} valid rows; asked for {n})"
        small.append(f"{p}: {len(X)}")
    note = f" ({'; '.join(small)} valid rows: too few)" if small else " (no random.parquet)"
    return gaussian_mixture_colours(n, seed), "Gaussian-mixture stand-in" + note


def gemm_flops(n: int = 2048, repeat: int = 5) -> float:
    """Measured float32 matmul throughput of this machine, FLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2.0 * n**3 * repeat / (time.perf_counter() - t)


def run_minisom(Xs: np.ndarray, init: np.ndarray, epochs: int, offline: bool) -> tuple[np.ndarray,
                                                                                        float]:
    from minisom import MiniSom

    ms = MiniSom(*SHAPE, Xs.shape[1], sigma=max(SHAPE) / 2, learning_rate=0.5,
                 neighborhood_function="gaussian", random_seed=0,
                 decay_function="linear_decay_to_zero",
                 sigma_decay_function="inverse_decay_to_one")
    ms._weights = init.reshape(*SHAPE, -1).copy()  # same initial prototypes as photozsom
    Xd = Xs.astype(np.float64)
    t = time.perf_counter()
    if offline:
        ms.train_batch_offline(Xd, epochs)
    else:
        ms.train_batch(Xd, epochs * len(Xd))
    return ms.get_weights().reshape(-1, Xs.shape[1]), time.perf_counter() - t


def run_torchsom(Xs: np.ndarray, init: np.ndarray, epochs: int, batch: int) -> tuple[np.ndarray,
                                                                                       float]:
    from torchsom import SOM as TorchSOM

    ts = TorchSOM(*SHAPE, Xs.shape[1], epochs=epochs, batch_size=batch, sigma=max(SHAPE) / 2,
                  learning_rate=0.5, lr_decay_function="lr_linear_decay_to_zero",
                  sigma_decay_function="sig_inverse_decay_to_one",
                  neighborhood_function="gaussian", device="cpu", random_seed=0,
                  search_backend="torch")
    ts.weights.data = torch.as_tensor(init.reshape(*SHAPE, -1), dtype=torch.float32).clone()
    X = torch.from_numpy(Xs)
    t = time.perf_counter()
    ts.fit(X, verbose=False)
    return ts.weights.data.reshape(-1, Xs.shape[1]).numpy().astype(np.float64), \
        time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="20,000 rows, 5 epochs")
    p.add_argument("--n", type=int, default=200_000, help="training rows")
    p.add_argument("--epochs", type=int, default=10, help="passes over the data, every SOM")
    p.add_argument("--data", default=None, help="random-sample parquet (DR10 columns)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--torchsom-batch", default="1024,4096",
                   help="comma-separated torchsom mini-batch sizes to time")
    p.add_argument("--predict-rows", type=int, default=4_000_000)
    p.add_argument("--offline", action="store_true", help="also time minisom train_batch_offline")
    p.add_argument("--skip-minisom", action="store_true")
    p.add_argument("--repeat", type=int, default=3,
                   help="photozsom fit and predict are timed this many times (best kept)")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.epochs, args.predict_rows = 20_000, 5, 1_000_000
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    X, source = load_features(args.n, args.data, seed=0)
    print(f"data: {source}; X {X.shape}; map {SHAPE[0]}x{SHAPE[1]}; {args.epochs} epochs; "
          f"{torch.get_num_threads()} torch threads; torch {torch.__version__}; {_load()}")
    Xs = Standardizer().fit(X, names=SOM_FEATURES).transform(X)

    # ---------------------------------------------------------------- photozsom torch
    times = []
    for _ in range(args.repeat):  # the same seeded fit each time: best of `repeat` runs
        ref = SOM(SHAPE, X.shape[1], feature_names=SOM_FEATURES, seed=0)
        t = time.perf_counter()
        ref.fit(X, epochs=args.epochs, progress=False)
        times.append(time.perf_counter() - t)
    t_pz = min(times)
    init = ref.initial_prototypes_  # the initial prototypes, shared with the peers below

    def evaluate(w: np.ndarray) -> tuple[float, float]:
        m = SOM.from_prototypes(w, SHAPE, ref.standardizer, feature_names=SOM_FEATURES)
        return m.quantization_error(X), m.topographic_error(X)

    qe_pz, te_pz = evaluate(ref.prototypes)
    print(f"\n{'training (' + str(args.epochs) + ' passes)':34s} {'time [s]':>9s} "
          f"{'x slower':>9s} {'QE':>8s} {'QE/pz':>7s} {'TE':>7s}")

    def row(name: str, dt: float, qe: float, te: float) -> None:
        print(f"{name:34s} {dt:9.2f} {dt / t_pz:9.1f} {qe:8.4f} {qe / qe_pz:7.3f} {te:7.4f}  "
              f"({_load()})", flush=True)

    row("photozsom torch (batch map)", t_pz, qe_pz, te_pz)
    print(f"  (photozsom fit times of {args.repeat} runs: "
          f"{', '.join(f'{x:.2f}' for x in times)} s; peers below are timed once)")

    # ---------------------------------------------------------------- peers
    if not args.skip_minisom:
        w, dt = run_minisom(Xs, init, args.epochs, offline=False)
        row("minisom train_batch (online)", dt, *evaluate(w))
        if args.offline:
            w, dt = run_minisom(Xs, init, args.epochs, offline=True)
            row("minisom train_batch_offline", dt, *evaluate(w))
    for batch in (int(b) for b in args.torchsom_batch.split(",") if b):
        w, dt = run_torchsom(Xs, init, args.epochs, batch)
        row(f"torchsom fit (batch {batch})", dt, *evaluate(w))

    # ---------------------------------------------------------------- predict throughput
    gemm = gemm_flops()
    Xp = np.resize(X, (args.predict_rows, X.shape[1]))  # raw features, repeated
    ref.predict(Xp[:100_000])  # warm-up
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        ref.predict_with_distances(Xp)
        times.append(time.perf_counter() - t)
    dt = min(times)
    rate = len(Xp) / dt
    flop = 2.0 * ref.n_cells * X.shape[1]  # per row, the distance matrix product
    print(f"\npredict_with_distances: {len(Xp):,} rows in {dt:.2f} s = {rate / 1e6:.2f} M rows/s; "
          f"extrapolated {N_SURVEY / 1e6:.0f}M rows: {N_SURVEY / rate:.1f} s (target < 60 s); "
          f"best of {args.repeat}: {', '.join(f'{x:.2f}' for x in times)} s")
    ms_som = ref.with_backend("minisom")  # minisom's own numpy float64 distances
    n_ms = min(len(Xp), 200_000)
    t = time.perf_counter()
    ms_som.predict(Xp[:n_ms])
    rate_ms = n_ms / (time.perf_counter() - t)
    print(f"minisom-backend predict (numpy _distance_from_weights, float64): {rate_ms / 1e6:.2f} M "
          f"rows/s; photozsom torch is {rate / rate_ms:.1f}x faster")
    print(f"machine float32 GEMM (2048^3 matmul, {torch.get_num_threads()} threads): "
          f"{gemm / 1e9:.1f} GFLOP/s; predict achieves {rate * flop / 1e9:.1f} GFLOP/s of "
          f"distance products = {rate * flop / gemm:.1%} of GEMM peak (K=D={X.shape[1]} is a "
          f"bandwidth/argmin-bound shape, not a GEMM-bound one); {_load()}")


def _load() -> str:
    """The machine's 1-minute load average: other processes slow multi-threaded torch."""
    return f"load average {os.getloadavg()[0]:.1f}"


if __name__ == "__main__":
    sys.exit(main())
