"""One artifact convention: every saved model is a directory of arrays + versioned JSON.

For each kind: save, load, and the loaded object behaves exactly as the saved one; the
directory holds ``meta.json`` naming the kind and version and no pickled code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _catalogues import make_catalogue

from photozsom.evaluation import cells
from photozsom.features import SOM_FEATURES

RNG = np.random.default_rng(0)
X6 = RNG.normal(size=(600, 6)).astype(np.float32)
Z = RNG.uniform(0.05, 1.2, 600)


def _som():
    from photozsom.som import SOM

    return SOM((4, 4), n_features=6, feature_names=SOM_FEATURES, seed=0).fit(X6, progress=False)


def _report(som):
    c = som.predict(X6)
    return cells.report(c, Z, Z + 0.02 * RNG.standard_normal(600), RNG.uniform(size=600),
                        som.n_cells, np.bincount(c, minlength=som.n_cells), n_boot=20)


def _pdf():
    from photozsom.mdn import MDN

    m = MDN(n_inputs=6, seed=0, max_epochs=2)
    m.fit(X6[:500], Z[:500], X6[500:], Z[500:], progress=False)
    return m.predict(X6[:200])


def make_som():
    som = _som()
    return som, lambda o: o.predict(X6)


def make_mdn():
    from photozsom.mdn import MDN

    m = MDN(n_inputs=6, seed=0, max_epochs=2)
    m.fit(X6[:500], Z[:500], X6[500:], Z[500:], progress=False)
    return m, lambda o: o.predict(X6[:20]).weights


def make_random_forest():
    from photozsom.baseline import RandomForestPhotoZ

    rf = RandomForestPhotoZ(n_estimators=10, seed=0).fit(X6[:500], Z[:500], X6[500:], Z[500:])
    return rf, lambda o: o.predict(X6[:20]).weights


def make_recalibrator():
    from photozsom.calibrate import Recalibrator

    pdf = _pdf()
    rc = Recalibrator("cell").fit(pdf, Z[:200], cells=RNG.integers(0, 3, 200))
    return rc, lambda o: o.apply(pdf, cells=np.arange(200) % 3).weights


def make_cell_report():
    rep = _report(_som())
    return rep, lambda o: (o.table.select_dtypes("number").to_numpy(float), o.global_["mad"])


def make_flagger():
    from photozsom.flags import Flagger

    som = _som()
    fl = Flagger(som, _report(som), min_count=5)
    cat = make_catalogue(40, 3)
    return fl, lambda o: o.flag(cat)[["cell", "ood", "flag"]].to_numpy()


def make_regional_flagger():
    from photozsom.flags import Flagger, RegionalFlagger

    som = _som()
    fl = RegionalFlagger({"S": Flagger(som, _report(som), min_count=5)})
    cat = make_catalogue(40, 4, north_fraction=0.3)
    return fl, lambda o: o.flag(cat)[["cell", "flag"]].to_numpy()


def make_photoz_model():
    from photozsom.model import PhotoZModel

    tr, va, te = make_catalogue(400, 5), make_catalogue(100, 6), make_catalogue(30, 7)
    m = PhotoZModel("catalog", seed=0, max_epochs=2).fit(tr, tr["Z"], va, va["Z"], progress=False)
    return m, lambda o: o.predict(te).weights


def make_encoder():
    from photozsom.embed import Encoder

    imgs = (RNG.normal(size=(32, 4, 32, 32)) * 0.01).astype(np.float32)
    mask = np.ones((32, 4), bool)
    enc = Encoder(dim=8, seed=0)
    enc.fit(imgs, epochs=1, band_mask=mask)
    return enc, lambda o: o.embed(imgs[:8], mask[:8])


KINDS = {
    "som": make_som, "mdn": make_mdn, "random_forest": make_random_forest,
    "recalibrator": make_recalibrator, "cell_report": make_cell_report, "flagger": make_flagger,
    "regional_flagger": make_regional_flagger, "photoz_model": make_photoz_model,
    "encoder": make_encoder,
}


def _load(kind, path):
    from photozsom.baseline import RandomForestPhotoZ
    from photozsom.calibrate import Recalibrator
    from photozsom.embed import Encoder
    from photozsom.flags import Flagger, RegionalFlagger
    from photozsom.mdn import MDN
    from photozsom.model import PhotoZModel
    from photozsom.som import SOM

    return {"som": SOM, "mdn": MDN, "random_forest": RandomForestPhotoZ,
            "recalibrator": Recalibrator, "cell_report": cells.CellReport, "flagger": Flagger,
            "regional_flagger": RegionalFlagger, "photoz_model": PhotoZModel,
            "encoder": Encoder}[kind].load(path)


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_artifact_round_trips_without_pickle(tmp_path, kind):
    obj, behaviour = KINDS[kind]()
    path = tmp_path / kind
    obj.save(path)
    assert path.is_dir()
    meta = json.loads((path / "meta.json").read_text())
    assert meta["format"].startswith("photozsom.") and isinstance(meta["version"], int)
    for f in path.rglob("*"):
        assert f.suffix not in (".pkl", ".pickle", ".joblib", ".pt", ".pth"), f
        if f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as z:  # raises if an object array hides inside
                [z[k] for k in z.files]
    back = _load(kind, path)
    a, b = behaviour(obj), behaviour(back)
    if isinstance(a, tuple):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, equal_nan=True)
    else:
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-6, atol=1e-7,
                                   equal_nan=True)
