"""Benchmark: photozsom's default SOM fit against minisom and torchsom, in one run.

Usage::

    python benchmarks/som.py                      # 100,000 rows of the default sky + an 8-feature mixture
    python benchmarks/som.py --n 500000 --sky-seed 1 --sky-scale 60000
    python benchmarks/som.py --quick              # 20,000 rows of the ci sky, no torchsom
    python benchmarks/som.py --samples desi,sky,gmm8  # the three samples of issue 24

Data (all on a 32x32 rectangular map):

- ``sky``: :func:`photozsom.features.som_features` of the southern (``PHOTSYS == "S"``)
  rows with every feature of the simulated random sample (``photozsom.sim.simulate``,
  ``--sky-scale`` / ``--sky-seed``, written once under ``--sky-dir`` and reused), or of
  ``--data PATH``; ``--n`` rows drawn at random (all of them if fewer);
- ``desi``: the colours of the shipped DESI EDR BGS sample
  (:func:`photozsom.data.desi_edr.load_bgs_north`, all 112,104 galaxies with
  :data:`photozsom.features.NORTH_SOM_FEATURES`: real photometry, five features);
- ``gmm8``: a non-galaxy check, ``--n`` rows of an 8-feature Gaussian mixture (12
  components, random means and anisotropic covariances; :func:`gaussian_mixture`).

Methods, each on the same standardised matrix:

- photozsom ``SOM((32, 32), D).fit(X)`` with its defaults (torch backend, ``epochs=None``);
  the time includes standardisation, PCA initialisation and recording the training
  distances; best of ``--repeat`` runs;
- minisom ``train(X, N, random_order=True)`` after ``pca_weights_init`` -- one random pass
  of online updates, how minisom is usually run, and the reference of the targets below;
- minisom ``train_batch(X, N)`` after ``pca_weights_init``: the same pass in data order;
- torchsom ``fit`` (``--torchsom-batch`` rows per mini-batch, ``--torchsom-epochs``) after
  its PCA initialisation; skipped with a note when torchsom does not import.

The peers use sigma 16 -> 1 (``inverse_decay_to_one``) and learning rate 0.5 -> 0 (linear),
minisom's Gaussian neighbourhood, as photozsom's minisom backend does. They run once.
Quantization error (QE: mean distance to the best prototype) and topographic error (TE:
fraction of rows whose two best cells are not neighbours) of every map are computed by
the same code (photozsom's, checked against minisom in the tests) on the training matrix.
The targets printed (issues 16 and 24): photozsom at least 20x faster than minisom ``train``,
with QE <= 1.00x and TE <= 2x minisom's, on every sample. A CPU shared with other processes slows vectorised code
more than minisom's per-sample loop, so every line prints the 1-minute load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from photozsom.features import Standardizer, som_features
from photozsom.som import SOM

SHAPE = (32, 32)
SPEED_TARGET, QE_TARGET, TE_TARGET = 20.0, 1.00, 2.0


def gaussian_mixture(n: int, seed: int = 0, d: int = 8, k: int = 12) -> np.ndarray:
    """``n`` rows of a ``d``-feature Gaussian mixture of ``k`` components, float32.

    Means drawn from N(0, 3^2) per feature, Dirichlet(2) weights, covariances ``A A^T``
    with ``A`` Gaussian and its columns scaled by U(0.2, 1).
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(k, d))
    w = rng.dirichlet(np.full(k, 2.0))
    comp = rng.choice(k, n, p=w)
    A = rng.normal(size=(k, d, d)) * rng.uniform(0.2, 1.0, size=(k, 1, d))
    X = means[comp] + np.einsum("nij,nj->ni", A[comp], rng.normal(size=(n, d)))
    return X.astype(np.float32)


def sky_features(args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """SOM features of the southern random-sample rows, ``--n`` of them drawn at random."""
    import pandas as pd

    if args.data:
        path = Path(args.data)
    else:
        from photozsom.sim import simulate

        scale = int(args.sky_scale) if str(args.sky_scale).isdigit() else args.sky_scale
        sky_dir = Path(args.sky_dir or Path(tempfile.gettempdir())
                       / f"photozsom-bench-sky-{args.sky_scale}-{args.sky_seed}")
        t = time.perf_counter()
        path = simulate(sky_dir, scale=scale, seed=args.sky_seed, progress=False)["random"]
        print(f"simulated sky: {sky_dir} (scale {args.sky_scale}, seed {args.sky_seed}; "
              f"{time.perf_counter() - t:.0f} s, reused when present)")
    df = pd.read_parquet(path)
    X, ok = som_features(df, name=str(path))
    X = X[ok & (df["PHOTSYS"] == "S").to_numpy()].astype(np.float32)
    total = len(X)
    if args.n < total:
        X = X[np.sort(np.random.default_rng(0).choice(total, args.n, replace=False))]
    return X, f"{path}: {len(X):,} of {total:,} southern rows with all SOM features"


def run_photozsom(X: np.ndarray, repeat: int) -> tuple[np.ndarray, float, str]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        som = SOM(SHAPE, X.shape[1], seed=0).fit(X, progress=False)
        times.append(time.perf_counter() - t)
    note = (f"{som.epochs_trained} full pass(es), {len(som.history)} steps; times "
            f"{', '.join(f'{x:.2f}' for x in times)} s")
    return som.prototypes, min(times), note


def _minisom(Xs: np.ndarray):
    from minisom import MiniSom

    ms = MiniSom(*SHAPE, Xs.shape[1], sigma=max(SHAPE) / 2, learning_rate=0.5,
                 neighborhood_function="gaussian", random_seed=0,
                 decay_function="linear_decay_to_zero",
                 sigma_decay_function="inverse_decay_to_one")
    ms.pca_weights_init(Xs)
    return ms


def run_minisom(Xs: np.ndarray, random_order: bool) -> tuple[np.ndarray, float, str]:
    Xd = Xs.astype(np.float64)
    ms = _minisom(Xd)
    t = time.perf_counter()
    if random_order:
        ms.train(Xd, len(Xd), random_order=True)
    else:
        ms.train_batch(Xd, len(Xd))
    dt = time.perf_counter() - t
    return ms.get_weights().reshape(-1, Xs.shape[1]), dt, "one pass, pca_weights_init"


def run_torchsom(Xs: np.ndarray, batch: int, epochs: int, device: str
                 ) -> tuple[np.ndarray, float, str]:
    from torchsom import SOM as TorchSOM

    ts = TorchSOM(*SHAPE, Xs.shape[1], epochs=epochs, batch_size=batch, sigma=max(SHAPE) / 2,
                  learning_rate=0.5, lr_decay_function="lr_linear_decay_to_zero",
                  sigma_decay_function="sig_inverse_decay_to_one",
                  neighborhood_function="gaussian", initialization_mode="pca", device=device,
                  random_seed=0, search_backend="torch")
    X = torch.from_numpy(Xs).to(device)
    ts.initialize_weights(X, mode="pca")
    t = time.perf_counter()
    ts.fit(X, verbose=False)
    dt = time.perf_counter() - t
    w = ts.weights.data.reshape(-1, Xs.shape[1]).cpu().numpy().astype(np.float64)
    return w, dt, f"batch {batch}, {epochs} epoch(s), PCA init"


def compare(name: str, X: np.ndarray, args: argparse.Namespace, device: str) -> list[str]:
    """Run every method on ``X``; print a table; return the target checks that failed."""
    std = Standardizer().fit(X)
    Xs = std.transform(X)

    def evaluate(w: np.ndarray) -> tuple[float, float]:
        m = SOM.from_prototypes(w, SHAPE, std)
        return m.quantization_error(X), m.topographic_error(X)

    print(f"\n== {name}: X {X.shape}, map {SHAPE[0]}x{SHAPE[1]}, device {device}, "
          f"{torch.get_num_threads()} torch threads ({_load()})")
    results = {}
    w, dt, note = run_photozsom(X, args.repeat)
    results["photozsom SOM.fit (defaults)"] = (dt, *evaluate(w), note, _load())
    w, dt, note = run_minisom(Xs, random_order=True)
    results["minisom train (random order)"] = (dt, *evaluate(w), note, _load())
    if not args.skip_train_batch:
        w, dt, note = run_minisom(Xs, random_order=False)
        results["minisom train_batch"] = (dt, *evaluate(w), note, _load())
    if args.torchsom_epochs > 0:
        try:
            import torchsom  # noqa: F401
        except Exception as err:  # noqa: BLE001 - any import failure means: skip it
            print(f"  torchsom skipped: it does not import ({type(err).__name__}: {err}); "
                  f"pip install torchsom")
        else:
            w, dt, note = run_torchsom(Xs, args.torchsom_batch, args.torchsom_epochs, device)
            results["torchsom fit"] = (dt, *evaluate(w), note, _load())
    t_ref, qe_ref, te_ref = results["minisom train (random order)"][:3]
    print(f"  {'method':31s} {'time [s]':>9s} {'speed-up':>9s} {'QE':>8s} {'QE/ref':>7s} "
          f"{'TE':>7s} {'TE/ref':>7s}   (ref = minisom train)")
    for label, (dt, qe, te, note, load) in results.items():
        print(f"  {label:31s} {dt:9.2f} {t_ref / dt:8.1f}x {qe:8.4f} {qe / qe_ref:7.3f} "
              f"{te:7.4f} {te / te_ref:7.2f}   {note}; {load}")
    dt, qe, te = results["photozsom SOM.fit (defaults)"][:3]
    checks = {f"speed-up >= {SPEED_TARGET:.0f}x": t_ref / dt >= SPEED_TARGET,
              f"QE <= {QE_TARGET}x": qe <= QE_TARGET * qe_ref,
              f"TE <= {TE_TARGET:.0f}x": te <= TE_TARGET * te_ref}
    print("  targets: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in checks.items()))
    return [f"{name}: {k}" for k, v in checks.items() if not v]


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="training rows per sample")
    p.add_argument("--data", default=None, help="random-sample Parquet with DR10 columns")
    p.add_argument("--sky-scale", default="default", help="simulate() scale of the sky sample")
    p.add_argument("--sky-seed", type=int, default=0)
    p.add_argument("--sky-dir", default=None, help="where the simulated sky is written/reused")
    p.add_argument("--samples", default="sky,desi,gmm8", help="comma-separated: sky, desi, gmm8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default=None, help="torch device of torchsom (default: CUDA if any)")
    p.add_argument("--repeat", type=int, default=3, help="photozsom fits timed (best kept)")
    p.add_argument("--skip-train-batch", action="store_true")
    p.add_argument("--torchsom-batch", type=int, default=4096)
    p.add_argument("--torchsom-epochs", type=int, default=1, help="0 skips torchsom")
    p.add_argument("--quick", action="store_true", help="20,000 rows of the ci sky, no torchsom")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.sky_scale, args.torchsom_epochs, args.repeat = 20_000, "ci", 0, 1
    torch.set_num_threads(args.threads)
    from photozsom.device import default_device

    device = default_device(args.device)
    print(f"photozsom SOM benchmark: torch {torch.__version__}, device {device} "
          f"(photozsom's SOM uses {SOM(SHAPE, 2).device}), {args.threads} threads, "
          f"{os.cpu_count()} CPUs, {_load()}")
    failed: list[str] = []
    for sample in [s.strip() for s in args.samples.split(",") if s.strip()]:
        if sample == "sky":
            X, source = sky_features(args)
            failed += compare(f"sky ({source})", X, args, device)
        elif sample == "desi":
            from photozsom.data.desi_edr import load_bgs_north
            from photozsom.features import NORTH_SOM_FEATURES, feature_matrix

            X, ok = feature_matrix(load_bgs_north(), NORTH_SOM_FEATURES)
            X = X[ok].astype(np.float32)
            failed += compare(f"desi (shipped DESI EDR BGS colours, {len(X):,} galaxies)", X,
                              args, device)
        elif sample == "gmm8":
            failed += compare("gmm8 (8-feature Gaussian mixture, seed 0)",
                              gaussian_mixture(args.n, seed=0), args, device)
        else:
            raise SystemExit(f"unknown sample {sample!r}: use sky, desi, gmm8")
    print("\nall targets met" if not failed else "\ntargets not met: " + "; ".join(failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
