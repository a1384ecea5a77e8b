"""The embedder protocol, input validation, and on-disk embedding files keyed by OBJID.

Every image embedder in photozsom (:class:`photozsom.embed.Encoder`, the built-in
self-supervised CNN, and :class:`photozsom.embed.AIONEmbedder`, the AION-1 foundation
model) turns g, r, i, z cutouts into one vector per object::

    emb = embedder.embed(cutouts, band_mask)      # float32 [N, embedder.dim]

Cutouts follow the :class:`~photozsom.datasets.store.CutoutStore` convention: float32
``[N, 4, H, W]`` surface brightness in nanomaggies per pixel, bands in the order g, r, i, z,
and a boolean ``band_mask [N, 4]`` that is True where the band has imaging. A band the mask
marks absent (the i-band of a DR10-north object) may hold anything, NaN included; a band
marked present must be finite.

:func:`embed_to_file` streams a whole cutout store through an embedder into an HDF5 file
(``/embedding [N, D]`` float32, ``/OBJID [N]`` int64) chunk by chunk and resumes where it
stopped after an interruption; :func:`load_embeddings` reads it back joined on OBJID, so the
MDN, the SOM and the flags never depend on row order.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Embedder",
    "embed_to_file",
    "embedder_identity",
    "load_embeddings",
    "validate_cutouts",
]

#: Band names of the cutouts' second axis.
BANDS: tuple[str, ...] = ("g", "r", "i", "z")


@runtime_checkable
class Embedder(Protocol):
    """What every photozsom image embedder provides.

    Attributes
    ----------
    dim : int
        Length ``D`` of the embedding vector.
    device : str
        Torch device the embedder computes on ("cpu", "cuda", ...).
    """

    dim: int
    device: str

    def embed(
        self,
        cutouts: np.ndarray,
        band_mask: np.ndarray,
        *,
        batch_size: int = ...,
        progress: bool = True,
    ) -> np.ndarray:
        """Embed cutouts ``[N, 4, H, W]`` (nanomaggies/pixel) with ``band_mask [N, 4]``.

        Returns
        -------
        ndarray, shape (N, dim), float32
        """
        ...


def validate_cutouts(
    cutouts: np.ndarray, band_mask: np.ndarray, *, min_size: int = 1, name: str = "cutouts"
) -> tuple[np.ndarray, np.ndarray]:
    """Check cutouts and band mask against the store convention.

    Parameters
    ----------
    cutouts : array_like, shape (N, 4, H, W)
        Surface brightness, nanomaggies per pixel, bands g, r, i, z.
    band_mask : array_like, shape (N, 4), bool
        True where the band has imaging.
    min_size : int
        Smallest accepted ``H`` and ``W``, pixels.
    name : str
        Name used in error messages.

    Returns
    -------
    cutouts : ndarray, float32, shape (N, 4, H, W)
        The input as float32 (not copied when it already is).
    band_mask : ndarray, bool, shape (N, 4)

    Raises
    ------
    ValueError
        Wrong shapes, cutouts smaller than ``min_size``, an object with no band present, or
        a non-finite pixel in a band the mask marks present.
    """
    cutouts = np.asarray(cutouts)
    if cutouts.ndim != 4 or cutouts.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape (N, 4, H, W) with bands g, r, i, z on axis 1, got "
            f"{cutouts.shape}; stack the bands as images[:, [g, r, i, z]] and fill a missing "
            "band with NaN and band_mask False"
        )
    if not np.issubdtype(cutouts.dtype, np.floating):
        raise ValueError(f"{name} must be floating point (nanomaggies/pixel), got {cutouts.dtype}")
    cutouts = cutouts.astype(np.float32, copy=False)
    n, _, h, w = cutouts.shape
    if h < min_size or w < min_size:
        raise ValueError(
            f"{name} are {h}x{w} pixels; this embedder needs at least {min_size}x{min_size} "
            "(request larger cutouts from the cutout service)"
        )
    band_mask = np.asarray(band_mask)
    if band_mask.shape != (n, 4):
        raise ValueError(
            f"band_mask must have shape ({n}, 4) to match {name}, got {band_mask.shape}"
        )
    if band_mask.dtype != bool:
        if not np.isin(band_mask, (0, 1)).all():
            raise ValueError("band_mask must be boolean (True where the band has imaging)")
        band_mask = band_mask.astype(bool)
    empty = ~band_mask.any(axis=1)
    if empty.any():
        rows = np.flatnonzero(empty)
        raise ValueError(
            f"{len(rows)} object(s) have no band marked present in band_mask (rows "
            f"{rows[:5].tolist()}); drop them or fix the mask"
        )
    if n:
        # Non-finite pixels in a present band: reduce over pixels first (one pass, no copy).
        bad_band = ~np.isfinite(cutouts).all(axis=(2, 3)) & band_mask
        if bad_band.any():
            rows, bands = np.nonzero(bad_band)
            ex = ", ".join(f"row {r} band {BANDS[b]}" for r, b in zip(rows[:5], bands[:5]))
            raise ValueError(
                f"{name}: {len(rows)} band(s) marked present in band_mask hold NaN/inf pixels "
                f"({ex}); replace bad pixels (e.g. with 0, the sky level) or set band_mask "
                "False for that band"
            )
    return cutouts, band_mask


def embedder_identity(embedder) -> str:
    """A string identifying an embedder and its weights, stored with embedding files."""
    ident = getattr(embedder, "identity", None)
    if callable(ident):
        ident = ident()
    if ident is None:
        ident = f"{type(embedder).__name__}(dim={getattr(embedder, 'dim', '?')})"
    return str(ident)


def _objid_hash(objid: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(objid, dtype=np.int64).tobytes()).hexdigest()


def embed_to_file(
    embedder: Embedder,
    store_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    chunk: int = 4096,
    batch_size: int = 256,
    progress: bool = True,
    overwrite: bool = False,
    catalog=None,
) -> Path:
    """Embed every cutout of a store into an HDF5 file, in chunks, resuming if interrupted.

    The output holds ``/embedding`` (float32 ``[N, D]``) and ``/OBJID`` (int64 ``[N]``) in
    store order, plus attributes ``n_done`` (rows committed), ``n_total``, ``complete``,
    ``embedder`` (:func:`embedder_identity`) and ``objid_sha1`` (of the store's OBJIDs).
    Rows are committed one chunk at a time: both datasets are written and flushed before
    ``n_done`` advances, so a run stopped by an exception or Ctrl-C restarts at the first
    uncommitted row; rows past ``n_done`` are discarded and recomputed, never duplicated.
    (A hard kill in the middle of an HDF5 write can still corrupt the file; rerun with
    ``overwrite=True`` then.)

    Parameters
    ----------
    embedder : Embedder
        Anything with ``.embed(cutouts, band_mask, batch_size=, progress=) -> [n, D]`` and
        ``.dim``.
    store_path : str or Path
        A :class:`~photozsom.datasets.store.CutoutStore` file.
    out_path : str or Path
        Embedding file to create, or to resume when it exists.
    chunk : int
        Rows read from the store and committed at a time.
    batch_size : int
        Batch size passed to ``embedder.embed``.
    progress : bool
        Show a progress bar over rows.
    overwrite : bool
        Start afresh even if ``out_path`` exists.
    catalog : pandas.DataFrame, optional
        Per-object catalogue with an ``OBJID`` column, passed row-aligned as
        ``embed(..., catalog=...)`` (used by ``AIONEmbedder(include_catalog=True)``).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ValueError
        ``out_path`` exists but was written by another embedder, another dimension or
        another store (pass ``overwrite=True`` to replace it).
    """
    import h5py
    from tqdm.auto import tqdm

    from photozsom.datasets.store import CutoutStore

    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 row, got {chunk}")
    out_path = Path(out_path)
    ident = embedder_identity(embedder)
    dim = int(embedder.dim)
    cat_index = None
    if catalog is not None:
        if "OBJID" not in catalog.columns:
            raise ValueError("catalog must have an OBJID column to be joined with the cutout store")
        cat_index = catalog.set_index("OBJID", drop=False)
        if not cat_index.index.is_unique:
            raise ValueError(
                "catalog has duplicated OBJIDs; the join with the cutout store is ambiguous"
            )

    with CutoutStore(store_path) as store:
        n_total = len(store)
        ids = store.objid
        id_hash = _objid_hash(ids)
        if overwrite and out_path.exists():
            out_path.unlink()
        mode = "a" if out_path.exists() else "w"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(out_path, mode) as h5:
            if mode == "w":
                h5.create_dataset(
                    "embedding",
                    shape=(0, dim),
                    maxshape=(None, dim),
                    dtype="f4",
                    chunks=(min(max(chunk, 1), 4096), dim),
                )
                h5.create_dataset(
                    "OBJID",
                    shape=(0,),
                    maxshape=(None,),
                    dtype="i8",
                    chunks=(min(max(chunk, 1), 16384),),
                )
                h5.attrs.update(
                    {
                        "n_done": 0,
                        "n_total": n_total,
                        "complete": False,
                        "embedder": ident,
                        "dim": dim,
                        "objid_sha1": id_hash,
                        "store": str(Path(store_path).resolve()),
                    }
                )
                h5.flush()
            else:
                problems = []
                if "embedding" not in h5 or "OBJID" not in h5 or "n_done" not in h5.attrs:
                    problems.append("it is not a photozsom embedding file")
                else:
                    if int(h5.attrs["dim"]) != dim:
                        problems.append(f"dimension {int(h5.attrs['dim'])} != embedder.dim {dim}")
                    if str(h5.attrs["embedder"]) != ident:
                        problems.append(f"written by {h5.attrs['embedder']!s}, not {ident}")
                    if (
                        str(h5.attrs["objid_sha1"]) != id_hash
                        or int(h5.attrs["n_total"]) != n_total
                    ):
                        problems.append("the cutout store's OBJIDs have changed")
                if problems:
                    raise ValueError(
                        f"cannot resume {out_path}: {'; '.join(problems)}. Pass overwrite=True to "
                        "recompute it, or choose another out_path"
                    )
            emb_ds, id_ds = h5["embedding"], h5["OBJID"]
            start = int(h5.attrs["n_done"])
            # Discard rows written after the last commit (an interrupted chunk).
            emb_ds.resize(start, axis=0)
            id_ds.resize(start, axis=0)
            with tqdm(
                total=n_total,
                initial=start,
                disable=None if progress else True,
                desc="embedding",
                unit="obj",
            ) as bar:
                for sl, (imgs, mask, objid) in store.iter_chunks(chunk, start=start):
                    kwargs = {}
                    if cat_index is not None:
                        missing = ~np.isin(objid, cat_index.index.to_numpy())
                        if missing.any():
                            raise KeyError(
                                f"{int(missing.sum())} OBJID(s) of the store are not in "
                                f"catalog, e.g. {objid[missing][:5].tolist()}"
                            )
                        kwargs["catalog"] = cat_index.loc[objid].reset_index(drop=True)
                    emb = np.asarray(
                        embedder.embed(imgs, mask, batch_size=batch_size, progress=False, **kwargs),
                        dtype=np.float32,
                    )
                    if emb.shape != (len(objid), dim):
                        raise ValueError(
                            f"embedder returned shape {emb.shape}, expected ({len(objid)}, {dim})"
                        )
                    lo, hi = sl.start, sl.stop
                    emb_ds.resize(hi, axis=0)
                    id_ds.resize(hi, axis=0)
                    emb_ds[lo:hi] = emb
                    id_ds[lo:hi] = objid
                    h5.flush()
                    h5.attrs["n_done"] = hi  # the commit
                    h5.flush()
                    bar.update(hi - lo)
            h5.attrs["complete"] = int(h5.attrs["n_done"]) == n_total
    return out_path


def load_embeddings(
    path: str | os.PathLike, objid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read an embedding file written by :func:`embed_to_file`, optionally joined on OBJID.

    Parameters
    ----------
    path : str or Path
        The HDF5 embedding file.
    objid : array_like of int, shape (M,), optional
        Objects wanted, in the order wanted. ``None`` returns every row in file order.

    Returns
    -------
    embedding : ndarray, shape (M, D), float32
    objid : ndarray, shape (M,), int64
        The OBJID of each returned row (equal to the request when given).

    Raises
    ------
    ValueError
        The file is incomplete (rerun :func:`embed_to_file` to resume it) or holds
        duplicated OBJIDs.
    KeyError
        Requested OBJIDs are not in the file; the message names them.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"embedding file {path} does not exist; create it with embed_to_file"
        )
    with h5py.File(path, "r") as h5:
        if "embedding" not in h5 or "OBJID" not in h5:
            raise ValueError(f"{path} lacks /embedding or /OBJID: not a photozsom embedding file")
        n_done = int(h5.attrs.get("n_done", h5["OBJID"].shape[0]))
        n_total = int(h5.attrs.get("n_total", n_done))
        if not bool(h5.attrs.get("complete", True)):
            raise ValueError(
                f"{path} is incomplete ({n_done} of {n_total} rows); rerun "
                "embed_to_file with the same arguments to finish it"
            )
        emb = h5["embedding"][:n_done]
        ids = h5["OBJID"][:n_done]
    if objid is None:
        return emb, ids
    objid = np.asarray(objid, dtype=np.int64).ravel()
    order = np.argsort(ids, kind="stable")
    srt = ids[order]
    if len(srt) > 1 and np.any(srt[1:] == srt[:-1]):
        raise ValueError(f"{path} holds duplicated OBJIDs; cannot join on OBJID")
    pos = np.clip(np.searchsorted(srt, objid), 0, max(len(srt) - 1, 0))
    found = (srt[pos] == objid) if len(srt) else np.zeros(len(objid), bool)
    if not found.all():
        missing = objid[~found]
        raise KeyError(f"{len(missing)} OBJID(s) not in {path.name}, e.g. {missing[:10].tolist()}")
    rows = order[pos]
    return emb[rows], ids[rows]
