"""Cutout URLs, the cached downloader (against a local HTTP server), the FITS reader, the store."""

from __future__ import annotations

import urllib.parse
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _fits_server import FitsServer
from astropy.io import fits
from astropy.stats import mad_std

from photozsom.data import cutouts
from photozsom.embed.store import CutoutStore

SIZE = 8


def _cutout_bytes(tmp_path: Path, bands: str, seed: int, *, keywords: bool = True) -> bytes:
    """A cutout-service-like FITS file: (n_bands, SIZE, SIZE) float32 with BAND<k> keywords."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 0.01, size=(len(bands), SIZE, SIZE)).astype(np.float32)
    data += np.arange(1, len(bands) + 1, dtype=np.float32)[:, None, None]  # band k ~ k+1 nmgy
    hdu = fits.PrimaryHDU(data)
    if keywords:
        hdu.header["BANDS"] = bands
        for i, b in enumerate(bands):
            hdu.header[f"BAND{i}"] = b
    path = tmp_path / f"tmp_{seed}_{bands}.fits"
    hdu.writeto(path, overwrite=True)
    return path.read_bytes()


# ---------------------------------------------------------------------------- URLs
def test_cutout_url_has_the_service_parameters():
    url = cutouts.cutout_url(150.1, 2.2)
    parsed = urllib.parse.urlparse(url)
    assert f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == cutouts.CUTOUT_URL
    q = urllib.parse.parse_qs(parsed.query)
    assert float(q["ra"][0]) == pytest.approx(150.1, abs=1e-7)
    assert float(q["dec"][0]) == pytest.approx(2.2, abs=1e-7)
    assert q["layer"] == ["ls-dr10"] and q["pixscale"] == ["0.262"]
    assert q["size"] == ["160"] and q["bands"] == ["griz"]


def test_cutout_url_vectorised_and_base_url_is_a_parameter():
    urls = cutouts.cutout_url(np.array([1.0, 2.0]), np.array([-3.0, 4.0]),
                              base_url="http://127.0.0.1:1/c.fits", size=64)
    assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:1/c.fits?") for u in urls)
    assert "size=64" in urls[1] and "dec=4.0000000" in urls[1]


def test_cutout_url_rejects_nan_position():
    with pytest.raises(ValueError, match="invalid position"):
        cutouts.cutout_url(np.array([1.0, np.nan]), np.array([0.0, 0.0]))


# ---------------------------------------------------------------------------- reader
def test_read_cutout_fits_south_returns_known_planes(tmp_path):
    p = tmp_path / "s.fits"
    p.write_bytes(_cutout_bytes(tmp_path, "griz", 0))
    with fits.open(p) as h:
        truth = h[0].data.astype(np.float32)
    img, mask = cutouts.read_cutout_fits(p)
    assert img.dtype == np.float32 and img.shape == (4, SIZE, SIZE)
    np.testing.assert_array_equal(img, truth)
    assert mask.tolist() == [True, True, True, True]


def test_read_cutout_fits_north_grz_gets_nan_i_band_and_false_mask(tmp_path):
    p = tmp_path / "n.fits"
    p.write_bytes(_cutout_bytes(tmp_path, "grz", 1))
    with fits.open(p) as h:
        truth = h[0].data
    img, mask = cutouts.read_cutout_fits(p)
    assert mask.tolist() == [True, True, False, True]
    assert np.isnan(img[2]).all()
    np.testing.assert_array_equal(img[[0, 1, 3]], truth)  # g, r, z land in planes 0, 1, 3


def test_read_cutout_fits_band_order_follows_header_not_position(tmp_path):
    data = np.stack([np.full((SIZE, SIZE), v, np.float32) for v in (3.0, 1.0)])  # z then g
    hdu = fits.PrimaryHDU(data)
    hdu.header["BAND0"], hdu.header["BAND1"] = "z", "g"
    hdu.writeto(tmp_path / "zg.fits")
    img, mask = cutouts.read_cutout_fits(tmp_path / "zg.fits")
    assert mask.tolist() == [True, False, False, True]
    assert img[0, 0, 0] == 1.0 and img[3, 0, 0] == 3.0


def test_read_cutout_fits_all_zero_plane_is_masked(tmp_path):
    data = np.ones((4, SIZE, SIZE), np.float32)
    data[2] = 0.0  # what the service returns where a band has no coverage
    hdu = fits.PrimaryHDU(data)
    hdu.header["BANDS"] = "griz"
    hdu.writeto(tmp_path / "z.fits")
    img, mask = cutouts.read_cutout_fits(tmp_path / "z.fits")
    assert mask.tolist() == [True, True, False, True] and np.isnan(img[2]).all()


def test_read_cutout_fits_truncated_file_names_the_file(tmp_path):
    full = _cutout_bytes(tmp_path, "griz", 2)
    p = tmp_path / "trunc.fits"
    p.write_bytes(full[: len(full) - 1500])
    with pytest.raises(ValueError, match=r"trunc\.fits.*truncated"):
        cutouts.read_cutout_fits(p)


def test_read_cutout_fits_not_fits_names_the_file(tmp_path):
    p = tmp_path / "page.fits"
    p.write_text("<html>Internal Server Error</html>")
    with pytest.raises(ValueError, match=r"page\.fits is not a readable FITS file"):
        cutouts.read_cutout_fits(p)


def test_read_cutout_fits_without_band_keywords_needs_matching_request(tmp_path):
    p = tmp_path / "nokw.fits"
    p.write_bytes(_cutout_bytes(tmp_path, "grz", 3, keywords=False))
    with pytest.raises(ValueError, match="cannot tell which bands"):
        cutouts.read_cutout_fits(p)  # 3 planes, 'griz' requested: ambiguous
    _, mask = cutouts.read_cutout_fits(p, bands="grz")
    assert mask.tolist() == [True, True, False, True]


# ---------------------------------------------------------------------------- local server
class _Server(FitsServer):
    """Serves /cutout.fits?ra=...: behaviour chosen per object by the integer part of ra."""

    def __init__(self, files: dict[int, bytes], behaviour: dict[int, str]):
        self.files = files
        self.behaviour = behaviour
        self.hits: dict[int, int] = {}
        super().__init__()

    def respond(self, q):
        key = int(float(q["ra"]))
        with self.lock:
            self.hits[key] = self.hits.get(key, 0) + 1
            nhit = self.hits[key]
        mode = self.behaviour.get(key, "ok")
        if mode == "500" or (mode == "500-then-ok" and nhit == 1):
            return 500, "Internal Server Error"
        if mode == "404":
            return 404, "Not Found"
        body = self.files[key]
        if mode == "truncated":
            body = body[: len(body) - 1500]  # a short FITS file, honest Content-Length
        return 200, body


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(behaviour: dict[int, str], n: int = 6) -> _Server:
        files = {k: _cutout_bytes(tmp_path, "griz" if k % 2 == 0 else "grz", k) for k in range(n)}
        s = _Server(files, behaviour)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()
        s.thread.join(timeout=5)


def _download(server, tmp_path, keys, **kw):
    ra = np.array(keys, float) + 0.5
    kw.setdefault("retries", 2)
    return cutouts.download_cutouts(ra, np.zeros(len(keys)), np.array(keys) + 1000,
                                    tmp_path / "cache", base_url=server.url, backoff=0.001,
                                    timeout=5, workers=2, progress=False, **kw)


def test_download_retries_500_and_reports_every_failure(serve, tmp_path):
    server = serve({1: "500", 2: "truncated", 3: "500-then-ok", 4: "404"})
    with pytest.warns(UserWarning, match="3 of 6 cutout downloads failed"):
        report = _download(server, tmp_path, [0, 1, 2, 3, 4, 5], retries=2)
    t = report.table.set_index("OBJID")
    assert t.loc[[1000, 1003, 1005], "STATUS"].tolist() == ["downloaded"] * 3
    assert t.loc[[1001, 1002, 1004], "STATUS"].tolist() == ["failed"] * 3
    # a server error is retried: 1 + retries attempts, all seen by the server
    assert t.loc[1001, "ATTEMPTS"] == 3 and server.hits[1] == 3
    assert "HTTP 500" in t.loc[1001, "ERROR"]
    # a truncated file is retried too, and the error says why
    assert t.loc[1002, "ATTEMPTS"] == 3 and "truncated" in t.loc[1002, "ERROR"]
    # one 500 then success: downloaded on the second attempt
    assert t.loc[1003, "ATTEMPTS"] == 2 and server.hits[3] == 2
    # a client error is final
    assert t.loc[1004, "ATTEMPTS"] == 1 and "HTTP 404" in t.loc[1004, "ERROR"]
    assert not report.ok and sorted(report.failed["OBJID"]) == [1001, 1002, 1004]
    with pytest.raises(RuntimeError, match="3 cutout"):
        report.raise_if_failed()
    # nothing half-written is left in the cache
    cache = tmp_path / "cache"
    assert sorted(p.name for p in cache.iterdir()) == ["1000.fits", "1003.fits", "1005.fits"]
    # the cached bytes are exactly what the server sent
    assert (cache / "1005.fits").read_bytes() == server.files[5]


def test_download_resumes_skips_valid_cache_and_refetches_truncated(serve, tmp_path):
    server = serve({})
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "1000.fits").write_bytes(server.files[0])                 # valid: no request
    (cache / "1001.fits").write_bytes(server.files[1][:-1500])         # truncated: refetch
    (cache / "1002.fits").write_text("garbage")                        # corrupt: refetch
    report = _download(server, tmp_path, [0, 1, 2, 3])
    assert report.ok
    assert report.table["STATUS"].tolist() == ["cached", "downloaded", "downloaded", "downloaded"]
    assert 0 not in server.hits and server.hits[1] == 1 and server.hits[2] == 1
    assert (cache / "1001.fits").read_bytes() == server.files[1]
    # a second run makes no request at all
    before = dict(server.hits)
    again = _download(server, tmp_path, [0, 1, 2, 3])
    assert again.counts() == {"downloaded": 0, "cached": 4, "failed": 0}
    assert server.hits == before


def test_download_input_errors():
    with pytest.raises(ValueError, match="duplicates"):
        cutouts.download_cutouts([1, 2], [0, 0], [7, 7], "unused", progress=False)
    with pytest.raises(ValueError, match="same length"):
        cutouts.download_cutouts([1, 2], [0], [7, 8], "unused", progress=False)
    with pytest.raises(ValueError, match="objid must be integers"):
        cutouts.download_cutouts([1], [0], ["a"], "unused", progress=False)


# ---------------------------------------------------------------------------- FITS -> store
def test_fits_to_store_round_trip_in_chunks(serve, tmp_path):
    server = serve({})
    report = _download(server, tmp_path, list(range(6)))
    paths = cutouts.cached_paths(report.table["OBJID"], tmp_path / "cache")
    skipped = cutouts.fits_to_store(paths, report.table["OBJID"].to_numpy(), tmp_path / "c.h5",
                                    chunk_size=4, progress=False)
    assert len(skipped) == 0
    images, masks = cutouts.read_cutouts(paths)
    with CutoutStore(tmp_path / "c.h5") as store:
        assert len(store) == 6 and store.size == SIZE
        img, msk, ids = store.read(slice(None))
        sigma = store.sigma()
    np.testing.assert_array_equal(ids, np.arange(1000, 1006))
    np.testing.assert_array_equal(img, images)
    np.testing.assert_array_equal(msk, masks)
    # odd keys were served g, r, z only: no i-band
    assert masks[:, 2].tolist() == [True, False, True, False, True, False]
    # sigma is astropy's mad_std of each plane; NaN for the missing i-band
    expected = mad_std(images[masks], axis=(1, 2))  # [n_planes_with_data]
    np.testing.assert_allclose(sigma[masks], expected, rtol=1e-5)
    assert np.isnan(sigma[~masks]).all()
    assert np.all((sigma[masks] > 0.005) & (sigma[masks] < 0.02))  # injected noise 0.01


def test_fits_to_store_corrupt_file_raises_or_is_listed(tmp_path):
    good = tmp_path / "1.fits"
    good.write_bytes(_cutout_bytes(tmp_path, "griz", 4))
    bad = tmp_path / "2.fits"
    bad.write_bytes(good.read_bytes()[:-1500])
    with pytest.raises(ValueError, match=r"2\.fits"):
        cutouts.fits_to_store([good, bad], np.array([1, 2]), tmp_path / "a.h5", progress=False)
    skipped = cutouts.fits_to_store([good, bad], np.array([1, 2]), tmp_path / "b.h5",
                                    on_error="skip", progress=False, overwrite=True)
    assert skipped["OBJID"].tolist() == [2] and "truncated" in skipped["ERROR"].iloc[0]
    with CutoutStore(tmp_path / "b.h5") as store:
        assert store.objid.tolist() == [1]


def test_fits_to_store_rejects_size_mismatch(tmp_path):
    a = tmp_path / "a.fits"
    a.write_bytes(_cutout_bytes(tmp_path, "griz", 5))
    b = tmp_path / "b.fits"
    fits.PrimaryHDU(np.ones((4, SIZE + 2, SIZE + 2), np.float32)).writeto(b)
    with pytest.raises(ValueError, match=r"b\.fits.*10x10"):
        cutouts.fits_to_store([a, b], np.array([1, 2]), tmp_path / "s.h5", progress=False)


def test_only_download_cutouts_touches_the_network(monkeypatch, tmp_path):
    import urllib.request

    def boom(*a, **k):
        raise AssertionError("unexpected network request")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    p = tmp_path / "1.fits"
    p.write_bytes(_cutout_bytes(tmp_path, "griz", 6))
    cutouts.cutout_url(np.arange(3.0), np.zeros(3))
    cutouts.read_cutout_fits(p)
    cutouts.fits_to_store([p], np.array([1]), tmp_path / "s.h5", progress=False)
    # everything cached: the downloader itself makes no request either
    rep = cutouts.download_cutouts([1.0], [0.0], [1], tmp_path, progress=False)
    assert rep.counts()["cached"] == 1


def test_reading_cutouts_from_threads_keeps_warnings_and_verdicts(tmp_path):
    """FITS reads in a download pool must not race on the process-wide warnings state.

    ``warnings.catch_warnings`` in several threads at once restores the wrong state and
    silences every later warning (that is how a failed-download warning once went missing);
    a truncation verdict taken from a warning could also land on another thread's file.
    """
    good, short = tmp_path / "good.fits", tmp_path / "short.fits"
    good.write_bytes(_cutout_bytes(tmp_path, "griz", 7))
    short.write_bytes(good.read_bytes()[:-1500])

    def verdict(p):
        try:
            cutouts.read_cutout_fits(p)
            return "ok"
        except ValueError as err:
            return "truncated" if "truncated" in str(err) else str(err)

    def pool_then_warn():
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(verdict, [good, short] * 40))
        warnings.warn("after the pool", UserWarning)
        return got

    for _ in range(5):
        with pytest.warns(UserWarning, match="after the pool") as record:
            got = pool_then_warn()
        assert got == ["ok", "truncated"] * 40
        assert not any("File may have been truncated" in str(w.message) for w in record)
