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
# `backend="minisom"` gives the familiar minisom implementation behind the same API. Its
# default is meant to match minisom's `train` in quantization error (ratio at most 1.00) at
# least 20 times faster, on the shipped DESI colours, the default sky and a Gaussian mixture;
# `python benchmarks/som.py --samples desi,sky,gmm8` measures both in one run. It
# records the distances of its own training galaxies to their prototypes, which the flag
# later uses to call a galaxy "outside the training colours".

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0
som_shape = None  # (rows, cols) of the southern map; None: the scale's preset
som_shape_north = None  # the northern map; None: the scale's preset
epochs = None  # None: the SOM's default schedule (stops when the quantization error stalls)
backend = "torch"  # "torch" or "minisom"

# %%
import numpy as np
import pandas as pd

from photozsom import plots
from photozsom.features import feature_matrix
from photozsom.workflow import pipeline
from photozsom.workflow.book import outputs, publish_figure

plots.style()
run = pipeline.Run(data_dir)

# %% [markdown]
# ## Train on the random sample
#
# `pipeline.run_som` trains one map per footprint on the random-sample galaxies with every
# feature measured. The southern (DECam) map uses the paper's features with the i-band;
# the northern (BASS/MzLS) footprint has no i-band, so it gets its own map on
# g-r, r-z, z-W1, W1-W2 and r (`photozsom.features.NORTH_SOM_FEATURES`) instead of being
# left without a cell. The flagger later picks the map of each galaxy by its `PHOTSYS`.
# The paper trains one 32×32 map on the south; the map sizes here are this book's choice
# (see "How this book differs from the paper" in the introduction).

# %%
info = pipeline.run_som(
    run,
    scale=scale,
    seed=seed,
    som_shape=som_shape,
    som_shape_north=som_shape_north,
    epochs=epochs,
    backend=backend,
)
summary = pd.DataFrame(
    {r: {k: v for k, v in info[r].items() if k != "features"} for r in ("S", "N")}
).T
summary["features"] = [", ".join(info[r].get("features", [])) for r in summary.index]
summary

# %% [markdown]
# The quantization error is the mean distance of a galaxy to its prototype and the
# topographic error the fraction of galaxies whose two nearest prototypes are not
# neighbours, both in standardised feature units.
#
# ## Map the spectroscopic sample into the cells

# %%
spec = run.spec()
random = run.random()
sc = info["spec_cells"]
has = sc["CELL"].to_numpy() >= 0
print(
    f"{has.sum():,} of {len(spec):,} spectroscopic galaxies have a SOM cell; "
    f"{(~has).sum():,} lack a feature (cell -1, kept and flagged later)"
)
som = info["maps"]["S"]
X_rand, ok_rand = feature_matrix(random, som.feature_names)
south = ok_rand & (random["PHOTSYS"] == "S").to_numpy()
n_random = som.occupancy(X_rand[south])
s_cells = sc.loc[(sc["SOM"] == "S") & has, "CELL"].to_numpy()
n_spec = np.bincount(s_cells, minlength=som.n_cells)
coverage = pd.DataFrame({"random": n_random, "spec": n_spec})
coverage["spec_per_1000_random"] = (
    1000 * coverage["spec"] / coverage["random"].where(coverage["random"] > 0)
)
coverage.describe().round(2)

# %% [markdown]
# ## Occupancy maps: where spectroscopy is thin

# %%
z_by_id = spec.set_index("OBJID")["Z"]
sel = (sc["SOM"] == "S") & has
z_cell = (
    pd.Series(z_by_id.reindex(sc.loc[sel, "OBJID"]).to_numpy())
    .groupby(sc.loc[sel, "CELL"].to_numpy())
    .mean()
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
# The southern SOM trained on the random sample. Top: number of random-sample (left) and
# spectroscopic (right) galaxies per cell, log scale. Bottom: mean spectroscopic redshift
# per cell (left) and the spectroscopic completeness, spectra per 1000 random galaxies
# (right). Grey cells hold no spectroscopic galaxy.
# ```
#
# What the maps show on this run, in numbers: how concentrated the spectroscopic sample is
# compared with the random one, and whether the best-covered cells are at low redshift.

# %%
share = np.sort(n_spec)[::-1].cumsum() / max(n_spec.sum(), 1)
k10 = int(np.ceil(0.1 * som.n_cells))
top = coverage["spec_per_1000_random"].nlargest(k10).index
bottom = coverage["spec_per_1000_random"].nsmallest(k10).index
zc = z_cell.reindex(range(som.n_cells))
print(
    f"here: the best-covered 10% of cells ({k10}) hold {share[k10 - 1]:.0%} of the "
    f"spectroscopic galaxies but {n_random[top].sum() / n_random.sum():.0%} of the random "
    f"sample; {(n_spec == 0).sum()} of {som.n_cells} cells hold no spectroscopic galaxy and "
    f"{(n_spec < 10).sum()} fewer than 10. Mean redshift of the best-covered tenth "
    f"{zc[top].mean():.2f}, of the least-covered tenth {zc[bottom].mean():.2f}."
)
coverage.sort_values("spec_per_1000_random").head(10)

# %% [markdown]
# ## What this chapter wrote

# %%
outputs(run.write("som/"), run.figure("som_occupancy.png"))
