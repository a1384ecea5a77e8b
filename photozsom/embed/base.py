"""The embedder protocol, input validation, and on-disk embedding files keyed by OBJID.

Every image embedder in photozsom (:class:`photozsom.embed.Encoder`, the built-in
self-supervised CNN, and :class:`photozsom.embed.AIONEmbedder`, the AION-1 foundation
model) turns g, r, i, z cutouts into one vector per object::

    emb = embedder.embed(cutouts, band_mask)      # float32 [N, embedder.dim]

Cutouts follow the :class:`~photozsom.embed.store.CutoutStore` convention: float32
``[N, 4, H, W]`` surface brightness in nanomaggies per pixel, bands in the order g, r, i, z,
and a boolean ``band_mask [N, 4]`` that is True where the band has imaging. A band the mask
marks absent (the i-band of a DR10-north object) may hold anything, NaN included.

Bad pixels: a band marked present that holds a NaN or infinite pixel in the region an
embedder reads (its centre crop, ``embedder.input_size``) is left out for that object,
exactly as an absent band is (:func:`usable_bands`); the embedders warn, and an object
left with no band gets a NaN embedding row. :func:`embed_to_file` never stops for one
object: it records, per object, the bad pixels of every band, the bands used and a status
code (:data:`STATUS`), read back with :func:`load_embedding_status`.

:func:`embed_to_file` streams a whole cutout store through an embedder into an HDF5 file
(``/embedding [N, D]`` float32, ``/OBJID [N]`` int64) chunk by chunk and resumes where it
stopped after an interruption; :func:`load_embeddings` reads it back joined on OBJID, so the
MDN, the SOM and the flags never depend on row order. The store's pixel scale must be the
one the embedder expects (``embedder.pixscale``, 0.262 arcsec/pixel by default) unless
``allow_pixscale`` accepts another.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from photozsom.embed.store import PIXSCALE, CutoutStore

__all__ = [
    "STATUS",
    "Embedder",
    "bad_pixel_counts",
    "embed_to_file",
    "embedder_identity",
    "load_embedding_status",
    "load_embeddings",
    "usable_bands",
    "validate_cutouts",
]

#: Band names of the cutouts' second axis.
BANDS: tuple[str, ...] = ("g", "r", "i", "z")

#: Per-object status codes of an embedding file (dataset ``/status``).
STATUS: dict[int, str] = {
    0: "ok",  # embedded with every band the store marks present
    1: "bands_dropped",  # embedded without the band(s) holding NaN/inf pixels
    2: "not_embedded",  # no band without bad pixels: the embedding row is NaN
}


@runtime_checkable
class Embedder(Protocol):
    """What every photozsom image embedder provides.

    Attributes
    ----------
    dim : int
        Length ``D`` of the embedding vector.
    device : str
        Torch device the embedder computes on ("cpu", "cuda", ...).

    Optional attributes read by :func:`embed_to_file`: ``input_size`` (side of the centre
    crop the embedder reads, pixels: bad pixels outside it are ignored), ``pixscale``
    (arcsec/pixel of the images it was trained on; default 0.262) and ``allow_pixscale``.
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
    cutouts: np.ndarray,
    band_mask: np.ndarray,
    *,
    min_size: int = 1,
    name: str = "cutouts",
    bad_pixels: str = "raise",
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
    bad_pixels : {"raise", "ignore"}
        What a NaN/inf pixel in a band the mask marks present does: raise, or pass
        (the caller handles it, e.g. with :func:`usable_bands`).

    Returns
    -------
    cutouts : ndarray, float32, shape (N, 4, H, W)
        The input as float32 (not copied when it already is).
    band_mask : ndarray, bool, shape (N, 4)

    Raises
    ------
    ValueError
        Wrong shapes, cutouts smaller than ``min_size``, an object with no band present, or
        (``bad_pixels="raise"``) a non-finite pixel in a band the mask marks present.
    """
    if bad_pixels not in ("raise", "ignore"):
        raise ValueError(f"bad_pixels must be 'raise' or 'ignore', got {bad_pixels!r}")
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
    if n and bad_pixels == "raise":
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


def _centre(cutouts: np.ndarray, input_size: int | None) -> np.ndarray:
    """The centre ``input_size`` x ``input_size`` pixels (a view), with the codecs' arithmetic."""
    if input_size is None:
        return cutouts
    h, w = cutouts.shape[-2:]
    s = min(int(input_size), h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return cutouts[..., y0 : y0 + s, x0 : x0 + s]


def bad_pixel_counts(
    cutouts: np.ndarray, band_mask: np.ndarray, input_size: int | None = None
) -> np.ndarray:
    """Number of NaN/inf pixels of every band marked present, in the region an embedder reads.

    Parameters
    ----------
    cutouts : ndarray, shape (N, 4, H, W)
        Nanomaggies per pixel.
    band_mask : ndarray, shape (N, 4), bool
        True where the band has imaging; absent bands count 0.
    input_size : int, optional
        Side of the centre crop the embedder reads (pixels outside it are ignored);
        ``None`` counts the whole cutout.

    Returns
    -------
    ndarray, shape (N, 4), int32
    """
    crop = _centre(np.asarray(cutouts), input_size)
    bad = (~np.isfinite(crop)).sum(axis=(2, 3), dtype=np.int64)
    return np.where(np.asarray(band_mask, bool), bad, 0).astype(np.int32)


def usable_bands(
    cutouts: np.ndarray,
    band_mask: np.ndarray,
    input_size: int | None = None,
    *,
    warn: bool = True,
    name: str = "cutouts",
) -> tuple[np.ndarray, np.ndarray]:
    """Leave out, per object, every present band holding a NaN/inf pixel (like an absent band).

    AION-1's codec masks a missing band as a whole (there is no per-pixel mask), and the
    built-in :class:`~photozsom.embed.Encoder` sees an absent band as zeros plus its mask;
    both embed an object with a bad band exactly as an object without that band.

    Parameters
    ----------
    cutouts : ndarray, shape (N, 4, H, W)
    band_mask : ndarray, shape (N, 4), bool
    input_size : int, optional
        Side of the centre crop the embedder reads; bad pixels outside it do not count.
    warn : bool
        Emit one ``RuntimeWarning`` summarising the bands left out.
    name : str
        Name used in the warning.

    Returns
    -------
    used : ndarray, shape (N, 4), bool
        ``band_mask`` without the bad bands; a row may be all False (nothing to embed).
    n_bad : ndarray, shape (N, 4), int32
        :func:`bad_pixel_counts`.
    """
    band_mask = np.asarray(band_mask, bool)
    n_bad = bad_pixel_counts(cutouts, band_mask, input_size)
    used = band_mask & (n_bad == 0)
    if warn and (n_bad > 0).any():
        rows, bands = np.nonzero(n_bad)
        empty = int((~used.any(axis=1)).sum())
        ex = ", ".join(f"row {r} band {BANDS[b]}" for r, b in zip(rows[:5], bands[:5]))
        tail = f"; {empty} object(s) have no band left and get a NaN embedding" if empty else ""
        warnings.warn(
            f"{name}: {len(rows)} band(s) marked present hold NaN/inf pixels ({ex}); each is "
            f"embedded as if that band were absent{tail}",
            RuntimeWarning,
            stacklevel=3,
        )
    return used, n_bad


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


#: Datasets of an embedding file, with their per-row shape and dtype.
_DATASETS = {
    "embedding": (None, "f4"),
    "OBJID": ((), "i8"),
    "status": ((), "u1"),
    "n_bad": ((4,), "i4"),
    "band_used": ((4,), "?"),
}


def _open_embedding_file(h5, *, dim, chunk, attrs) -> None:
    """Create the datasets and attributes of a new embedding file."""
    for key, (shape, dtype) in _DATASETS.items():
        row = (dim,) if shape is None else shape
        h5.create_dataset(
            key,
            shape=(0, *row),
            maxshape=(None, *row),
            dtype=dtype,
            chunks=(min(max(chunk, 1), 4096), *row),
        )
    h5.attrs.update({"n_done": 0, "complete": False, **attrs})
    h5.flush()


def _resume_problems(h5, *, dim, ident, id_hash, n_total) -> list[str]:
    """Why an existing file cannot be resumed by this embedder and store (empty: it can)."""
    if "n_done" not in h5.attrs or any(k not in h5 for k in ("embedding", "OBJID")):
        return ["it is not a photozsom embedding file"]
    problems = []
    if any(k not in h5 for k in _DATASETS):
        problems.append("it was written by an older photozsom (no per-object status)")
    if int(h5.attrs["dim"]) != dim:
        problems.append(f"dimension {int(h5.attrs['dim'])} != embedder.dim {dim}")
    if str(h5.attrs["embedder"]) != ident:
        problems.append(f"written by {h5.attrs['embedder']!s}, not {ident}")
    if str(h5.attrs["objid_sha1"]) != id_hash or int(h5.attrs["n_total"]) != n_total:
        problems.append("the cutout store's OBJIDs have changed")
    return problems


def _embed_chunk(embedder, imgs, mask, *, input_size, batch_size, catalog):
    """Embed one chunk, leaving out bad bands; returns (embedding, status, n_bad, used)."""
    used, n_bad = usable_bands(imgs, mask, input_size, warn=False)
    ok = used.any(axis=1)
    dim = int(embedder.dim)
    emb = np.full((len(imgs), dim), np.nan, np.float32)
    if ok.any():
        kwargs = {}
        if catalog is not None:
            kwargs["catalog"] = catalog.loc[ok].reset_index(drop=True)
        sub = np.asarray(
            embedder.embed(
                imgs[ok], used[ok], batch_size=batch_size, progress=False, **kwargs
            ),
            dtype=np.float32,
        )
        if sub.shape != (int(ok.sum()), dim):
            raise ValueError(f"embedder returned shape {sub.shape}, expected ({int(ok.sum())}, {dim})")
        emb[ok] = sub
    status = np.where(ok, np.where((n_bad > 0).any(axis=1), 1, 0), 2).astype(np.uint8)
    return emb, status, n_bad, used


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
    allow_pixscale: float | None = None,
) -> Path:
    """Embed every cutout of a store into an HDF5 file, in chunks, resuming if interrupted.

    The output holds, row-aligned in store order:

    - ``/embedding`` float32 ``[N, D]`` (NaN for an object with status 2);
    - ``/OBJID`` int64 ``[N]``;
    - ``/status`` uint8 ``[N]``: :data:`STATUS` (0 ok, 1 embedded without the band(s)
      holding NaN/inf pixels, 2 not embedded: no band left);
    - ``/n_bad`` int32 ``[N, 4]``: NaN/inf pixels per band g, r, i, z in the region the
      embedder reads (``embedder.input_size``);
    - ``/band_used`` bool ``[N, 4]``: the bands the embedding was computed from;

    plus attributes ``n_done`` (rows committed), ``n_total``, ``complete``, ``embedder``
    (:func:`embedder_identity`), ``dim``, ``objid_sha1`` (of the store's OBJIDs),
    ``pixscale`` (arcsec/pixel) and ``store``. One object's bad pixels never stop the run.
    Rows are committed one chunk at a time: all datasets are written and flushed before
    ``n_done`` advances, so a run stopped by an exception or Ctrl-C restarts at the first
    uncommitted row; rows past ``n_done`` are discarded and recomputed, never duplicated.
    (A hard kill in the middle of an HDF5 write can still corrupt the file; rerun with
    ``overwrite=True`` then.)

    Parameters
    ----------
    embedder : Embedder
        Anything with ``.embed(cutouts, band_mask, batch_size=, progress=) -> [n, D]`` and
        ``.dim``; optional attributes ``input_size`` (side of the centre crop it reads,
        pixels), ``pixscale`` (arcsec/pixel it expects, default 0.262) and
        ``allow_pixscale``.
    store_path : str or Path
        A :class:`~photozsom.embed.store.CutoutStore` file.
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
    allow_pixscale : float, optional
        Accept a store of this pixel scale (arcsec/pixel) although the embedder expects
        another; default ``embedder.allow_pixscale`` when it has one.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ValueError
        The store's pixel scale is not the embedder's (see ``allow_pixscale``), or
        ``out_path`` exists but was written by another embedder, another dimension or
        another store (pass ``overwrite=True`` to replace it).
    """
    import h5py
    from tqdm.auto import tqdm


    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 row, got {chunk}")
    out_path = Path(out_path)
    ident = embedder_identity(embedder)
    dim = int(embedder.dim)
    input_size = getattr(embedder, "input_size", None)
    expected = getattr(embedder, "pixscale", None) or PIXSCALE
    if allow_pixscale is None:
        allow_pixscale = getattr(embedder, "allow_pixscale", None)
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
        pixscale = store.check_pixscale(expected, allow=allow_pixscale, who=ident)
        n_total = len(store)
        id_hash = _objid_hash(store.objid)
        if overwrite and out_path.exists():
            out_path.unlink()
        mode = "a" if out_path.exists() else "w"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(out_path, mode) as h5:
            if mode == "w":
                _open_embedding_file(
                    h5,
                    dim=dim,
                    chunk=chunk,
                    attrs={
                        "n_total": n_total,
                        "embedder": ident,
                        "dim": dim,
                        "objid_sha1": id_hash,
                        "pixscale": pixscale,
                        "store": str(Path(store_path).resolve()),
                    },
                )
            else:
                problems = _resume_problems(
                    h5, dim=dim, ident=ident, id_hash=id_hash, n_total=n_total
                )
                if problems:
                    raise ValueError(
                        f"cannot resume {out_path}: {'; '.join(problems)}. Pass overwrite=True to "
                        "recompute it, or choose another out_path"
                    )
            sets = {key: h5[key] for key in _DATASETS}
            start = int(h5.attrs["n_done"])
            for ds in sets.values():  # discard rows written after the last commit
                ds.resize(start, axis=0)
            with tqdm(
                total=n_total,
                initial=start,
                disable=None if progress else True,
                desc="embedding",
                unit="obj",
            ) as bar:
                for sl, (imgs, mask, objid) in store.iter_chunks(chunk, start=start):
                    cat = None
                    if cat_index is not None:
                        missing = ~np.isin(objid, cat_index.index.to_numpy())
                        if missing.any():
                            raise KeyError(
                                f"{int(missing.sum())} OBJID(s) of the store are not in "
                                f"catalog, e.g. {objid[missing][:5].tolist()}"
                            )
                        cat = cat_index.loc[objid].reset_index(drop=True)
                    emb, status, n_bad, used = _embed_chunk(
                        embedder, imgs, mask, input_size=input_size, batch_size=batch_size,
                        catalog=cat,
                    )
                    lo, hi = sl.start, sl.stop
                    for key, arr in (
                        ("embedding", emb),
                        ("OBJID", objid),
                        ("status", status),
                        ("n_bad", n_bad),
                        ("band_used", used),
                    ):
                        sets[key].resize(hi, axis=0)
                        sets[key][lo:hi] = arr
                    h5.flush()
                    h5.attrs["n_done"] = hi  # the commit
                    h5.flush()
                    bar.update(hi - lo)
            h5.attrs["complete"] = int(h5.attrs["n_done"]) == n_total
    return out_path


def _open_complete(path: Path):
    import h5py

    if not path.exists():
        raise FileNotFoundError(
            f"embedding file {path} does not exist; create it with embed_to_file"
        )
    h5 = h5py.File(path, "r")
    if "embedding" not in h5 or "OBJID" not in h5:
        h5.close()
        raise ValueError(f"{path} lacks /embedding or /OBJID: not a photozsom embedding file")
    n_done = int(h5.attrs.get("n_done", h5["OBJID"].shape[0]))
    n_total = int(h5.attrs.get("n_total", n_done))
    if not bool(h5.attrs.get("complete", True)):
        h5.close()
        raise ValueError(
            f"{path} is incomplete ({n_done} of {n_total} rows); rerun "
            "embed_to_file with the same arguments to finish it"
        )
    return h5, n_done


def _join_rows(path: Path, ids: np.ndarray, objid) -> np.ndarray:
    """Rows of ``ids`` holding the requested ``objid`` (in the requested order)."""
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
    return order[pos]


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
        NaN rows for objects that could not be embedded (status 2, every band held bad
        pixels; a ``RuntimeWarning`` says how many): see :func:`load_embedding_status`.
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
    path = Path(path)
    h5, n_done = _open_complete(path)
    with h5:
        emb = h5["embedding"][:n_done]
        ids = h5["OBJID"][:n_done]
    if objid is not None:
        rows = _join_rows(path, ids, objid)
        emb, ids = emb[rows], ids[rows]
    nan_rows = ~np.isfinite(emb).all(axis=1)
    if nan_rows.any():
        warnings.warn(
            f"{int(nan_rows.sum())} of {len(emb)} embeddings read from {path.name} are NaN "
            f"(objects with no band free of NaN/inf pixels, e.g. OBJID "
            f"{ids[nan_rows][:5].tolist()}); see load_embedding_status",
            RuntimeWarning,
            stacklevel=2,
        )
    return emb, ids


def load_embedding_status(path: str | os.PathLike, objid: np.ndarray | None = None):
    """Per-object status of an embedding file: what each object's bad pixels did.

    Parameters
    ----------
    path : str or Path
        An embedding file written by :func:`embed_to_file`.
    objid : array_like of int, optional
        Objects wanted, in the order wanted (default: all, in file order).

    Returns
    -------
    pandas.DataFrame
        Columns ``OBJID``; ``status`` (int, :data:`STATUS`) and ``status_name``;
        ``n_bad_g, n_bad_r, n_bad_i, n_bad_z`` (NaN/inf pixels read by the embedder in each
        band marked present); ``used_g, used_r, used_i, used_z`` (bands the embedding was
        computed from).
    """
    import pandas as pd

    path = Path(path)
    h5, n_done = _open_complete(path)
    with h5:
        if "status" not in h5:
            raise ValueError(
                f"{path} has no per-object status (written by an older photozsom); "
                "recompute it with embed_to_file(..., overwrite=True)"
            )
        ids = h5["OBJID"][:n_done]
        status = h5["status"][:n_done]
        n_bad = h5["n_bad"][:n_done]
        used = h5["band_used"][:n_done]
    if objid is not None:
        rows = _join_rows(path, ids, objid)
        ids, status, n_bad, used = ids[rows], status[rows], n_bad[rows], used[rows]
    names = np.array([STATUS[k] for k in sorted(STATUS)])
    table = {"OBJID": ids, "status": status.astype(np.int64), "status_name": names[status]}
    table.update({f"n_bad_{b}": n_bad[:, k] for k, b in enumerate(BANDS)})
    table.update({f"used_{b}": used[:, k] for k, b in enumerate(BANDS)})
    return pd.DataFrame(table)
