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
# # Flagging galaxies for users
#
# *Paper section 4, "Flagging Under Performing cells to Users", and appendix B (Figure 2).*
#
# The paper's primary goal: tell a user when the photometric redshift of *their* galaxy
# should not be trusted. `photozsom.flags.Flagger` combines the SOM with the per-cell report
# of the previous chapter and flags a galaxy when
#
# * it is **out of distribution** (`ood`): its cell holds fewer than `min_count` training
#   galaxies, or its distance to the cell's prototype is beyond the `distance_quantile` of
#   the training galaxies' distances; or
# * it is **under-performing** (`underperforming`): its cell is significantly worse than the
#   global performance on the metrics the user picks.
#
# Every input row comes back, in input order, with its `cell`, `distance`, the two flags,
# `flag` and a readable `reason`; rows that cannot be scored (no SOM features, e.g. northern
# galaxies without i-band) are flagged with that reason rather than dropped. The same is
# available on the command line: `photozsom flag my_catalogue.fits -o flagged.parquet
# --model <data_dir>/flags/flagger`.

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0
min_count = 5  # cells with fewer training galaxies are out of distribution
# distances beyond this training quantile are out of distribution
distance_quantile = 0.99
# which significant deviations count as under-performing
flag_metrics = ["mad", "eta", "pco", "bias"]

# %%
import numpy as np
import pandas as pd

from photozsom import flags, plots
from photozsom.book import outputs, publish_figure
from photozsom.datasets.store import CutoutStore
from photozsom.features import som_features
from photozsom.results import deviating_cells
from photozsom.rundir import RunDir
from photozsom.som import SOM

plots.style()
run = RunDir(data_dir)
spec = run.spec()
som = SOM.load(run.need("som", "som.pt"))
report = pd.read_parquet(run.need("cells", "report.parquet"))
train_counts = np.load(run.need("cells", "train_counts.npy"))
split = run.split().set_index("OBJID").loc[spec["OBJID"], "SPLIT"].to_numpy()

# %% [markdown]
# ## Figure 2: galaxies from cells with a significant bias
#
# One evaluated galaxy from each of the 16 cells whose bias deviates most from the global bias
# (significant cells first).

# %%
top = deviating_cells(report, "bias", n=16)
# the galaxies the report measured
pred = pd.read_parquet(run.need("cells", "evaluated.parquet"))
first = pred.sort_values("OBJID").groupby("CELL").head(1).set_index("CELL")
# in order of deviation
examples = first.loc[top.index[top.index.isin(first.index)]]
with CutoutStore(run.cutouts_path()) as store:
    images, _, _ = store.read(store.rows_of(examples["OBJID"].to_numpy()))
titles = [
    f"cell {c}: bias {top.loc[c, 'bias']:+.3f}{'*' if top.loc[c, 'significant'] else ''}\n"
    f"z_spec {r.Z:.2f}, z_phot {r.Z_PHOT:.2f}"
    for c, r in examples.iterrows()
]
fig2 = plots.cutout_grid(images, titles)
publish_figure("fig2", fig2, run.figure("figure2_flagged_cutouts.png"))
print(
    f"{int(top['significant'].sum())} of the {len(top)} cells shown are significant "
    f"(marked *); global bias {report.attrs['global']['bias']:+.4f}"
)

# %% [markdown]
# ```{glue:figure} fig2
# :name: "figure-2"
#
# **Figure 2:** one galaxy from each of 16 cells whose bias deviates most from the global
# bias (* = significant after the Benjamini-Hochberg correction), with the cell's bias and
# the galaxy's spectroscopic and photometric redshifts; z, r, g composites, axes in arcsec.
# Look for blends (a second source in the cutout) and for faint, compact or unusually red
# galaxies.
# ```
#
# ## The flagger

# %%
train_X, train_ok = som_features(spec[split == "train"], name="spec.parquet")
train_dist = som.distances(train_X[train_ok])
flagger = flags.Flagger(
    som,
    report,
    train_counts,
    min_count=min_count,
    distance_quantile=distance_quantile,
    train_distances=train_dist,
    metrics=tuple(flag_metrics),
)
flagger.save(run.path("flags", "flagger"))
flagger

# %% [markdown]
# ## Flagging a user's sample
#
# As a user's sample we take the whole random sample, north and south: the kind of
# catalogue someone would ask photometric redshifts for.

# %%
random = run.random()
flagged = flagger.flag(random)
assert len(flagged) == len(random)  # one row per input row, in input order
flagged.insert(0, "OBJID", random["OBJID"].to_numpy())
flagged.to_parquet(run.path("flags", "user_flags.parquet"), index=False)
summary = pd.DataFrame(
    {
        "galaxies": [len(flagged)],
        "flagged_%": [100 * flagged["flag"].mean()],
        "out_of_distribution_%": [100 * flagged["ood"].mean()],
        "under-performing_%": [100 * flagged["underperforming"].mean()],
    }
)
display_reasons = (
    flagged["reason"].value_counts().head(8).rename("galaxies").to_frame()
)
summary.round(2)

# %%
display_reasons

# %% [markdown]
# ## Choosing your own threshold
#
# The paper leaves it to future work to let users set thresholds for their own analysis.
# `Flagger.threshold_curve` does it: for a range of minimum training counts it gives the
# fraction of the user's sample kept and the MAD, η and PCO expected for what is kept (the
# test galaxies reweighted, cell by cell, to the user's cell occupancy). A user who needs few
# outliers (e.g. for clustering) can read off how much of the sample a stricter cut costs.

# %%
test = pred  # evaluated galaxies (all have a SOM cell)
# the user's sample: its cell occupancy reweights the test set
user_cells = flagged["cell"].to_numpy()
curve = flagger.threshold_curve(
    test["CELL"].to_numpy(),
    test["Z"].to_numpy(),
    test["Z_PHOT"].to_numpy(),
    test["PIT"].to_numpy(),
    criterion="n_train",
    sample_cell=user_cells,
)
curve.to_csv(run.path("flags", "threshold_curve.csv"), index=False)
fig = plots.threshold_curve(
    curve, x="threshold", xlabel="minimum training galaxies per cell"
)
publish_figure("fig_threshold", fig, run.figure("threshold_curve.png"))
curve.round(4)

# %% [markdown]
# ```{glue:figure} fig_threshold
# :name: "figure-threshold"
#
# Keeping only test galaxies in cells with at least the given number of training galaxies:
# the fraction kept (left) and the MAD, η and PCO of the kept galaxies (right).
# ```
#
# ## What this chapter wrote

# %%
outputs(
    run.path("flags"),
    run.figure("figure2_flagged_cutouts.png"),
    run.figure("threshold_curve.png"),
)
