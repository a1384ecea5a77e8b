"""CutoutStore: append/read round trip, OBJID look-up, chunked iteration and bad shapes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from photozsom.embed.store import CutoutStore

H = 6


def _batch(rng, n, start):
    images = rng.normal(size=(n, 4, H, H)).astype(np.float32)
    mask = rng.random((n, 4)) > 0.2
    images[~mask] = np.nan
    objid = np.arange(start, start + n, dtype=np.int64) * 11 + 5
    sigma = rng.uniform(0.01, 0.1, (n, 4)).astype(np.float32)
    return images, mask, objid, sigma


@pytest.fixture
def filled(tmp_path):
    rng = np.random.default_rng(0)
    a = _batch(rng, 7, 0)
    b = _batch(rng, 12, 7)
    with CutoutStore.create(tmp_path / "c.h5", size=H) as st:
        st.append(a[0], a[1], a[2], sigma=a[3])
        st.append(b[0], b[1], b[2])  # no sigma: NaN
    full = [np.concatenate([x, y]) for x, y in zip(a[:3], b[:3], strict=True)]
    return tmp_path / "c.h5", full, a[3]


def test_append_read_round_trip(filled):
    path, (images, mask, objid), sigma = filled
    with CutoutStore(path) as st:
        assert len(st) == 19 and st.size == H and st.pixscale == pytest.approx(0.262)
        img, m, ids = st.read(slice(None))
        np.testing.assert_array_equal(img, images)  # NaNs in the same places
        np.testing.assert_array_equal(m, mask)
        np.testing.assert_array_equal(ids, objid)
        s = st.sigma()
        np.testing.assert_array_equal(s[:7], sigma)
        assert np.isnan(s[7:]).all()
    with h5py.File(path) as h5:  # the documented layout, read with plain h5py
        assert h5["images"].dtype == np.float32 and h5["images"].shape == (19, 4, H, H)
        assert h5.attrs["bands"] == "g,r,i,z"


def test_read_fancy_index_matches_numpy(filled):
    path, (images, mask, objid), _ = filled
    rows = np.array([15, 2, 2, 18, 0])  # unsorted, repeated
    with CutoutStore(path) as st:
        img, m, ids = st.read(rows)
        with pytest.raises(IndexError):
            st.read(np.array([19]))
    np.testing.assert_array_equal(img, images[rows])
    np.testing.assert_array_equal(m, mask[rows])
    np.testing.assert_array_equal(ids, objid[rows])


def test_sparse_rows_and_sigma_by_index_match_numpy(filled):
    path, (images, _, objid), sigma = filled
    sparse = np.array([18, 0, 18])        # two runs: rows 0 and 18 lie > one chunk apart
    dense = np.array([5, 3, 4, 6])        # one run: one contiguous read
    with CutoutStore(path) as st:
        full_sigma = st.sigma()
        for rows in (sparse, dense):
            img, _, ids = st.read(rows)
            np.testing.assert_array_equal(img, images[rows])
            np.testing.assert_array_equal(ids, objid[rows])
            np.testing.assert_array_equal(st.sigma(rows), full_sigma[rows])
        np.testing.assert_array_equal(st.sigma(np.array([6, 0]))[:, :], sigma[[6, 0]])
        with pytest.raises(IndexError):
            st.sigma(np.array([-1]))


def test_scattered_reads_in_runs_and_capped_slices_match_numpy(filled, monkeypatch):
    path, (images, mask, objid), _ = filled
    rng = np.random.default_rng(4)
    with CutoutStore(path) as st:
        # every run length and gap: random subsets with repeats, in random order
        for _ in range(20):
            rows = rng.integers(0, 19, size=rng.integers(1, 30))
            img, m, ids = st.read(rows)
            np.testing.assert_array_equal(img, images[rows])
            np.testing.assert_array_equal(m, mask[rows])
            np.testing.assert_array_equal(ids, objid[rows])
        # a slice may hold at most MAX_READ_BYTES: with room for 2 images per slice, a read
        # of 7 neighbouring rows takes 4 slices and still returns exactly those rows
        row_bytes = 4 * H * H * 4
        monkeypatch.setattr(CutoutStore, "MAX_READ_BYTES", 2 * row_bytes)
        calls = []
        real = st._h5["images"].__class__.__getitem__

        def spy(ds, key):
            if ds.name == "/images" and isinstance(key, slice):
                calls.append(key.stop - key.start)
            return real(ds, key)

        monkeypatch.setattr(st._h5["images"].__class__, "__getitem__", spy)
        rows = np.array([9, 3, 4, 5, 6, 7, 8, 3])
        np.testing.assert_array_equal(st.read(rows)[0], images[rows])
        assert calls and max(calls) <= 2 and sum(calls) == 7


def test_rows_of_finds_objids_and_names_missing(filled):
    path, (_, _, objid), _ = filled
    query = objid[[9, 0, 18, 3]]
    with CutoutStore(path) as st:
        rows = st.rows_of(query)
        np.testing.assert_array_equal(st.objid[rows], query)
        with pytest.raises(KeyError, match=r"1 OBJID.*999"):
            st.rows_of(np.array([objid[1], 999]))


def test_iter_chunks_covers_every_row_once_in_order(filled):
    path, (images, _, objid), _ = filled
    with CutoutStore(path) as st:
        got = list(st.iter_chunks(5))
        assert [(s.start, s.stop) for s, _ in got] == [(0, 5), (5, 10), (10, 15), (15, 19)]
        np.testing.assert_array_equal(np.concatenate([b[2] for _, b in got]), objid)
        np.testing.assert_array_equal(np.concatenate([b[0] for _, b in got]), images)
        assert [s.start for s, _ in st.iter_chunks(8, start=10)] == [10, 18]
        with pytest.raises(ValueError, match="chunk must be >= 1"):
            list(st.iter_chunks(0))


def test_bad_shapes_are_rejected(tmp_path):
    rng = np.random.default_rng(1)
    images, mask, objid, _ = _batch(rng, 3, 0)
    with CutoutStore.create(tmp_path / "s.h5", size=H) as st:
        with pytest.raises(ValueError, match=rf"images must have shape \(B, 4, {H}, {H}\)"):
            st.append(images[:, :, :-1, :-1], mask, objid)
        with pytest.raises(ValueError, match=r"images must have shape"):
            st.append(images[:, :3], mask, objid)  # three bands
        with pytest.raises(ValueError, match=r"band_mask must be \(3, 4\)"):
            st.append(images, mask[:2], objid)
        with pytest.raises(ValueError, match=r"objid \(3,\)"):
            st.append(images, mask, objid[:2])
        assert len(st) == 0  # nothing half-appended


def test_create_open_errors(tmp_path):
    CutoutStore.create(tmp_path / "s.h5", size=4).close()
    with pytest.raises(FileExistsError):
        CutoutStore.create(tmp_path / "s.h5", size=4)
    with pytest.raises(ValueError, match="size must be a positive"):
        CutoutStore.create(tmp_path / "t.h5", size=0)
    with pytest.raises(FileNotFoundError):
        CutoutStore(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"junk\.h5 is not a readable HDF5"):
        CutoutStore(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5["x"] = [1]
    with pytest.raises(ValueError, match="lacks dataset /images"):
        CutoutStore(tmp_path / "other.h5")
    with pytest.raises(ValueError, match="mode must be"):
        CutoutStore(tmp_path / "s.h5", mode="w")


def test_pixel_scale_other_than_the_models_is_refused_unless_allowed(tmp_path):
    from photozsom.embed.store import PIXSCALE, check_pixscale

    assert check_pixscale(0.2621) == pytest.approx(0.2621)  # within the 1e-3 tolerance
    with pytest.raises(ValueError, match=r"0.2 arcsec/pixel but the embedder expects 0.262"):
        check_pixscale(0.2)
    assert check_pixscale(0.2, allow=0.2) == 0.2
    with pytest.raises(ValueError, match="allow_pixscale=0.25 was given"):
        check_pixscale(0.2, allow=0.25)
    with CutoutStore.create(tmp_path / "a.h5", size=H, pixscale=0.5) as st:
        with pytest.raises(ValueError, match=r"cutout store a.h5 has pixel scale 0.5.*"
                                             r"allow_pixscale=0.5"):
            st.check_pixscale()
        assert st.check_pixscale(allow=0.5) == 0.5
    with CutoutStore.create(tmp_path / "b.h5", size=H) as st:
        assert st.check_pixscale() == PIXSCALE
    with h5py.File(tmp_path / "b.h5", "a") as h5:  # a store written without the attribute
        del h5.attrs["pixscale"]
    with CutoutStore(tmp_path / "b.h5") as st:
        assert st.pixscale == PIXSCALE and st.check_pixscale() == PIXSCALE
    with pytest.raises(ValueError, match="pixscale must be > 0"):
        CutoutStore.create(tmp_path / "c.h5", size=H, pixscale=0.0)
