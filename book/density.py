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
# # Is local training density predictive of performance?
#
# *Paper section 3, "Is Local Density Predictive of Performance?", Figures 1 and 8.*
#
# Every evaluated galaxy with SOM features falls in a SOM cell (by default every labelled
# galaxy, through the out-of-fold predictions of the MDN chapter; `evaluate_on="test"` uses
# the 10% test split as the paper does). For each cell we compute the
# metrics of its test galaxies (MAD, bias, η, PCO), a **bootstrap** error on each, and compare
# them with the global value measured on the whole test set. The paper's reference band is
# the statistical noise expected when the global metric is computed from a sample as small
# as the cell: the standard error of the standard deviation for MAD, of the mean for bias,
# and binomial noise for η and PCO. A cell whose metric lies beyond that noise, after a
# Benjamini-Hochberg correction for testing hundreds of cells at once, deviates
# significantly.
#
# The x-axis is the number of *training* galaxies in the cell: if more training data helps,
# metrics should improve to the right.

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0
n_boot = 1000  # bootstrap resamples per cell
fdr = 0.05  # false discovery rate of the Benjamini-Hochberg decision
evaluate_on = "out-of-fold"  # "out-of-fold" (every labelled galaxy, see the MDN chapter) or "test"

# %%
import numpy as np
import pandas as pd

from photozsom import cells, plots
from photozsom.book import outputs, publish_figure
from photozsom.rundir import RunDir

plots.style()
run = RunDir(data_dir)
spec = run.spec()
som_cells = pd.read_parquet(run.need("som", "spec_cells.parquet"))
som_cells = som_cells.set_index("OBJID")
split = run.split().set_index("OBJID")
name = {"out-of-fold": "oof_predictions.parquet", "test": "predictions.parquet"}[
    evaluate_on
]
pred = pd.read_parquet(run.need("mdn", name)).set_index("OBJID")

# %% [markdown]
# ## Training count and test metrics per cell

# %%
from photozsom.som import SOM

som = SOM.load(run.need("som", "som.pt"))
train_ids = split.index[split["SPLIT"] == "train"]
train_cells = som_cells.loc[train_ids, "CELL"].to_numpy()
train_counts = np.bincount(train_cells[train_cells >= 0], minlength=som.n_cells)
np.save(run.path("cells", "train_counts.npy"), train_counts)

test = pred.join(som_cells, how="left")
has_cell = test["CELL"].to_numpy() >= 0
print(
    f"{len(test):,} {evaluate_on} galaxies, {has_cell.sum():,} with a SOM cell "
    f"({(~has_cell).sum():,} northern / incomplete: evaluated globally only)"
)
test[has_cell].reset_index().to_parquet(
    run.path("cells", "evaluated.parquet"), index=False
)
t = test[has_cell]
report = cells.report(
    t["CELL"].to_numpy(),
    t["Z"].to_numpy(),
    t["Z_PHOT"].to_numpy(),
    t["PIT"].to_numpy(),
    n_cells=som.n_cells,
    train_counts=train_counts,
    n_boot=n_boot,
    seed=seed,
    fdr=fdr,
)
report.to_parquet(run.path("cells", "report.parquet"))
glob = report.attrs["global"]
print(
    "global values:",
    {k: round(glob[k], 4) for k in ("n", "mad", "bias", "eta", "pco", "z_mean")},
)
main = ["n_train", "count", "z_mean", "mad", "bias", "eta", "pco"]
per_cell = report.loc[report["status"] == "ok", main].describe().T
per_cell[["mean", "50%", "min", "max"]].round(4)

# %% [markdown]
# ## Figure 1: metrics against training count

# %%
fig1 = plots.metric_vs_count(report, mask_zero_outliers=True)
publish_figure("fig1", fig1, run.figure("figure1_metric_vs_count.png"))

# %% [markdown]
# ```{glue:figure} fig1
# :name: "figure-1"
#
# **Figure 1:** MAD, bias, η and PCO of each SOM cell against the number of training
# galaxies in the cell (log scale), with bootstrap error bars. The black line is the value on
# the whole test set; the red dashed lines are the 1σ noise expected from a sample of the
# cell's size. Cells with no outlier are masked for clarity (Figure 8 shows them); red points
# deviate significantly (Benjamini-Hochberg at the chosen false discovery rate). Look for a
# downward trend to the right, and for significant cells even at high training count.
# ```
#
# ## The trend, in numbers
#
# The Spearman rank correlation of each metric with the training count (negative: the metric
# improves with more training data; for the bias, its absolute value).

# %%
trend = cells.trend(report)
trend.to_csv(run.path("cells", "trend.csv"))
trend.round(3)

# %%
sig = {m: int(report[f"{m}_signif"].sum()) for m in ("mad", "bias", "eta", "pco")}
worse = {m: int(report[f"{m}_worse"].sum()) for m in ("mad", "bias", "eta", "pco")}
n_ok = int((report["status"] == "ok").sum())
print(
    f"of {n_ok} cells with at least two test galaxies, significantly deviating cells: {sig}; "
    f"of which worse than global: {worse}"
)

# %% [markdown]
# ## Figure 8: the same, with zero-outlier cells
#
# *Paper appendix F.*

# %%
fig8 = plots.metric_vs_count(report, mask_zero_outliers=False)
publish_figure("fig8", fig8, run.figure("figure8_metric_vs_count_unmasked.png"))

# %% [markdown]
# ```{glue:figure} fig8
# :name: "figure-8"
#
# **Figure 8:** as Figure 1 but including the cells with no outlier. At low count many cells
# have η = 0 or PCO = 0 by chance alone; the reference band shows how likely that is.
# ```
#
# ## What this chapter wrote

# %%
outputs(
    run.path("cells"),
    run.figure("figure1_metric_vs_count.png"),
    run.figure("figure8_metric_vs_count_unmasked.png"),
)
