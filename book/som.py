# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Spectroscopic completeness and the self-organizing map
#
# *Paper section 2, "Spectroscopic Completeness and Self Organized Maps".*
#
# A self-organizing map (Kohonen 1982) learns a grid of *prototype* vectors from data,
# arranged so that neighbouring cells hold similar prototypes. Every galaxy belongs to the
# cell whose prototype is nearest (its *best-matching unit*). Trained on a **random,
# representative** sample of galaxies, the map divides colour space into cells that each
# hold a comparable share of the galaxy population; mapping the **spectroscopic** sample into
# the same cells then shows where spectroscopy is dense and where it is thin (Masters et al.
# 2015).
#
# As in the paper, the SOM is trained on catalogue photometry of the southern (DECam)
# footprint, which has i-band: the features are the colours g-r, r-i, i-z, z-W1, W1-W2 and the
# r-band magnitude of extinction-corrected asinh magnitudes
# (`photozsom.features.som_features`), standardised with statistics stored in the model so
# that any user's catalogue goes through exactly the same transform.
#
# `photozsom.som.SOM` is a batch SOM written in torch (a GPU when present; 2 CPU cores here);
# `backend="minisom"` gives the familiar minisom implementation behind the same API.

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0
som_shape = None  # (rows, cols); None: 12x12 at ci scale, 24x24 at default scale
epochs = None  # passes over the random sample; None: 10 (ci) / 30 (default)
backend = "torch"  # "torch" or "minisom"

# %%
import time

import numpy as np
import pandas as pd

from photozsom import plots
from photozsom.book import outputs, publish_figure
from photozsom.features import SOM_FEATURES, som_features
from photozsom.rundir import RunDir
from photozsom.som import SOM

plots.style()
run = RunDir(data_dir)
som_shape = tuple(som_shape or ((12, 12) if scale == "ci" else (24, 24)))
epochs = int(epochs or (10 if scale == "ci" else 30))

# %% [markdown]
# ## Train on the random sample
#
# Only southern galaxies with every feature measured train the map. Northern galaxies (no
# i-band) have no SOM cell; the flag (chapter *Flagging*) says so for them rather than
# dropping them.

# %%
random = run.random()
X_rand, ok_rand = som_features(random, name="random.parquet")
south = (random["PHOTSYS"] == "S").to_numpy()
train = ok_rand & south
print(
    f"random sample: {len(random):,} galaxies, {train.sum():,} southern with all SOM features "
    f"({(~ok_rand & south).sum():,} southern rows lack a band)"
)
t0 = time.time()
som = SOM(
    shape=som_shape,
    n_features=X_rand.shape[1],
    backend=backend,
    feature_names=SOM_FEATURES,
    seed=seed,
)
som.fit(X_rand[train], epochs=epochs)
print(
    f"{backend} SOM {som_shape} trained in {time.time() - t0:.1f} s on {train.sum():,} galaxies"
)
print(
    f"quantization error {som.quantization_error(X_rand[train]):.3f} (standardised units), "
    f"topographic error {som.topographic_error(X_rand[train]):.3f}"
)
som.save(run.path("som", "som.pt"))

# %% [markdown]
# ## Map the spectroscopic sample into the cells

# %%
spec = run.spec()
X_spec, ok_spec = som_features(spec, name="spec.parquet")
cells, dist = som.predict_with_distances(X_spec, nan_policy="mark")
spec_cells = pd.DataFrame(
    {"OBJID": spec["OBJID"].to_numpy(), "CELL": cells, "DIST": dist}
)
spec_cells.to_parquet(run.path("som", "spec_cells.parquet"), index=False)
print(
    f"{(cells >= 0).sum():,} of {len(spec):,} spectroscopic galaxies have a SOM cell "
    f"({(cells < 0).sum():,} northern or incomplete rows: cell -1)"
)

n_random = som.occupancy(X_rand[train])
n_spec = np.bincount(cells[cells >= 0], minlength=som.n_cells)
coverage = pd.DataFrame({"random": n_random, "spec": n_spec})
coverage["spec_per_1000_random"] = (
    1000 * coverage["spec"] / coverage["random"].where(coverage["random"] > 0)
)
coverage.describe().round(2)

# %% [markdown]
# ## Occupancy maps: where spectroscopy is thin
#
# The random sample spreads fairly evenly over the map (a SOM spends its cells where the data
# are). The spectroscopic sample does not: it piles up in the cells of bright, low-redshift
# galaxies and of the colour-selected LRG/ELG targets, and leaves whole regions nearly
# empty. The ratio (bottom right) is the spectroscopic completeness of each cell.

# %%
z_cell = (
    pd.Series(spec["Z"].to_numpy()[cells >= 0]).groupby(cells[cells >= 0]).mean()
)
maps = {
    "log10 random-sample count": np.log10(np.maximum(n_random, 0.5)),
    "log10 spectroscopic count": np.log10(np.maximum(n_spec, 0.5)),
    "mean spectroscopic redshift": z_cell.reindex(range(som.n_cells)).to_numpy(),
    "spectra per 1000 random galaxies": coverage["spec_per_1000_random"].to_numpy(),
}
fig = plots.som_maps(maps, som.shape, clip=(1, 99))
publish_figure("fig_occupancy", fig, run.figure("som_occupancy.png"))

# %% [markdown]
# ```{glue:figure} fig_occupancy
# :name: "figure-som-occupancy"
#
# The SOM trained on the random sample. Top: number of random-sample (left) and spectroscopic
# (right) galaxies per cell, log scale. Bottom: mean spectroscopic redshift per cell (left)
# and the spectroscopic completeness, spectra per 1000 random galaxies (right). Grey cells
# hold no spectroscopic galaxy.
# ```

# %%
thin = coverage.sort_values("spec_per_1000_random").head(10)
print(
    f"{(n_spec == 0).sum()} of {som.n_cells} cells hold no spectroscopic galaxy; "
    f"{(n_spec < 10).sum()} hold fewer than 10. The ten least covered cells:"
)
thin

# %% [markdown]
# ## What this chapter wrote

# %%
outputs(run.path("som"), run.figure("som_occupancy.png"))
