"""Legacy Survey image cutouts: service URLs, a cached downloader, a FITS reader, the HDF5 store.

The Legacy Survey viewer (https://www.legacysurvey.org/viewer; the "cutout service" of
https://www.legacysurvey.org/dr10/description/) serves cutouts of the coadded images at any
position::

    https://www.legacysurvey.org/viewer/cutout.fits?ra=<deg>&dec=<deg>&layer=ls-dr10&pixscale=0.262&size=160&bands=griz

The answer is one FITS image HDU of shape ``(n_bands, size, size)``, float32, in nanomaggies
per pixel, with header keywords ``BANDS = 'griz'`` and ``BAND0 = 'g'``, ``BAND1 = 'r'``, ...
naming the planes. The paper uses 160-pixel (42") cutouts at the native 0.262"/pixel in
g, r, i, z. Only DECam (DR10 south) has the i-band: elsewhere the service returns g, r, z
only, and :func:`read_cutout_fits` puts NaN in the i plane and ``False`` in its band mask.

Nothing here touches the network unless :func:`download_cutouts` is called. The downloader
keeps one file per object (``<cache_dir>/<OBJID>.fits``), skips files already cached and
valid (so an interrupted run resumes where it stopped), re-downloads truncated or corrupt
ones, retries server errors and time-outs with exponential back-off, writes each file
atomically (``.part`` then rename), and returns a :class:`DownloadReport` listing every
object's outcome, so no failure is silent.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from photozsom.embed.store import BANDS, PIXSCALE, CutoutStore
from photozsom.io import open_fits

__all__ = [
    "CUTOUT_URL",
    "CutoutNoOverlapError",
    "DownloadReport",
    "cached_paths",
    "cutout_url",
    "download_cutouts",
    "fits_to_store",
    "folder_to_store",
    "read_cutout_fits",
    "read_cutouts",
]

#: The Legacy Survey viewer's FITS cutout endpoint.
CUTOUT_URL: str = "https://www.legacysurvey.org/viewer/cutout.fits"
#: Default cutout side, pixels (42" at 0.262"/pixel).
SIZE: int = 160
_USER_AGENT = "photozsom (https://github.com/; cutout downloader)"


class CutoutNoOverlapError(ValueError):
    """The service answered, but the position has no imaging (outside the footprint)."""


# --------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------
def cutout_url(
    ra: float | np.ndarray,
    dec: float | np.ndarray,
    *,
    layer: str = "ls-dr10",
    pixscale: float = PIXSCALE,
    size: int = SIZE,
    bands: str = "griz",
    base_url: str = CUTOUT_URL,
) -> str | list[str]:
    """URL(s) of the FITS cutout(s) centred on ``(ra, dec)``.

    Parameters
    ----------
    ra, dec : float or array_like
        Centre, degrees (ICRS).
    layer : str
        Viewer layer (``"ls-dr10"``; ``"ls-dr9-north"`` for the BASS/MzLS region).
    pixscale : float
        Arcsec per pixel (0.262 = native).
    size : int
        Side, pixels.
    bands : str
        Bands, e.g. ``"griz"``.
    base_url : str
        Endpoint (change it for a mirror or a local test server).

    Returns
    -------
    str or list of str
        One URL for scalar input, a list for arrays.

    Examples
    --------
    >>> cutout_url(150.1, 2.2)
    'https://www.legacysurvey.org/viewer/cutout.fits?ra=150.1000000&dec=2.2000000&layer=ls-dr10&pixscale=0.262&size=160&bands=griz'
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if not pixscale > 0:
        raise ValueError(f"pixscale must be > 0 arcsec/pixel, got {pixscale}")
    scalar = np.ndim(ra) == 0 and np.ndim(dec) == 0
    ra_a = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec_a = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if ra_a.shape != dec_a.shape:
        raise ValueError(f"ra and dec must have the same shape, got {ra_a.shape} and {dec_a.shape}")
    bad = ~(np.isfinite(ra_a) & np.isfinite(dec_a) & (np.abs(dec_a) <= 90))
    if bad.any():
        raise ValueError(f"ra/dec have {int(bad.sum())} invalid position(s) (NaN or |dec| > 90), "
                         f"first at index {int(np.flatnonzero(bad)[0])}")
    tail = urllib.parse.urlencode({"layer": layer, "pixscale": f"{pixscale:g}",
                                   "size": int(size), "bands": bands})
    urls = [f"{base_url}?ra={r:.7f}&dec={d:.7f}&{tail}" for r, d in zip(ra_a, dec_a, strict=True)]
    return urls[0] if scalar else urls


def cached_paths(objid: Sequence[int] | np.ndarray, cache_dir: str | os.PathLike) -> list[Path]:
    """Cache file of each OBJID: ``<cache_dir>/<OBJID>.fits``."""
    return [Path(cache_dir) / f"{int(o)}.fits" for o in np.asarray(objid)]


# --------------------------------------------------------------------------------------
# Reading FITS cutouts
# --------------------------------------------------------------------------------------
def _band_names(header, n: int, path: Path, expected: str) -> list[str]:
    names = [header.get(f"BAND{i}") for i in range(n)]
    if all(isinstance(b, str) and b.strip() for b in names):
        return [b.strip().lower() for b in names]
    bands = header.get("BANDS")
    if isinstance(bands, str) and len(bands.strip()) == n:
        return list(bands.strip().lower())
    if len(expected) == n:
        return list(expected.lower())
    raise ValueError(f"{path}: cannot tell which bands its {n} image planes are (no BAND0.. or "
                     f"BANDS keywords); pass bands= with the {n} bands requested")


def read_cutout_fits(
    path: str | os.PathLike, *, bands: str = "griz"
) -> tuple[np.ndarray, np.ndarray]:
    """Read one cutout-service FITS file into the g, r, i, z layout of the store.

    Parameters
    ----------
    path : str or Path
        FITS file from the cutout service (or any image HDU of shape ``(n_bands, H, W)`` or
        ``(H, W)`` with ``BAND<k>`` / ``BANDS`` keywords).
    bands : str
        Bands that were requested; used only when the header does not name the planes.

    Returns
    -------
    image : ndarray, shape (4, H, W), float32
        Nanomaggies per pixel in g, r, i, z order; NaN in bands the file lacks.
    band_mask : ndarray, shape (4,), bool
        True where the band has imaging. A plane that is absent, all zero, or has no finite
        pixel (what the service returns where a band has no coverage) is False and NaN.

    Raises
    ------
    ValueError
        Not FITS, truncated, no image HDU, an unknown band, or undecidable band order, naming
        the file. :class:`CutoutNoOverlapError` (a ValueError) when the service marked the
        position as outside the footprint.
    """
    path = Path(path)
    with open_fits(path, memmap=False) as hdul:
        hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim in (2, 3)),
                   None)
        if hdu is None:
            if hdul[0].header.get("OVERLAP") is False:
                raise CutoutNoOverlapError(f"{path}: the service reports no overlap with the "
                                           f"survey footprint at this position")
            raise ValueError(f"{path} has no 2-D or 3-D image HDU; not a cutout-service file")
        data = np.asarray(hdu.data)
        header = hdu.header
    if data.ndim == 2:
        data = data[None]
    names = _band_names(header, data.shape[0], path, bands)
    unknown = [b for b in names if b not in BANDS]
    if unknown:
        raise ValueError(f"{path}: band(s) {unknown} are not among {BANDS}; request "
                         f"bands='griz' from the cutout service")
    h, w = data.shape[1:]
    image = np.full((len(BANDS), h, w), np.nan, dtype=np.float32)
    mask = np.zeros(len(BANDS), dtype=bool)
    for plane, b in zip(data, names, strict=True):
        k = BANDS.index(b)
        plane = plane.astype(np.float32)
        has = np.isfinite(plane).any() and np.any(plane[np.isfinite(plane)] != 0)
        if has:
            image[k] = plane
            mask[k] = True
    return image, mask


def read_cutouts(
    paths: Sequence[str | os.PathLike], *, bands: str = "griz"
) -> tuple[np.ndarray, np.ndarray]:
    """Stack :func:`read_cutout_fits` of several files: ``images [N, 4, H, W]``, ``mask [N, 4]``.

    All files must have the same size; the error names the first that differs.
    """
    imgs, masks = [], []
    for p in paths:
        im, m = read_cutout_fits(p, bands=bands)
        if imgs and im.shape != imgs[0].shape:
            raise ValueError(f"{p}: cutout shape {im.shape[1:]} differs from the first file's "
                             f"{imgs[0].shape[1:]}; download all cutouts with the same size")
        imgs.append(im)
        masks.append(m)
    if not imgs:
        raise ValueError("read_cutouts got no paths")
    return np.stack(imgs), np.stack(masks)


# --------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------
@dataclass
class DownloadReport:
    """Outcome of :func:`download_cutouts`, one row per requested object.

    Attributes
    ----------
    table : DataFrame
        Columns ``OBJID, RA, DEC, URL, PATH, STATUS, ATTEMPTS, ERROR``; ``STATUS`` is
        ``"downloaded"``, ``"cached"`` (valid file already on disk, no request) or
        ``"failed"``; ``ERROR`` says why the last attempt failed (empty otherwise).
    """

    table: pd.DataFrame

    @property
    def failed(self) -> pd.DataFrame:
        """Rows of objects whose cutout could not be obtained."""
        return self.table[self.table["STATUS"] == "failed"]

    @property
    def ok(self) -> bool:
        """True when every object has a valid cutout on disk."""
        return len(self.failed) == 0

    def counts(self) -> dict[str, int]:
        """Number of objects per status."""
        status = self.table["STATUS"]
        return {s: int((status == s).sum()) for s in ("downloaded", "cached", "failed")}

    def raise_if_failed(self) -> None:
        """Raise ``RuntimeError`` listing the failures, if any."""
        if not self.ok:
            f = self.failed
            raise RuntimeError(f"{len(f)} cutout(s) failed, e.g. OBJID {f['OBJID'].iloc[0]}: "
                               f"{f['ERROR'].iloc[0]}; re-run download_cutouts to retry them")

    def __str__(self) -> str:
        c = self.counts()
        return (f"DownloadReport({len(self.table)} objects: {c['downloaded']} downloaded, "
                f"{c['cached']} cached, {c['failed']} failed)")


def _fetch(url: str, path: Path, *, retries: int, timeout: float, backoff: float,
           bands: str) -> tuple[str, int, str]:
    """Download ``url`` to ``path`` with retries; return ``(status, attempts, error)``."""
    part = path.with_name(path.name + ".part")
    error = ""
    attempts = 0
    for attempt in range(retries + 1):
        attempts = attempt + 1
        retry = True
        try:
            req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
                expected = resp.headers.get("Content-Length")
            if expected is not None and len(body) != int(expected):
                raise ValueError(f"truncated response: {len(body)} of {expected} bytes")
            part.write_bytes(body)
            read_cutout_fits(part, bands=bands)  # raises on corrupt / truncated FITS
            os.replace(part, path)
            return "downloaded", attempts, ""
        except urllib.error.HTTPError as err:
            error = f"HTTP {err.code} {err.reason}"
            err.close()
            retry = err.code >= 500 or err.code in (408, 429)
        except CutoutNoOverlapError as err:
            error = str(err)
            retry = False
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError,
                ConnectionError, ValueError) as err:
            error = f"{type(err).__name__}: {err}"
        finally:
            if part.exists():
                part.unlink()
        if not retry:
            break
        if attempt < retries:
            time.sleep(backoff * 2**attempt)
    return "failed", attempts, error


def download_cutouts(
    ra: Sequence[float] | np.ndarray,
    dec: Sequence[float] | np.ndarray,
    objid: Sequence[int] | np.ndarray,
    cache_dir: str | os.PathLike,
    *,
    base_url: str = CUTOUT_URL,
    layer: str = "ls-dr10",
    pixscale: float = PIXSCALE,
    size: int = SIZE,
    bands: str = "griz",
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    workers: int = 4,
    overwrite: bool = False,
    progress: bool = True,
) -> DownloadReport:
    """Download FITS cutouts into ``cache_dir``, one file per OBJID, resuming from the cache.

    Parameters
    ----------
    ra, dec : array_like, shape (N,)
        Centres, degrees.
    objid : array_like of int, shape (N,)
        Unique object identifiers; the file is ``<cache_dir>/<OBJID>.fits``.
    cache_dir : str or Path
        Created if needed.
    base_url, layer, pixscale, size, bands
        As in :func:`cutout_url`.
    retries : int
        Extra attempts after the first for server errors (HTTP 5xx, 408, 429), time-outs,
        dropped connections and truncated or corrupt files; client errors (other 4xx) and
        "no overlap" answers are not retried.
    timeout : float
        Seconds per request.
    backoff : float
        Wait ``backoff * 2**k`` seconds before retry ``k + 1``.
    workers : int
        Parallel requests (be gentle with a public service).
    overwrite : bool
        Download even when a valid cached file exists.
    progress : bool
        tqdm bar over objects.

    Returns
    -------
    DownloadReport
        Every object's status; failures are also announced with a ``UserWarning``.

    Raises
    ------
    ValueError
        Mismatched lengths, invalid positions, or duplicate / non-integer OBJIDs.
    """
    from tqdm.auto import tqdm

    objid_a = np.asarray(objid)
    if objid_a.dtype.kind not in "iu":
        raise ValueError(f"objid must be integers (they name the cache files), got dtype "
                         f"{objid_a.dtype}")
    n = len(objid_a)
    if len(ra) != n or len(dec) != n:
        raise ValueError(f"ra, dec and objid must have the same length, got {len(ra)}, "
                         f"{len(dec)}, {n}")
    uniq, counts = np.unique(objid_a, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"objid has duplicates (e.g. {uniq[counts > 1][:5].tolist()}); each "
                         f"object needs its own cache file")
    if retries < 0 or workers < 1 or not timeout > 0:
        raise ValueError("need retries >= 0, workers >= 1 and timeout > 0")
    urls = cutout_url(np.asarray(ra, float), np.asarray(dec, float), layer=layer,
                      pixscale=pixscale, size=size, bands=bands, base_url=base_url) if n else []
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    paths = cached_paths(objid_a, cache)

    status = np.empty(n, dtype=object)
    attempts = np.zeros(n, dtype=np.int64)
    errors = np.full(n, "", dtype=object)
    todo = []
    for k, p in enumerate(paths):  # resume: a valid cached file needs no request
        if p.exists() and not overwrite:
            try:
                read_cutout_fits(p, bands=bands)
                status[k] = "cached"
                continue
            except ValueError:
                pass  # truncated / corrupt: fetch again
        todo.append(k)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_fetch, urls[k], paths[k], retries=retries, timeout=timeout,
                               backoff=backoff, bands=bands): k for k in todo}
        for fut in tqdm(as_completed(futures), total=len(futures), desc="cutouts",
                        unit="obj", disable=not progress or None):
            k = futures[fut]
            status[k], attempts[k], errors[k] = fut.result()

    table = pd.DataFrame({
        "OBJID": objid_a.astype(np.int64),
        "RA": np.asarray(ra, dtype=np.float64),
        "DEC": np.asarray(dec, dtype=np.float64),
        "URL": urls,
        "PATH": [str(p) for p in paths],
        "STATUS": status.astype(str),
        "ATTEMPTS": attempts,
        "ERROR": errors.astype(str),
    })
    report = DownloadReport(table)
    if not report.ok:
        warnings.warn(f"{len(report.failed)} of {n} cutout downloads failed (see "
                      f"DownloadReport.failed); re-running resumes and retries only those",
                      UserWarning, stacklevel=2)
    return report


# --------------------------------------------------------------------------------------
# FITS files -> HDF5 store
# --------------------------------------------------------------------------------------
def _sky_sigma(images: np.ndarray) -> np.ndarray:
    """Robust per-band pixel noise (astropy ``mad_std``), nanomaggies, shape (B, 4)."""
    from astropy.stats import mad_std

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN planes -> NaN
        return mad_std(images, axis=(2, 3), ignore_nan=True).astype(np.float32)


def fits_to_store(
    paths: Sequence[str | os.PathLike],
    objid: Sequence[int] | np.ndarray,
    store_path: str | os.PathLike,
    *,
    chunk_size: int = 256,
    bands: str = "griz",
    overwrite: bool = False,
    on_error: str = "raise",
    progress: bool = True,
) -> pd.DataFrame:
    """Convert cutout FITS files into a :class:`~photozsom.embed.store.CutoutStore`, in chunks.

    Parameters
    ----------
    paths : sequence of str or Path, length N
        FITS cutouts (e.g. :func:`cached_paths`).
    objid : array_like of int, shape (N,)
        OBJID of each file.
    store_path : str or Path
        HDF5 file to create (append to it if it exists and ``overwrite`` is False; an OBJID
        the store already holds, or one repeated in ``objid``, is refused rather than stored
        twice).
    chunk_size : int
        Files read and appended per step (bounds memory to ``chunk_size`` cutouts).
    bands : str
        Passed to :func:`read_cutout_fits`.
    overwrite : bool
        Replace an existing store instead of appending to it.
    on_error : {"raise", "skip"}
        A corrupt, truncated, missing or wrongly-sized file raises ``ValueError`` naming it
        (``"raise"``) or is left out and listed in the returned table (``"skip"``).
    progress : bool
        tqdm bar over chunks.

    Returns
    -------
    DataFrame
        The skipped files: columns ``OBJID, PATH, ERROR`` (empty when all were written).
        Per-band sky noise (``sigma``) is estimated with astropy's ``mad_std`` over each plane.
    """
    from tqdm.auto import tqdm

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    paths = [Path(p) for p in paths]
    objid_a = np.asarray(objid)
    if objid_a.dtype.kind not in "iu" or objid_a.shape != (len(paths),):
        raise ValueError(f"objid must be {len(paths)} integers, one per path; got dtype "
                         f"{objid_a.dtype}, shape {objid_a.shape}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    uniq, counts = np.unique(objid_a, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"objid has duplicates (e.g. {uniq[counts > 1][:5].tolist()}); each "
                         f"cutout needs its own OBJID")
    store_path = Path(store_path)
    store: CutoutStore | None = None
    if store_path.exists() and not overwrite:
        store = CutoutStore(store_path, "a")
        held = np.intersect1d(store.objid, objid_a)
        if held.size:
            store.close()
            raise ValueError(f"{store_path} already holds {held.size} of these OBJIDs (e.g. "
                             f"{held[:5].tolist()}); pass overwrite=True to rebuild the store, "
                             f"or leave those files out")
    skipped: list[dict] = []
    try:
        starts = range(0, len(paths), chunk_size)
        for lo in tqdm(starts, total=len(starts), desc="cutouts -> store", unit="chunk",
                       disable=not progress or None):
            imgs, masks, ids = [], [], []
            for p, o in zip(paths[lo:lo + chunk_size], objid_a[lo:lo + chunk_size], strict=True):
                try:
                    im, m = read_cutout_fits(p, bands=bands)
                    size = store.size if store is not None else None
                    if size is None and imgs:
                        size = imgs[0].shape[-1]
                    if im.shape[1] != im.shape[2] or (size is not None and im.shape[-1] != size):
                        raise ValueError(f"{p}: cutout is {im.shape[1]}x{im.shape[2]} pixels, "
                                         f"the store holds {size}x{size}")
                except (ValueError, FileNotFoundError) as err:
                    if on_error == "raise":
                        raise ValueError(str(err)) from err
                    skipped.append({"OBJID": int(o), "PATH": str(p), "ERROR": str(err)})
                    continue
                imgs.append(im)
                masks.append(m)
                ids.append(int(o))
            if not imgs:
                continue
            images = np.stack(imgs)
            if store is None:
                store = CutoutStore.create(store_path, size=images.shape[-1], overwrite=True)
            store.append(images, np.stack(masks), np.asarray(ids, np.int64),
                         sigma=_sky_sigma(images))
    finally:
        if store is not None:
            store.close()
    if store is None:
        raise ValueError(f"none of the {len(paths)} files could be read; {store_path} was not "
                         f"written (first error: {skipped[0]['ERROR'] if skipped else 'no paths'})")
    return pd.DataFrame(skipped, columns=["OBJID", "PATH", "ERROR"])



def folder_to_store(
    objid: Sequence[int] | np.ndarray,
    cutout_dir: str | os.PathLike,
    store_path: str | os.PathLike,
    *,
    bands: str = "griz",
    overwrite: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Build a store from a folder of cutouts already on disk, one ``<OBJID>.fits`` per object.

    The folder is what :func:`download_cutouts` leaves (or any folder of cutout-service
    files named by OBJID). Objects without a file, or with an unreadable one, are left out
    of the store and listed, so none disappears silently.

    Parameters
    ----------
    objid : array_like of int, shape (N,)
        Objects wanted; the file of each is ``<cutout_dir>/<OBJID>.fits`` (:func:`cached_paths`).
    cutout_dir : str or Path
        The folder.
    store_path : str or Path
        HDF5 store to write (see :func:`fits_to_store` for ``overwrite``).
    bands : str
        Bands that were requested, used only when a file's header does not name its planes.
    overwrite : bool
        Replace an existing store.
    progress : bool
        tqdm bar over chunks.

    Returns
    -------
    DataFrame
        One row per object: ``OBJID, PATH, STATUS`` (``"stored"``, ``"missing"`` or
        ``"unreadable"``) and ``ERROR`` (why, empty when stored).

    Raises
    ------
    ValueError
        Non-integer or duplicate OBJIDs, or no readable file at all.
    """
    objid_a = np.asarray(objid)
    if objid_a.dtype.kind not in "iu":
        raise ValueError(f"objid must be integers (they name the files), got dtype {objid_a.dtype}")
    folder = Path(cutout_dir)
    if not folder.is_dir():
        raise ValueError(f"cutout folder {folder} does not exist; download the cutouts first "
                         f"(download_cutouts) or point cutout_dir at the folder holding them")
    paths = cached_paths(objid_a, folder)
    exists = np.array([p.is_file() for p in paths], dtype=bool)
    status = np.where(exists, "stored", "missing").astype(object)
    errors = np.where(exists, "", f"no file <OBJID>.fits in {folder}").astype(object)
    if not exists.any():
        raise ValueError(f"none of the {len(paths)} objects has a cutout in {folder} (files are "
                         f"named <OBJID>.fits, e.g. {paths[0].name if paths else '1.fits'})")
    found = np.flatnonzero(exists)
    skipped = fits_to_store([paths[k] for k in found], objid_a[found], store_path, bands=bands,
                            overwrite=overwrite, on_error="skip", progress=progress)
    if len(skipped):
        pos = pd.Index(objid_a.astype(np.int64)).get_indexer(skipped["OBJID"].to_numpy(np.int64))
        status[pos] = "unreadable"
        errors[pos] = skipped["ERROR"].to_numpy()
    table = pd.DataFrame({"OBJID": objid_a.astype(np.int64), "PATH": [str(p) for p in paths],
                          "STATUS": status.astype(str), "ERROR": errors.astype(str)})
    n_bad = int((table["STATUS"] != "stored").sum())
    if n_bad:
        warnings.warn(f"{n_bad} of {len(table)} objects have no usable cutout in {folder} "
                      f"(see the STATUS and ERROR columns)", UserWarning, stacklevel=2)
    return table
