"""Benchmark: the closed-form CRPS against numerical integration, and MDN throughput.

Usage::

    python benchmarks/mdn.py            # batch 4096, 20,000 x 256 training set, 200,000 predictions
    python benchmarks/mdn.py --quick    # smaller everything (~1 min)

1. ``crps_mixture`` (torch, closed form) against the CRPS integrated numerically on a fine
   regular grid, ``int (F(z) - 1{z >= y})^2 dz`` by the trapezoid rule with the cell that holds
   ``y`` split at ``y`` (F at y linearly interpolated); the component CDFs on the grid are
   precomputed, so F on the grid is one matrix product, as the closed form precomputes its
   pair matrix. Both in torch float64 on the same random mixtures (Dirichlet weights over the
   200 components, redshifts uniform on [0, 1.6]). Prints the maximum difference and the speed
   ratio for a batch of 4096 (targets: < 1e-6 and >= 10x), plus the float32 closed form and its
   forward+backward time (the training step's cost).
2. MDN training throughput (galaxies / second / epoch) for D = 256 inputs, hidden (256, 256,
   256), batch 256, against the same network and optimiser trained on a mean-squared error of
   the mixture mean (the cost of the CRPS loss over the cheapest loss).
3. MDN inference throughput (``MDN.predict``: standardise, forward, softmax, MixturePDF) for
   D = 256, against the bare torch forward pass (target >= 100,000 galaxies / second).
4. MixturePDF summaries (mean, cdf, ppf, interval, crps, mode) on the predicted PDFs.

All timings on ``--threads`` CPU threads (default 2), best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
import torch

from photozsom.mdn import MDN, crps_mixture
from photozsom.pdf import default_grid


def best_time(fn, repeat: int) -> float:
    """Best of ``repeat`` single calls of ``fn``, seconds (:func:`timeit.repeat`)."""
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def numerical_crps(w: torch.Tensor, y: torch.Tensor, zg: torch.Tensor, Fk: torch.Tensor,
                   chunk: int = 256) -> torch.Tensor:
    """Trapezoid-rule CRPS on the grid ``zg`` (G,), component CDFs ``Fk`` (K, G) precomputed."""
    h = zg[1] - zg[0]
    out = torch.empty(w.shape[0], dtype=w.dtype)
    for s in range(0, w.shape[0], chunk):
        ws, ys = w[s:s + chunk], y[s:s + chunk]
        F = ws @ Fk                                       # (n, G)
        H = (zg[None, :] >= ys[:, None]).to(F.dtype)
        g = (F - H) ** 2
        total = h * (g.sum(dim=1) - 0.5 * (g[:, 0] + g[:, -1]))
        # split the cell [z_i, z_i+1] that holds y at y
        i = torch.clamp(torch.searchsorted(zg, ys, right=True) - 1, 0, zg.numel() - 2)
        r = torch.arange(len(ys))
        z0, z1 = zg[i], zg[i + 1]
        F0, F1 = F[r, i], F[r, i + 1]
        Fy = F0 + (F1 - F0) * (ys - z0) / h
        total -= 0.5 * h * (g[r, i] + g[r, i + 1])
        total += 0.5 * (ys - z0) * (F0**2 + Fy**2) + 0.5 * (z1 - ys) * ((1 - Fy) ** 2 + (1 - F1) ** 2)
        out[s:s + chunk] = total
    return out


def bench_crps(batch: int, repeat: int) -> None:
    g = default_grid()
    rng = np.random.default_rng(0)
    w64 = torch.tensor(rng.dirichlet(np.full(g.K, 0.05), size=batch))
    y64 = torch.tensor(rng.uniform(g.lo, g.hi, batch))
    crps_mixture(w64[:2], y64[:2])                       # build the cached constants
    t_closed = best_time(lambda: crps_mixture(w64, y64, validate=False), repeat)
    closed = crps_mixture(w64, y64)
    w32, y32 = w64.float(), y64.float()
    crps_mixture(w32[:2], y32[:2])
    t32 = best_time(lambda: crps_mixture(w32, y32, validate=False), repeat)

    def fwd_bwd():
        ww = w32.clone().requires_grad_()
        crps_mixture(ww, y32, validate=False).sum().backward()

    t32fb = best_time(fwd_bwd, repeat)
    print(f"\n== crps_mixture vs numerical integration (batch {batch}, float64) ==")
    print(f"closed form (torch float64)          {t_closed * 1e3:9.2f} ms")
    print(f"closed form (torch float32)          {t32 * 1e3:9.2f} ms   "
          f"max |diff| vs float64 {float((crps_mixture(w32, y32) - closed).abs().max()):.1e}")
    print(f"closed form float32 forward+backward {t32fb * 1e3:9.2f} ms")
    print(f"{'grid points':>12} {'spacing':>10} {'max |diff|':>11} {'time [ms]':>10} "
          f"{'closed form faster by':>22}")
    for n_grid in (4001, 16001, 32001):
        zg = torch.linspace(g.lo, g.hi, n_grid, dtype=torch.float64)
        Fk = torch.tensor(g.component_cdf(zg.numpy()[None, :].T).T.copy())   # (K, G)
        t_num = best_time(lambda zg=zg, Fk=Fk: numerical_crps(w64, y64, zg, Fk),
                           max(1, repeat // 2))
        diff = float((numerical_crps(w64, y64, zg, Fk) - closed).abs().max())
        print(f"{n_grid:12d} {1.6 / (n_grid - 1):10.1e} {diff:11.1e} {t_num * 1e3:10.1f} "
              f"{t_num / t_closed:21.0f}x")


def synthetic_embeddings(n: int, d: int, seed: int = 0):
    """Random embeddings whose redshift is a smooth function of a few directions + noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    z = 0.6 + 0.25 * np.tanh(X[:, 0]) + 0.1 * X[:, 1] * X[:, 2] / 2 + 0.03 * rng.normal(size=n)
    return X, np.clip(z, 0.0, 1.6)


def bench_training(n_train: int, d: int, epochs: int) -> None:
    X, z = synthetic_embeddings(n_train + n_train // 8, d)
    Xt, zt, Xv, zv = X[:n_train], z[:n_train], X[n_train:], z[n_train:]
    model = MDN(d, seed=0, max_epochs=epochs, patience=epochs + 1, device="cpu")
    hist = model.fit(Xt, zt, Xv, zv, progress=False)
    # history seconds include the validation pass; time the training passes on their own too
    per_epoch = float(hist["seconds"].iloc[1:].min() if len(hist) > 1 else hist["seconds"].min())

    net = MDN(d, seed=0, device="cpu").network          # the same network, MSE on the mean
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    centres = torch.tensor(default_grid().tmean, dtype=torch.float32)
    Xs = torch.tensor((Xt - Xt.mean(0)) / Xt.std(0))
    ys = torch.tensor(zt, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)

    def mse_epoch():
        order = torch.randperm(n_train, generator=gen)
        for s in range(0, n_train, 256):
            idx = order[s:s + 256]
            w = torch.softmax(net(Xs[idx]), dim=1)
            loss = ((w @ centres - ys[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    t_mse = best_time(mse_epoch, 2)
    print(f"\n== MDN training, D = {d}, hidden (256, 256, 256), batch 256, {n_train:,} galaxies ==")
    print(f"CRPS loss (incl. validation pass)  {per_epoch:7.2f} s/epoch  "
          f"{n_train / per_epoch:10,.0f} galaxies/s")
    print(f"MSE of the mean (same network)     {t_mse:7.2f} s/epoch  {n_train / t_mse:10,.0f} "
          f"galaxies/s   -> CRPS epoch costs {per_epoch / t_mse:.2f}x")
    print(f"best validation CRPS after {len(hist)} epochs: {hist['val_crps'].min():.4f}")
    return model


def bench_inference(model: MDN, n: int, d: int, repeat: int) -> None:
    X, _ = synthetic_embeddings(n, d, seed=1)
    model.predict(X[:1000])
    t_pred = best_time(lambda: model.predict(X), repeat)
    Xs = torch.tensor(model.standardizer.transform(X))
    net = model.network

    def bare():
        with torch.inference_mode():
            for s in range(0, n, 16384):
                net(Xs[s:s + 16384])

    t_bare = best_time(bare, repeat)
    print(f"\n== MDN inference, D = {d}, {n:,} galaxies (batch 16384) ==")
    print(f"MDN.predict -> MixturePDF   {t_pred:6.2f} s   {n / t_pred:10,.0f} galaxies/s "
          f"(target >= 100,000)")
    print(f"bare torch forward          {t_bare:6.2f} s   {n / t_bare:10,.0f} galaxies/s   "
          f"-> predict overhead {t_pred / t_bare:.2f}x")
    pdf = model.predict(X)
    z = np.clip(pdf.mean() + 0.01, 0, 1.6)
    print(f"\n== MixturePDF summaries, {n:,} galaxies (float64) ==")
    for name, fn in [("mean", pdf.mean), ("cdf(z)", lambda: pdf.cdf(z)),
                     ("ppf(0.5)", pdf.median), ("interval(0.99)", lambda: pdf.interval(0.99)),
                     ("crps(z)", lambda: pdf.crps(z)), ("mode", pdf.mode),
                     ("sample(10)", lambda: pdf.sample(10))]:
        t = best_time(fn, 1)
        print(f"{name:15s} {t:6.2f} s   {n / t:12,.0f} galaxies/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (~1 min)")
    ap.add_argument("--threads", type=int, default=2, help="torch / BLAS threads")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    batch = 4096
    n_train, epochs, n_pred = (4000, 2, 50_000) if args.quick else (20_000, 3, 200_000)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_crps(batch, args.repeat)
    model = bench_training(n_train, 256, epochs)
    bench_inference(model, n_pred, 256, args.repeat)


if __name__ == "__main__":
    main()
