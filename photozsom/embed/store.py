"""An HDF5 store of g,r,i,z image cutouts that can be written and read in chunks.

Layout of the file (the contract between the cutout reader, the simulator and the
embedders)::

    /images      float32 [N, 4, H, W]  surface brightness, nanomaggies per pixel; NaN in
                                       bands without imaging (the i-band in the north)
    /band_mask   bool    [N, 4]        True where the band has imaging
    /sigma       float32 [N, 4]        per-pixel sky noise, nanomaggies (NaN if unknown)
    /OBJID       int64   [N]           object identifier: join on this, never on row number
    attrs: bands = "g,r,i,z", pixscale = 0.262 (arcsec/pixel), size = H

Rows are appended; ``images`` is chunked one cutout per HDF5 chunk row-block so that
reading a slice of rows touches only those rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["BANDS", "PIXSCALE", "PIXSCALE_RTOL", "CutoutStore", "check_pixscale"]

#: Band order of the store's second axis.
BANDS: tuple[str, ...] = ("g", "r", "i", "z")
#: Legacy Survey pixel scale, arcsec per pixel.
PIXSCALE: float = 0.262
#: Relative difference below which two pixel scales count as equal.
PIXSCALE_RTOL: float = 1e-3


def _same_scale(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= PIXSCALE_RTOL * abs(float(b))


def check_pixscale(
    actual: float,
    expected: float = PIXSCALE,
    *,
    allow: float | None = None,
    what: str = "cutout store",
    who: str = "the embedder",
) -> float:
    """Refuse cutouts whose pixel scale is not the one a model was trained on.

    Parameters
    ----------
    actual : float
        Pixel scale of the cutouts, arcsec/pixel.
    expected : float
        Pixel scale the model expects, arcsec/pixel (AION-1 and the Legacy Survey: 0.262).
    allow : float, optional
        A pixel scale the caller accepts deliberately although it differs from
        ``expected`` (arcsec/pixel); the check passes when ``actual`` equals it.
    what, who : str
        Names used in the error message.

    Returns
    -------
    float
        ``actual``.

    Raises
    ------
    ValueError
        ``actual`` differs from ``expected`` (relative tolerance :data:`PIXSCALE_RTOL`) and
        from ``allow``.
    """
    actual = float(actual)
    if not np.isfinite(actual) or actual <= 0:
        raise ValueError(f"{what} has pixel scale {actual!r}; it must be > 0 arcsec/pixel")
    if _same_scale(actual, expected) or (allow is not None and _same_scale(actual, allow)):
        return actual
    hint = (
        f"allow_pixscale={allow:g} was given, which does not match either; "
        if allow is not None
        else ""
    )
    raise ValueError(
        f"{what} has pixel scale {actual:g} arcsec/pixel but {who} expects {expected:g} "
        f"(galaxies would look {expected / actual:.3g}x larger or smaller than in training). "
        f"{hint}Request cutouts at pixscale={expected:g} from the cutout service, or pass "
        f"allow_pixscale={actual:g} to embed them anyway"
    )


class CutoutStore:
    """Chunked HDF5 store of cutouts keyed by OBJID.

    Parameters
    ----------
    path : str or Path
        HDF5 file.
    mode : {"r", "a"}
        Read only, or append (the file must exist; use :meth:`create` for a new one).

    Examples
    --------
    >>> store = CutoutStore.create(tmp / "c.h5", size=64)          # doctest: +SKIP
    >>> store.append(images, band_mask, objid)                      # doctest: +SKIP
    >>> for sl, batch in CutoutStore(tmp / "c.h5").iter_chunks(256):  # doctest: +SKIP
    ...     ...
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r"):
        import h5py

        self.path = Path(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        if not self.path.exists():
            raise FileNotFoundError(f"cutout store {self.path} does not exist; create it with CutoutStore.create")
        try:
            self._h5 = h5py.File(self.path, mode)
        except OSError as err:
            raise ValueError(f"{self.path} is not a readable HDF5 cutout store ({err})") from err
        for key in ("images", "band_mask", "OBJID"):
            if key not in self._h5:
                self._h5.close()
                raise ValueError(f"{self.path} lacks dataset /{key}: not a photozsom cutout store")

    # -- creation ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, size: int, *, overwrite: bool = False,
               pixscale: float = PIXSCALE, compression: str | None = None) -> CutoutStore:
        """Create an empty store for ``size`` x ``size`` pixel cutouts and open it for appending."""
        import h5py

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True or open it with CutoutStore(path, 'a')")
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        if not pixscale > 0:
            raise ValueError(f"pixscale must be > 0 arcsec/pixel, got {pixscale}")
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as h5:
            h5.create_dataset("images", shape=(0, 4, size, size), maxshape=(None, 4, size, size),
                              dtype="f4", chunks=(16, 4, size, size), compression=compression)
            h5.create_dataset("band_mask", shape=(0, 4), maxshape=(None, 4), dtype="?", chunks=(4096, 4))
            h5.create_dataset("sigma", shape=(0, 4), maxshape=(None, 4), dtype="f4", chunks=(4096, 4))
            h5.create_dataset("OBJID", shape=(0,), maxshape=(None,), dtype="i8", chunks=(16384,))
            h5.attrs["bands"] = ",".join(BANDS)
            h5.attrs["pixscale"] = float(pixscale)
            h5.attrs["size"] = int(size)
        return cls(path, "a")

    # -- writing ----------------------------------------------------------------------
    def append(self, images: np.ndarray, band_mask: np.ndarray, objid: np.ndarray,
               sigma: np.ndarray | None = None) -> None:
        """Append cutouts.

        Parameters
        ----------
        images : ndarray, shape (B, 4, H, W)
            Nanomaggies per pixel, bands g, r, i, z.
        band_mask : ndarray, shape (B, 4), bool
        objid : ndarray, shape (B,), int
        sigma : ndarray, shape (B, 4), optional
            Per-pixel sky noise, nanomaggies.
        """
        images = np.asarray(images, dtype=np.float32)
        band_mask = np.asarray(band_mask, dtype=bool)
        objid = np.asarray(objid, dtype=np.int64)
        size = self.size
        if images.ndim != 4 or images.shape[1:] != (4, size, size):
            raise ValueError(f"images must have shape (B, 4, {size}, {size}), got {images.shape}")
        b = len(images)
        if band_mask.shape != (b, 4) or objid.shape != (b,):
            raise ValueError(f"band_mask must be ({b}, 4) and objid ({b},); got {band_mask.shape}, {objid.shape}")
        sigma = np.full((b, 4), np.nan, np.float32) if sigma is None else np.asarray(sigma, np.float32)
        n = len(self)
        for key, arr in (("images", images), ("band_mask", band_mask), ("sigma", sigma), ("OBJID", objid)):
            ds = self._h5[key]
            ds.resize(n + b, axis=0)
            ds[n:] = arr
        self._h5.flush()

    # -- reading ----------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._h5["OBJID"].shape[0])

    @property
    def size(self) -> int:
        """Cutout side, pixels."""
        return int(self._h5["images"].shape[-1])

    @property
    def pixscale(self) -> float:
        """Pixel scale, arcsec per pixel."""
        return float(self._h5.attrs.get("pixscale", PIXSCALE))

    def check_pixscale(
        self, expected: float = PIXSCALE, *, allow: float | None = None, who: str = "the embedder"
    ) -> float:
        """:func:`check_pixscale` of this store: its pixel scale, or a ``ValueError``.

        A store written without a ``pixscale`` attribute counts as :data:`PIXSCALE`.
        """
        return check_pixscale(self.pixscale, expected, allow=allow,
                              what=f"cutout store {self.path.name}", who=who)

    @property
    def objid(self) -> np.ndarray:
        """All OBJIDs, int64 [N]."""
        return self._h5["OBJID"][:]

    #: Largest contiguous read, bytes: bounds the memory of a scattered read.
    MAX_READ_BYTES = 64 * 2**20

    def _take(self, rows: np.ndarray, *names: str) -> list[np.ndarray]:
        """Rows ``rows`` (any order, repeats allowed) of each dataset in ``names``, in order.

        The wanted rows, sorted, are cut into runs wherever two of them lie more than one
        HDF5 chunk apart or cross a multiple of the largest slice (:attr:`MAX_READ_BYTES`
        of the widest dataset), and each run is read as one slice of every dataset: one call
        per run instead of h5py's per-row point selection (``benchmarks/store.py`` measures
        the difference), and memory stays bounded.
        """
        rows = np.asarray(rows, dtype=np.int64)
        sets = [self._h5[n] for n in names]
        if len(rows) == 0:
            return [ds[0:0] for ds in sets]
        if rows.min() < 0 or rows.max() >= len(self):
            raise IndexError(f"row index out of range [0, {len(self)})")
        uniq, inv = np.unique(rows, return_inverse=True)
        inv = inv.reshape(-1)
        gap = min(ds.chunks[0] if ds.chunks else 16 for ds in sets)
        row_bytes = max(ds.dtype.itemsize * int(np.prod(ds.shape[1:], dtype=np.int64)) for ds in sets)
        block = max(1, self.MAX_READ_BYTES // max(1, row_bytes))
        cut = np.flatnonzero((np.diff(uniq) > gap) | (np.diff(uniq // block) != 0)) + 1
        outs = [np.empty((len(uniq),) + ds.shape[1:], dtype=ds.dtype) for ds in sets]
        for a, b in zip(np.r_[0, cut], np.r_[cut, len(uniq)]):  # one iteration per run
            lo, hi = int(uniq[a]), int(uniq[b - 1]) + 1
            for ds, out in zip(sets, outs):
                out[a:b] = ds[lo:hi][uniq[a:b] - lo]
        return [out[inv] for out in outs]

    def read(self, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read ``(images, band_mask, objid)`` for a slice or an index array of rows (any order)."""
        if isinstance(rows, slice):
            return self._h5["images"][rows], self._h5["band_mask"][rows], self._h5["OBJID"][rows]
        return tuple(self._take(rows, "images", "band_mask", "OBJID"))

    def sigma(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Per-pixel sky noise [n, 4], nanomaggies, for a slice or an index array of rows."""
        if isinstance(rows, slice):
            return self._h5["sigma"][rows]
        return self._take(rows, "sigma")[0]

    def rows_of(self, objid: np.ndarray) -> np.ndarray:
        """Row numbers of the given OBJIDs; raises ``KeyError`` naming IDs not in the store."""
        ids = self.objid
        order = np.argsort(ids, kind="stable")
        objid = np.asarray(objid, dtype=np.int64)
        pos = np.searchsorted(ids[order], objid)
        pos = np.clip(pos, 0, max(len(ids) - 1, 0))
        found = len(ids) > 0
        ok = ids[order][pos] == objid if found else np.zeros(len(objid), bool)
        if not np.all(ok):
            missing = objid[~ok]
            raise KeyError(f"{len(missing)} OBJID(s) not in {self.path.name}, e.g. {missing[:5].tolist()}")
        return order[pos]

    def iter_chunks(self, chunk: int = 256, start: int = 0) -> Iterator[tuple[slice, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """Yield ``(slice, (images, band_mask, objid))`` for consecutive row blocks."""
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        n = len(self)
        for lo in range(start, n, chunk):
            sl = slice(lo, min(lo + chunk, n))
            yield sl, self.read(sl)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> CutoutStore:  # noqa: PYI034 (Self needs Python 3.11)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CutoutStore({str(self.path)!r}, n={len(self)}, size={self.size})"
