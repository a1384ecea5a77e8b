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
n_boot = None  # bootstrap resamples per cell; None: the scale's preset
fdr = 0.05  # false discovery rate over all cell x metric tests (Benjamini-Hochberg)
evaluate_on = "out-of-fold"  # "out-of-fold" (every labelled galaxy, see the MDN chapter) or "test"
robustness_seeds = None  # seeds of the robustness check; None: five at default scale, two below

# %%
import numpy as np

from photozsom import plots
from photozsom.evaluation import cells
from photozsom.workflow import pipeline
from photozsom.workflow.book import outputs, publish_figure

plots.style()
run = pipeline.Run(data_dir)

# %% [markdown]
# ## Training count and metrics per cell
#
# `pipeline.run_cells` builds one `photozsom.evaluation.cells.CellReport` per map: the evaluated
# galaxies' metrics per cell, bootstrap errors, the test against the global value and the
# training-split count of the cell. One Benjamini-Hochberg correction runs over all cell ×
# metric tests together: among all rejected (cell, metric) tests, the expected share of
# false ones is at most `fdr`. That bound is about the tests; it does not carry over to a set
# chosen from them afterwards, such as the next chapter's cells that are *worse* than global
# on any metric. (The paper applies no multiple-testing correction.)

# %%
res = pipeline.run_cells(run, scale=scale, seed=seed, n_boot=n_boot, fdr=fdr,
                         evaluate_on=evaluate_on)
report = res["reports"]["S"]
ev = res["evaluated"]
print(report)
print(
    f"{len(ev):,} {evaluate_on} galaxies: "
    + ", ".join(f"{(ev['SOM'] == r).sum():,} on map {r}" for r in res["reports"])
    + f", {(ev['CELL'] < 0).sum():,} without a cell (evaluated globally only)"
)
glob = report.global_
print("global values (southern map):",
      {k: round(glob[k], 4) for k in ("n", "mad", "bias", "eta", "pco", "z_mean")})
main = ["n_train", "count", "z_mean", "mad", "bias", "eta", "pco"]
t = report.table
t.loc[t["status"] == "ok", main].describe().T[["mean", "50%", "min", "max"]].round(4)

# %% [markdown]
# ## Figure 1: metrics against training count

# %%
label = {"out-of-fold": "all out-of-fold galaxies", "test": "the whole test split"}[evaluate_on]
fig1 = plots.metric_vs_count(report, mask_zero_outliers=True, global_label=label)
publish_figure("fig1", fig1, run.figure("figure1_metric_vs_count.png"))

# %% [markdown]
# ```{glue:figure} fig1
# :name: "figure-1"
#
# **Figure 1:** MAD, bias, η and PCO of each cell of the southern SOM against the number of
# training galaxies in the cell (log scale), with bootstrap error bars. The black line is the
# global value over all evaluated galaxies (named in the legend); the red dashed lines are
# ±1σ of the null distribution the significance test uses for a cell of that size. Cells
# with no outlier are masked for clarity (Figure 8 shows them); red points deviate
# significantly (Benjamini-Hochberg over all cell × metric tests). Look for a downward trend
# to the right, and for significant cells even at high training count.
# ```
#
# ## The trend, in numbers — and controlled for redshift
#
# For MAD and |bias|: the Spearman rank correlation with the training count (negative: the
# metric improves with more training data). For η and PCO a rank correlation would mislead:
# a small cell's outlier fraction is exactly 0 far more often than a large cell's, so its
# rank follows the cell's size even when every cell has the same outlier rate. They are
# tested instead by a binomial regression of each cell's *counts* (outliers among its
# evaluated galaxies) on log10(1 + training count), `photozsom.evaluation.cells.binomial_trend`;
# `slope` is the change of the log-odds per dex of training count, with its 95% interval
# (the standard error widened by the between-cell scatter the counts show). The paper's
# caveat: the metrics depend on redshift, and so does the training density (spectroscopy
# is dense at low redshift). The second set of columns holds the cell's mean redshift fixed
# (a partial rank correlation; an extra term in the regression); if a trend survives it,
# it is not just redshift.

# %%
trend = cells.trend(report)
partial = cells.trend(report, control="z_mean")
cols = ["method", "rho", "slope", "slope_lo", "slope_hi", "p"]
both = trend[cols].join(partial[cols[1:]], rsuffix="_given_z")
both["n_cells"] = trend["n_cells"]
both.to_csv(run.write("cells/trend.csv"))
both.round(3)

# %%
for m in both.index:
    r = both.loc[m]
    if r["method"].startswith("binomial"):
        est = (f"slope {r['slope']:+.2f} [{r['slope_lo']:+.2f}, {r['slope_hi']:+.2f}] per dex; "
               f"given the cell's mean redshift {r['slope_given_z']:+.2f} "
               f"[{r['slope_lo_given_z']:+.2f}, {r['slope_hi_given_z']:+.2f}]")
        same_sign = np.sign(r["slope"]) == np.sign(r["slope_given_z"])
    else:
        est = f"rho = {r['rho']:+.2f}; given the cell's mean redshift {r['rho_given_z']:+.2f}"
        same_sign = np.sign(r["rho"]) == np.sign(r["rho_given_z"])
    pz = r["p_given_z"]
    verdict = ("survives" if (pz < 0.05 and same_sign) else "does not survive")
    print(f"here: {m}: {est} (p = {pz:.2g}) — the trend {verdict} the redshift control")

# %% [markdown]
# ## Metrics against redshift
#
# The same metrics per redshift bin over all evaluated galaxies, with bootstrap errors: the
# redshift dependence the paper warns about, measured.

# %%
by_z = cells.metrics_by_redshift(ev["Z"].to_numpy(), ev["Z_PHOT_MEAN"].to_numpy(),
                                 ev["PIT"].to_numpy(), seed=seed)
by_z.to_csv(run.write("cells/metrics_by_redshift.csv"), index=False)
fig = plots.metrics_vs_redshift(by_z, global_values=report.global_)
publish_figure("fig_z", fig, run.figure("metrics_vs_redshift.png"))
by_z.round(4)

# %% [markdown]
# ```{glue:figure} fig_z
# :name: "figure-metrics-vs-redshift"
#
# MAD, bias, η and PCO of all evaluated galaxies in bins of spectroscopic redshift, with
# bootstrap 1σ errors; the dotted line is the global value of the southern map's evaluated
# galaxies. Beyond the paper: it shows how much of a cell's performance its redshift alone
# explains.
# ```

# %%
sig = {m: int(t[f"{m}_signif"].sum()) for m in cells.METRICS}
worse = {m: int(t[f"{m}_worse"].sum()) for m in cells.METRICS}
n_ok = int((t["status"] == "ok").sum())
print(
    f"of {n_ok} cells with at least two evaluated galaxies, significantly deviating cells: "
    f"{sig}; of which worse than global: {worse}"
)

# %% [markdown]
# ## How many significant cells is luck? The same analysis with other seeds
#
# The count above depends on random choices: the SOM's initialisation and sample order, the
# out-of-fold MDNs (fold assignment and weights) and the bootstrap. Below, all three are
# redone with other seeds (`photozsom.workflow.validation.significance_across_seeds`; the run's own
# seed reuses this run's map and predictions, the image embeddings stay this run's). Cells
# are not the same objects on two maps, so the stability is also measured on galaxies: in
# how many seeds a galaxy ends up in a cell significantly worse than global.

# %%
from photozsom.workflow import validation

if robustness_seeds is None:
    robustness_seeds = list(range(5)) if scale == "default" else [0, 1]
robust = validation.significance_across_seeds(run, seeds=robustness_seeds, scale=scale,
                                              n_boot=n_boot, fdr=fdr)
robust["per_seed"].to_csv(run.write("cells/significance_by_seed.csv"))
robust["per_seed"]

# %%
summ, stab = robust["summary"], robust["stability"]
print(f"here, over {len(robustness_seeds)} seeds: cells significantly worse on any metric "
      f"{summ.loc['any_worse', 'mean']:.1f} ± {summ.loc['any_worse', 'std']:.1f} "
      f"(range {summ.loc['any_worse', 'min']:.0f}–{summ.loc['any_worse', 'max']:.0f}); "
      f"significantly deviating cells per metric: "
      + ", ".join(f"{m} {summ.loc[f'{m}_signif', 'mean']:.1f} ± "
                  f"{summ.loc[f'{m}_signif', 'std']:.1f}" for m in cells.METRICS))
print(f"here: {stab['frac_worse_every_seed']:.1%} of the {stab['n_galaxies']:,} evaluated "
      f"galaxies are in a worse cell under every seed, {stab['frac_worse_any_seed']:.1%} under "
      f"at least one (mean pairwise Jaccard index {stab['mean_pairwise_jaccard']:.2f}; "
      f"1 = the seeds agree on every galaxy)")

# %% [markdown]
# ## Explore the map
#
# The same report on the map itself: pick a metric in the drop-down (training count, MAD,
# bias, η, PCO, significance, mean redshift, flag fraction), hover over a cell for its
# numbers with errors, click it to see up to 16 of its galaxies and its z_phot against
# z_spec. `photozsom explore <data_dir> -o som.html` writes the same page for your own run.

# %%
from photozsom.explore import run_explorer, save_explorer
from photozsom.workflow.book import publish_page

explorer = save_explorer(run_explorer(run.root, n_jobs=-1),
                         run.figure("som_explorer.html"), title="photozsom SOM explorer")
print(f"explorer: {explorer.stat().st_size / 1e6:.1f} MB")
publish_page(explorer, title="SOM explorer")

# %% [markdown]
# ## Figure 8: the same, with zero-outlier cells
#
# *Paper appendix F.*

# %%
fig8 = plots.metric_vs_count(report, mask_zero_outliers=False, global_label=label)
publish_figure("fig8", fig8, run.figure("figure8_metric_vs_count_unmasked.png"))

# %% [markdown]
# ```{glue:figure} fig8
# :name: "figure-8"
#
# **Figure 8:** as Figure 1 but including the cells with no outlier. At low count many cells
# have η = 0 or PCO = 0 by chance alone; the band shows how likely that is.
# ```
#
# ## What this chapter wrote

# %%
outputs(
    run.write("cells/"),
    run.figure("figure1_metric_vs_count.png"),
    run.figure("figure8_metric_vs_count_unmasked.png"),
)
