"""Benchmark: MDN time to a converged CRPS (old vs new defaults), the closed-form CRPS, throughput.

Usage::

    python benchmarks/mdn.py                         # convergence, default sky (simulated once)
    python benchmarks/mdn.py --sky runs/default/sky  # an existing sky (and its run's embeddings)
    python benchmarks/mdn.py --sky runs/default/sky --embeddings runs/default/embed/embeddings.h5
    python benchmarks/mdn.py --micro                 # also the CRPS / throughput micro-benchmarks

1. **Time to a converged model** (the default run). On the default simulated sky (25,000
   spectroscopic galaxies, :func:`photozsom.sim.simulate` with ``scale="default"``,
   ``seed=0``; simulated into ``--workdir`` once), split 80/10/10 by ``OBJID``, two inputs:

   - ``catalog``: :func:`photozsom.features.catalog_features` (missing values take the
     training split's median);
   - ``embedding``: the image embeddings of a run (``--embeddings
     runs/default/embed/embeddings.h5``, written by the book's embeddings chapter; found
     automatically next to ``--sky runs/default/sky``), or, without one, a fixed random projection of the cutouts (central 32 x 32 pixels of the four bands,
     asinh-scaled by each band's sky noise, projected onto ``--emb-dim`` Gaussian directions,
     seed 0), which stands in for an image embedding of that width so the benchmark needs no
     trained encoder. Galaxies without an embedding take the training split's median.

   For each input an MDN is trained with the previous defaults (batch 256, lr 1e-3, learning
   rate halved on plateaus, patience 10 on any improvement, at most 100 epochs, float32) and
   with the current defaults (``MDN(n_inputs)``: the schedule of
   :func:`photozsom.mdn.auto_schedule` -- batch 1024, one-cycle to lr 0.01 over 24 epochs from
   ~50,000 training galaxies, smaller batches and more epochs below -- in float32, as the
   ``bf16`` column says: ``precision="bf16"`` is never a default), same seed, each ``--fits`` times (identical results;
   the fastest is timed). Printed per run: epochs, the wall time
   until the validation CRPS first comes within 1% of its final (best, kept) value, the total
   wall and CPU time of ``fit``, and the test CRPS of the kept model; then the ratios. The
   target: the current defaults reach the same test CRPS (within +1%) in at most half the
   wall time. CPU time is printed beside wall time because on a shared machine the wall time
   of the same work varies with the load.
2. ``--micro``: ``crps_mixture`` (torch, closed form) against the CRPS integrated numerically on
   fine grids (max difference and speed ratio, batch 4096), training throughput of the CRPS
   loss against an MSE loss on the same network, inference throughput of ``MDN.predict``
   against the bare forward pass, and the :class:`~photozsom.pdf.MixturePDF` summaries.

Prints the device (``--device``, default CUDA when present, with bfloat16 autocast there).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from photozsom.device import default_device
from photozsom.mdn import MDN, crps_mixture, train_val_test_split
from photozsom.pdf import default_grid

#: The defaults before the time-to-convergence change, for the comparison.
OLD_DEFAULTS = {"lr": 1e-3, "batch_size": 256, "max_epochs": 100, "patience": 10,
                "schedule": "plateau", "min_improvement": 0.0}


def best_time(fn, repeat: int) -> float:
    """Best of ``repeat`` single calls of ``fn``, seconds (:func:`timeit.repeat`)."""
    return min(timeit.repeat(fn, number=1, repeat=repeat))


# ---------------------------------------------------------------------------------------------
# 1. time to a converged model
# ---------------------------------------------------------------------------------------------
def load_sky(sky: Path | None, workdir: Path) -> Path:
    """The default sky's directory, simulated into ``workdir`` when not given."""
    if sky is not None:
        if not (sky / "spec.parquet").exists():
            raise SystemExit(f"{sky} has no spec.parquet; pass a simulated sky directory")
        return sky
    from photozsom.sim import simulate

    out = workdir / "sky_default_seed0"
    t0 = time.perf_counter()
    simulate(out, scale="default", seed=0)
    print(f"default sky in {out} ({time.perf_counter() - t0:.0f} s to simulate or find)")
    return out


def catalog_inputs(spec: pd.DataFrame, train: np.ndarray) -> np.ndarray:
    """Catalogue features with missing values set to the training split's median."""
    from photozsom.features import catalog_features

    X, _ = catalog_features(spec)
    med = np.nanmedian(X[train], axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    return np.where(np.isfinite(X), X, med).astype(np.float32)


def run_embeddings(path: Path, objid: np.ndarray, train: np.ndarray) -> np.ndarray:
    """A run's image embeddings in ``objid`` order; missing rows take the training median."""
    from photozsom.embed import load_embeddings

    emb, ids = load_embeddings(path)
    pos = pd.Index(ids).get_indexer(objid)
    X = np.full((len(objid), emb.shape[1]), np.nan, dtype=np.float32)
    X[pos >= 0] = emb[pos[pos >= 0]]
    med = np.nanmedian(X[train], axis=0)
    return np.where(np.isfinite(X), X, med).astype(np.float32)


def projected_cutouts(sky: Path, objid: np.ndarray, dim: int, cache: Path) -> np.ndarray:
    """Fixed random projection (seed 0) of each galaxy's asinh-scaled central 32x32 cutout."""
    stamp = (sky / "cutouts.h5").stat().st_mtime_ns
    if cache.exists():
        with np.load(cache, allow_pickle=False) as f:
            if (f["objid"].shape == objid.shape and np.array_equal(f["objid"], objid)
                    and "stamp" in f and int(f["stamp"]) == stamp):
                return f["X"]
    from photozsom.embed.store import CutoutStore

    crop = 32
    rng = np.random.default_rng(0)
    P = None
    out = np.empty((len(objid), dim), dtype=np.float32)
    with CutoutStore(sky / "cutouts.h5") as store:
        rows = store.rows_of(objid)
        for s in range(0, len(rows), 2048):
            r = rows[s:s + 2048]
            order = np.argsort(r)
            imgs, mask, _ = store.read(r[order])
            sig = store.sigma(r[order])
            back = np.empty_like(order)
            back[order] = np.arange(len(order))
            imgs, mask, sig = imgs[back], mask[back], sig[back]
            h = imgs.shape[-1]
            o = (h - crop) // 2
            x = imgs[:, :, o:o + crop, o:o + crop].astype(np.float64)
            x = np.arcsinh(x / (3.0 * np.maximum(sig, 1e-12))[:, :, None, None])
            x = np.where(mask[:, :, None, None], x, 0.0).reshape(len(r), -1)
            if P is None:
                P = rng.normal(size=(x.shape[1], dim)) / np.sqrt(x.shape[1])
            out[s:s + len(r)] = x @ P
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, X=out, objid=objid, stamp=stamp)
    return out


def time_to_converge(X: np.ndarray, z: np.ndarray, parts, kwargs: dict, device: str,
                     fits: int) -> dict:
    """Train ``fits`` identical models (same seed, same result); time the fastest."""
    tr, va, te = parts
    best = None
    for _ in range(fits):
        model = MDN(X.shape[1], seed=0, device=device, **kwargs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        hist = model.fit(X[tr], z[tr], X[va], z[va], progress=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or wall < best[0]:
            best = (wall, cpu, model, hist)
    wall, cpu, model, hist = best
    val = hist["val_crps"].to_numpy()
    final = float(np.nanmin(val))
    first = int(np.argmax(val <= 1.01 * final))
    # the history's per-epoch seconds cover training and validation passes; scale them to
    # the measured wall time (set-up outside the loop is spread over the epochs)
    cum = hist["seconds"].cumsum().to_numpy()
    t_conv = cum[first] * wall / cum[-1]
    test = float(model.predict(X[te]).crps(z[te]).mean())
    return {"epochs": len(hist), "best_epoch": model.best_epoch_, "t_1pct": t_conv,
            "wall": wall, "cpu": cpu, "val": final, "test": test,
            "batch": model.batch_size_, "lr": model.lr_, "schedule": model.schedule,
            "amp": model.amp}


def bench_convergence(args) -> bool:
    workdir = Path(args.workdir)
    sky = load_sky(Path(args.sky) if args.sky else None, workdir)
    spec = pd.read_parquet(sky / "spec.parquet")
    z = spec["Z"].to_numpy(np.float64)
    objid = spec["OBJID"].to_numpy()
    parts = train_val_test_split(objid, seed=0)
    print(f"{len(spec):,} spectroscopic galaxies: train {len(parts[0]):,}, validation "
          f"{len(parts[1]):,}, test {len(parts[2]):,}")
    inputs = {}
    if "catalog" in args.inputs:
        inputs["catalog"] = catalog_inputs(spec, parts[0])
    if "embedding" in args.inputs:
        t0 = time.perf_counter()
        emb_file = Path(args.embeddings) if args.embeddings else sky.parent / "embed" / "embeddings.h5"
        if args.embeddings or emb_file.exists():
            args.embeddings = str(emb_file)
            inputs["embedding"] = run_embeddings(Path(args.embeddings), objid, parts[0])
            print(f"embedding: {args.embeddings} ({inputs['embedding'].shape[1]} dimensions)")
        else:
            inputs["embedding"] = projected_cutouts(
                sky, objid, args.emb_dim, workdir / f"projected_cutouts_{args.emb_dim}.npz")
            print(f"embedding: random projection of the cutouts to {args.emb_dim} dimensions "
                  f"({time.perf_counter() - t0:.0f} s)")
    ok = True
    rows = []
    for name, X in inputs.items():
        print(f"\n== {name}: {X.shape[1]} inputs ==")
        print(f"{'defaults':9s} {'batch':>5s} {'lr':>7s} {'schedule':>9s} {'bf16':>4s} {'epochs':>6s} "
              f"{'t(1%) [s]':>9s} {'wall [s]':>8s} {'cpu [s]':>8s} {'val CRPS':>9s} "
              f"{'test CRPS':>9s}")
        res = {}
        for label, kw in (("previous", OLD_DEFAULTS), ("current", {})):
            r = time_to_converge(X, z, parts, kw, args.device, args.fits)
            res[label] = r
            print(f"{label:9s} {r['batch']:5d} {r['lr']:7.1e} {r['schedule']:>9s} "
                  f"{'yes' if r['amp'] else 'no':>4s} "
                  f"{r['epochs']:6d} {r['t_1pct']:9.1f} {r['wall']:8.1f} {r['cpu']:8.1f} "
                  f"{r['val']:9.5f} {r['test']:9.5f}", flush=True)
        o, n = res["previous"], res["current"]
        speed, cpu_speed = o["wall"] / n["wall"], o["cpu"] / n["cpu"]
        crps_ratio = n["test"] / o["test"]
        passed = speed >= 2.0 and crps_ratio <= 1.01
        ok &= passed
        print(f"-> current defaults: {speed:.2f}x faster in wall time ({cpu_speed:.2f}x in CPU "
              f"time; to within 1% of the final validation CRPS {o['t_1pct'] / n['t_1pct']:.2f}x), "
              f"test CRPS ratio {crps_ratio:.4f} (target: >= 2x and <= 1.01): "
              f"{'met' if passed else 'NOT met'}")
        rows.append({"inputs": name, **{f"previous_{k}": v for k, v in o.items()},
                     **{f"current_{k}": v for k, v in n.items()}})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return ok


# ---------------------------------------------------------------------------------------------
# 2. micro-benchmarks
# ---------------------------------------------------------------------------------------------
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
    print(f"closed form (torch float32)          {t32 * 1e3:9.2f} ms   max |diff| vs float64 "
          f"{float((crps_mixture(w32, y32, validate=False) - closed).abs().max()):.1e}")
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


def bench_training(n_train: int, d: int, epochs: int, device: str) -> MDN:
    X, z = synthetic_embeddings(n_train + n_train // 8, d)
    Xt, zt, Xv, zv = X[:n_train], z[:n_train], X[n_train:], z[n_train:]
    model = MDN(d, seed=0, max_epochs=epochs, patience=epochs + 1, device=device)
    hist = model.fit(Xt, zt, Xv, zv, progress=False)
    bs = model.batch_size_
    # history seconds include the validation pass
    per_epoch = float(hist["seconds"].iloc[1:].min() if len(hist) > 1 else hist["seconds"].min())

    net = MDN(d, seed=0, device=device).network         # the same network, MSE on the mean
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    centres = torch.tensor(default_grid().tmean, dtype=torch.float32, device=device)
    Xs = torch.tensor((Xt - Xt.mean(0)) / Xt.std(0), device=device)
    ys = torch.tensor(zt, dtype=torch.float32, device=device)
    gen = torch.Generator().manual_seed(0)

    def mse_epoch():
        order = torch.randperm(n_train, generator=gen).to(device)
        for s in range(0, n_train, bs):
            idx = order[s:s + bs]
            w = torch.softmax(net(Xs[idx]), dim=1)
            loss = ((w @ centres - ys[idx]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    t_mse = best_time(mse_epoch, 2)
    print(f"\n== MDN training, D = {d}, hidden (256, 256, 256), batch {bs}, "
          f"{n_train:,} galaxies ==")
    print(f"CRPS loss (incl. validation pass)  {per_epoch:7.2f} s/epoch  "
          f"{n_train / per_epoch:10,.0f} galaxies/s")
    print(f"MSE of the mean (same network)     {t_mse:7.2f} s/epoch  {n_train / t_mse:10,.0f} "
          f"galaxies/s   -> CRPS epoch costs {per_epoch / t_mse:.2f}x")
    return model


def bench_inference(model: MDN, n: int, d: int, repeat: int) -> None:
    X, _ = synthetic_embeddings(n, d, seed=1)
    model.predict(X[:1000])
    t_pred = best_time(lambda: model.predict(X), repeat)
    Xs = torch.tensor(model.standardizer.transform(X), device=model.device)
    net = model.network

    def bare():
        with torch.inference_mode():
            for s in range(0, n, 16384):
                net(Xs[s:s + 16384]).cpu()

    t_bare = best_time(bare, repeat)
    print(f"\n== MDN inference, D = {d}, {n:,} galaxies (batch 16384) ==")
    print(f"MDN.predict -> MixturePDF   {t_pred:6.2f} s   {n / t_pred:10,.0f} galaxies/s")
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
    ap.add_argument("--sky", help="a simulated sky directory (default: simulate the default sky "
                                  "into --workdir once)")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "photozsom-bench-mdn"),
                    help="where the simulated sky and the projected cutouts are kept")
    ap.add_argument("--inputs", nargs="+", default=["catalog", "embedding"],
                    choices=["catalog", "embedding"])
    ap.add_argument("--embeddings", help="a run's embed/embeddings.h5 (default: the one next to "
                                         "--sky if the run has it, else a random projection "
                                         "of the cutouts)")
    ap.add_argument("--emb-dim", type=int, default=128, help="width of the projected embedding")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--micro", action="store_true", help="also run the micro-benchmarks")
    ap.add_argument("--json", help="write the convergence results to this JSON file")
    ap.add_argument("--fits", type=int, default=2,
                    help="identical fits per configuration; the fastest is reported")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.device = default_device(args.device)
    gpu = f" ({torch.cuda.get_device_name(args.device)}, bfloat16 autocast)" \
        if args.device.startswith("cuda") else ""
    print(f"torch {torch.__version__}, device {args.device}{gpu}, "
          f"{torch.get_num_threads()} CPU threads")
    ok = bench_convergence(args)
    if args.micro:
        bench_crps(4096, args.repeat)
        model = bench_training(20_000, 256, 3, args.device)
        bench_inference(model, 200_000, 256, args.repeat)
    print("\nall targets met" if ok else "\nsome targets NOT met")


if __name__ == "__main__":
    main()
