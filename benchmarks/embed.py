"""Benchmark: do the built-in Encoder's embeddings carry redshift, and how fast is it?

Usage::

    python benchmarks/embed.py                          # default mock in runs/default/sky
    python benchmarks/embed.py --scale ci --data-dir runs/ci/sky
    python benchmarks/embed.py --quick                  # ci scale, 2 epochs, small MDNs
    python benchmarks/embed.py --encoder runs/encoder   # reuse a pretrained encoder (a directory)

The mock sky (``photozsom.sim.simulate(data_dir, scale)``) is generated when
``--data-dir`` lacks it. The spectroscopic sample is split 80/10/10 by a seeded hash of
OBJID (:func:`photozsom.mdn.train_val_test_split`).

1. **Pretraining.** :class:`photozsom.embed.Encoder` (``--dim``, default 64) is pretrained
   self-supervised on every cutout of the store except the spectroscopic test galaxies
   (``--pretrain all``; ``--pretrain random`` uses only the random-sample cutouts, as the
   book does), ``--epochs`` passes, on ``--threads`` CPU threads. Wall time is printed
   (target: under 10 minutes at the default scale, ~30,000 64-pixel cutouts, 2 cores).
2. **Throughput.** ``Encoder.embed`` cutouts/second on the same threads (HDF5 reading not
   included), over all spectroscopic cutouts, and the cost of the bad-pixel bookkeeping
   :func:`photozsom.embed.usable_bands` that ``embed_to_file`` adds per chunk, as a ratio
   to the embedding time.
3. **Redshift information.** The same :class:`photozsom.mdn.MDN` (paper architecture, CRPS,
   early stopping on the validation split) is trained on

   - the Encoder embedding (D = dim);
   - a PCA of the raw pixels (nanomaggies, absent bands 0) with the same D, fitted on
     training galaxies (the issue's peer);
   - a PCA of the asinh-stretched pixels (the Encoder's own input) with the same D — a
     stronger linear peer;
   - the catalogue features of :func:`photozsom.features.catalog_features` (8 numbers from
     the Tractor photometry and shapes);
   - embedding + catalogue features;

   and the random-forest baseline (:class:`photozsom.baseline.RandomForestPhotoZ`) on the
   catalogue features. MAD, eta (|dz|/(1+z) > 0.15), PCO (truth outside the central 99%)
   and mean CRPS on the test split, all on the same galaxies (those with finite catalogue
   features), and ratios of MAD against the pixel PCA and against the random forest.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from photozsom.baseline import RandomForestPhotoZ
from photozsom.embed import Encoder, usable_bands
from photozsom.embed.store import CutoutStore
from photozsom.evaluation import metrics
from photozsom.features import catalog_features
from photozsom.mdn import MDN, train_val_test_split


def ensure_data(data_dir: Path, scale: str, seed: int) -> None:
    if (data_dir / "spec.parquet").exists() and (data_dir / "cutouts.h5").exists():
        return
    from photozsom.sim import simulate

    print(f"simulating the {scale!r} mock sky into {data_dir} ...", flush=True)
    t0 = time.perf_counter()
    simulate(data_dir, scale=scale, seed=seed)
    print(f"  done in {time.perf_counter() - t0:.0f} s")


def read_rows(store: CutoutStore, rows: np.ndarray, chunk: int = 4096):
    """Yield (positions, images, band_mask) for store rows (any order) in sorted chunks."""
    order = np.argsort(rows)
    for lo in range(0, len(rows), chunk):
        pos = order[lo : lo + chunk]
        imgs, mask, _ = store.read(rows[pos])
        yield pos, imgs, mask


def pixel_pca(
    store: CutoutStore,
    rows: np.ndarray,
    fit_pos: np.ndarray,
    dim: int,
    softening: np.ndarray | None,
    seed: int,
    n_fit: int,
) -> np.ndarray:
    """PCA (dim components) of raw or asinh-stretched pixels, fitted on ``fit_pos`` rows."""
    from sklearn.decomposition import PCA

    def flat(imgs, mask):
        x = np.where(mask[:, :, None, None], np.nan_to_num(imgs), 0.0).astype(np.float32)
        if softening is not None:
            x = np.arcsinh(x / softening[None, :, None, None])
        return x.reshape(len(x), -1)

    rng = np.random.default_rng(seed)
    fit_pos = np.sort(rng.choice(fit_pos, size=min(n_fit, len(fit_pos)), replace=False))
    imgs, mask, _ = store.read(rows[fit_pos])
    pca = PCA(n_components=dim, svd_solver="randomized", random_state=seed).fit(flat(imgs, mask))
    out = np.empty((len(rows), dim), np.float32)
    for pos, imgs, mask in read_rows(store, rows):
        out[pos] = pca.transform(flat(imgs, mask))
    return out


def evaluate(name: str, X: np.ndarray, z: np.ndarray, split, seed: int, mdn_kwargs: dict) -> dict:
    tr, va, te = split
    t0 = time.perf_counter()
    if name == "random forest (catalogue)":
        model = RandomForestPhotoZ(seed=seed, n_jobs=mdn_kwargs.get("n_jobs")).fit(X[tr], z[tr])
    else:
        model = MDN(
            n_inputs=X.shape[1],
            seed=seed,
            max_epochs=mdn_kwargs["max_epochs"],
            patience=mdn_kwargs["patience"],
        )
        model.fit(X[tr], z[tr], X[va], z[va], progress=False)
    pdf = model.predict(X[te])
    zp = pdf.mean()
    pm = metrics.point_metrics(z[te], zp)
    return {
        "features": name,
        "D": X.shape[1],
        "MAD": pm["mad"],
        "eta": pm["eta"],
        "PCO": metrics.pco_fraction(pdf.pit(z[te]), 0.99),
        "CRPS": float(np.mean(pdf.crps(z[te]))),
        "fit_s": time.perf_counter() - t0,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data-dir", type=Path, default=None, help="mock sky directory (default runs/<scale>/sky)"
    )
    ap.add_argument("--scale", default="default", help="mock scale to simulate if missing")
    ap.add_argument(
        "--epochs", type=int, default=None, help="pretraining epochs (default 10; 2 with --quick)"
    )
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretrain", choices=("all", "random"), default="all")
    ap.add_argument(
        "--encoder", type=Path, default=None, help="load this pretrained encoder instead"
    )
    ap.add_argument(
        "--save-encoder", type=Path, default=None, help="save the encoder (a directory)"
    )
    ap.add_argument("--quick", action="store_true", help="ci scale, 2 epochs, short MDN training")
    args = ap.parse_args(argv)

    if args.quick and args.scale == "default":
        args.scale = "ci"
    data_dir = args.data_dir or Path("runs") / args.scale / "sky"
    epochs = args.epochs or (2 if args.quick else 10)
    mdn_kwargs = {
        "max_epochs": 30 if args.quick else 100,
        "patience": 5 if args.quick else 10,
        "n_jobs": args.threads,
    }
    torch.set_num_threads(args.threads)
    ensure_data(data_dir, args.scale, args.seed)

    spec = pd.read_parquet(data_dir / "spec.parquet")
    store = CutoutStore(data_dir / "cutouts.h5")
    has = np.isin(spec["OBJID"].to_numpy(), store.objid)
    if not has.all():
        print(f"note: {int((~has).sum())} spectroscopic galaxies have no cutout and are left out")
    spec = spec[has].reset_index(drop=True)
    z = spec["Z"].to_numpy(np.float64)
    ids = spec["OBJID"].to_numpy()
    rows = store.rows_of(ids)
    tr, va, te = train_val_test_split(ids, seed=args.seed)
    print(
        f"data: {data_dir} ({len(store):,} cutouts of {store.size} px; {len(spec):,} spectroscopic "
        f"galaxies, train/val/test {len(tr):,}/{len(va):,}/{len(te):,}); {args.threads} CPU threads"
    )

    # 1. pretraining ---------------------------------------------------------------------
    if args.encoder is not None:
        enc = Encoder.load(args.encoder)
        print(f"encoder: loaded {args.encoder} ({enc.history['steps']} steps)")
    else:
        if args.pretrain == "all":
            pretrain = np.setdiff1d(store.objid, ids[te])
        else:
            random = pd.read_parquet(data_dir / "random.parquet", columns=["OBJID"])
            pretrain = np.intersect1d(random["OBJID"].to_numpy(), store.objid)
        enc = Encoder(dim=args.dim, seed=args.seed)
        t0 = time.perf_counter()
        hist = enc.fit(store, epochs=epochs, objid=pretrain, progress=sys.stderr.isatty())
        t_pre = time.perf_counter() - t0
        print(
            f"pretraining: {len(pretrain):,} unlabelled cutouts x {epochs} epochs in {t_pre:.0f} s "
            f"({t_pre / 60:.1f} min; {np.mean(hist['epoch_time_s']):.0f} s/epoch; "
            f"{len(pretrain) * epochs / t_pre:.0f} cutouts/s); target < 600 s at the default scale"
        )
        print(f"  loss per epoch: {np.round(hist['loss'], 3).tolist()}")
        if args.save_encoder:
            enc.save(args.save_encoder)

    # 2. embedding throughput ----------------------------------------------------------------
    emb = np.empty((len(ids), enc.dim), np.float32)
    t_emb = t_bad = 0.0
    for pos, imgs, mask in read_rows(store, rows):
        t0 = time.perf_counter()
        usable_bands(imgs, mask, enc.input_size, warn=False)
        t_bad += time.perf_counter() - t0
        t0 = time.perf_counter()
        emb[pos] = enc.embed(imgs, mask, progress=False)
        t_emb += time.perf_counter() - t0
    print(
        f"Encoder.embed: {len(ids) / t_emb:,.0f} cutouts/s on {enc.device} "
        f"({args.threads} CPU threads; {len(ids):,} cutouts, HDF5 reading excluded); "
        f"bad-pixel bookkeeping {t_bad:.2f} s = {t_bad / t_emb:.3f} x the embedding time"
    )

    # 3. redshift information ----------------------------------------------------------------
    cat, valid = catalog_features(spec)
    keep = valid & np.isfinite(emb).all(axis=1)
    split = tuple(s[keep[s]] for s in (tr, va, te))
    print(
        f"MDN comparison on {int(keep[te].sum()):,} test galaxies with finite catalogue features "
        f"({int((~valid).sum())} galaxies without are left out of every model)"
    )
    t0 = time.perf_counter()
    pca_raw = pixel_pca(store, rows, tr, enc.dim, None, args.seed, n_fit=8000)
    pca_asinh = pixel_pca(store, rows, tr, enc.dim, enc.softening, args.seed, n_fit=8000)
    print(f"  pixel PCAs in {time.perf_counter() - t0:.0f} s")
    sets = {
        "Encoder embedding": emb,
        "PCA of raw pixels": pca_raw,
        "PCA of asinh pixels": pca_asinh,
        "catalogue features": cat,
        "embedding + catalogue": np.concatenate([emb, cat], axis=1),
        "random forest (catalogue)": cat,
    }
    results = []
    for name, X in sets.items():
        X = np.where(np.isfinite(X), X, 0.0).astype(np.float32)
        results.append(evaluate(name, X, z, split, args.seed, mdn_kwargs))
        r = results[-1]
        print(
            f"  {name:28s} D={r['D']:3d}  MAD {r['MAD']:.4f}  eta {100 * r['eta']:5.2f}%  "
            f"PCO {100 * r['PCO']:5.2f}%  CRPS {r['CRPS']:.4f}  ({r['fit_s']:.0f} s)",
            flush=True,
        )
    table = pd.DataFrame(results).set_index("features")
    base_pca = table.loc["PCA of raw pixels", "MAD"]
    base_rf = table.loc["random forest (catalogue)", "MAD"]
    table["MAD / PCA raw"] = table["MAD"] / base_pca
    table["MAD / RF"] = table["MAD"] / base_rf
    with pd.option_context(
        "display.width", 200, "display.max_columns", None, "display.float_format", "{:.4f}".format
    ):
        print(table.drop(columns="fit_s"))
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
