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
#   the distances of the SOM's own training sample (recorded when the map was trained); or
# * it is **under-performing** (`underperforming`): its cell is significantly worse than the
#   global performance on the metrics the user picks, *and* materially so: at least twice
#   the global MAD, η or PCO, or a bias shifted by more than the global MAD
#   (`min_effect=1.0`, `photozsom.evaluation.cells.material`). Significance alone grows with
#   the number of labelled galaxies per cell: with tens of galaxies a cell, cells only 30%
#   worse become significant, and the flag would grow with the training set rather than
#   with the problem (the paper's Figure 2 keeps every significant cell).
#
# Every input row comes back, in input order, with its `cell`, `distance`, the two flags,
# `flag` and a readable `reason`; rows that cannot be scored (a band without data) are
# flagged with that reason rather than dropped. Northern galaxies (no i-band) go to the
# northern map (`photozsom.flags.RegionalFlagger`). The same is
# available on the command line: `photozsom flag my_catalogue.fits -o flagged.parquet
# --model <data_dir>/flags/flagger`, or with photometric redshifts, `photozsom predict
# my_catalogue.fits -o out.parquet --model <data_dir>/mdn/model --flagger
# <data_dir>/flags/flagger`.

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0
# cells with fewer training galaxies are out of distribution; "auto": chosen from the data
# (below), None: the scale's preset
min_count = "auto"
# distances beyond this quantile of the SOM's own training sample are out of distribution;
# "auto": chosen from the data
distance_quantile = "auto"
# which significant deviations count as under-performing
flag_metrics = ["mad", "eta", "pco", "bias"]

# %%
import pandas as pd
from IPython.display import display

from photozsom import plots
from photozsom.embed.store import CutoutStore
from photozsom.evaluation import cells, detection
from photozsom.evaluation.results import deviating_cells
from photozsom.workflow import pipeline
from photozsom.workflow.book import outputs, publish_figure, stored_result

plots.style()
run = pipeline.Run(data_dir)
report = pipeline.load_reports(run)["S"]
spec = run.spec()

# %% [markdown]
# ## Figure 2: galaxies from cells with a significantly worse bias
#
# One evaluated galaxy from each of the 16 cells of the southern map whose bias is most
# significantly *worse* than the global bias, by the same definition the flag uses: a larger
# |bias| (`photozsom.evaluation.cells.worse_than_global`). Significant cells first.

# %%
top = deviating_cells(report, "bias", n=16)
ev = pd.read_parquet(run.read("cells/evaluated.parquet"))
ev = ev[(ev["SOM"] == "S") & (ev["CELL"] >= 0)]
first = ev.sort_values("OBJID").groupby("CELL").head(1).set_index("CELL")
examples = first.loc[top.index[top.index.isin(first.index)]]  # in order of deviation
with CutoutStore(run.cutouts_path()) as store:
    images, _, _ = store.read(store.rows_of(examples["OBJID"].to_numpy()))
titles = [
    f"cell {c}: bias {top.loc[c, 'bias']:+.3f}{'*' if top.loc[c, 'significant'] else ''}\n"
    f"z_spec {r.Z:.2f}, z_phot {r.Z_PHOT_MEAN:.2f}"
    for c, r in examples.iterrows()
]
fig2 = plots.cutout_grid(images, titles)
publish_figure("fig2", fig2, run.figure("figure2_flagged_cutouts.png"))
print(
    f"{int(top['significant'].sum())} of the {len(top)} cells shown are significantly worse "
    f"(marked *); global bias {report.global_['bias']:+.4f}"
)

# %% [markdown]
# ```{glue:figure} fig2
# :name: "figure-2"
#
# **Figure 2:** one galaxy from each of 16 cells whose |bias| exceeds the global one most
# (* = significantly worse after the Benjamini-Hochberg correction), with the cell's bias and
# the galaxy's spectroscopic and photometric redshifts; z, r, g composites, axes in arcsec.
# Look for blends (a second source in the cutout) and for faint, compact or unusually red
# galaxies.
# ```
#
# ## The flagger, and how its thresholds are chosen
#
# Two numbers decide what counts as out of distribution: `min_count` and the
# `distance_quantile`. Rather than fixing them by hand, `pipeline.run_flags` chooses them
# for each map from the labelled galaxies (`photozsom.flags.choose_thresholds`): every pair
# on a grid defines an out-of-distribution flag, which is scored as a detector of
# catastrophic outliers (|Δz| > 0.15) on the out-of-fold photo-z of the previous chapter
# (each training galaxy is left out of its own cell's count, as a new galaxy would be).
# The labelled galaxies are weighted cell by cell to the user's sample (here the random
# sample), so the recall and false-positive rate are those expected for the user's
# galaxies if performance within a cell carries over. The score is Youden's J = recall −
# false-positive rate: 0 for a flag no better than random. Among the pairs whose J is
# significantly above zero (Bonferroni over the grid) and within one standard error of the
# best, the one that flags the smallest share of the user's sample is taken — a threshold
# is only tightened where the data show it catches bad photo-z. No simulation truth is
# used, so the same rule runs on a real catalogue.

# %%
res = pipeline.run_flags(
    run, scale=scale, min_count=min_count, distance_quantile=distance_quantile,
    flag_metrics=flag_metrics,
)
flagger = res["flagger"]
flagger

# %%
choice_path = run.read("flags/threshold_choice.csv")
if choice_path.exists() and choice_path.read_text().strip():  # empty: thresholds given
    choice = pd.read_csv(choice_path)
    cs = choice[choice["som"] == "S"]
    fig = plots.threshold_choice(cs)
    publish_figure("fig_choice", fig, run.figure("threshold_choice.png"))
    best = cs.loc[cs["J"].idxmax()]
    pick = cs[cs["chosen"]].iloc[0]
    hand_row = cs[(cs["min_count"] == pipeline.SCALES[scale]["min_count"])
                  & (cs["distance_quantile"] == 0.99)]
    print("rule:", pick["rule"])
    if len(hand_row):
        h = hand_row.iloc[0]
        print(f"here, hand-set (min_count {int(h['min_count'])}, quantile 0.99): J {h['J']:.3f} "
              f"± {h['J_se']:.3f}, flagging {h['flagged_sample']:.0%} of the random sample")
    print(f"here, in sample (the thresholds and these scores from the same galaxies; "
          f"southern map, {int(cs['n_bad'].iloc[0]):,} outliers among "
          f"{int(cs['n_bad'].iloc[0] + cs['n_good'].iloc[0]):,} evaluated galaxies): best J "
          f"{best['J']:.3f} ± {best['J_se']:.3f} at min_count {int(best['min_count'])}, quantile "
          f"{best['distance_quantile']:g}; chosen min_count {int(pick['min_count'])}, quantile "
          f"{pick['distance_quantile']:g} (J {pick['J']:.3f}, recall {pick['recall']:.0%}, "
          f"precision {pick['precision']:.0%}), flagging {pick['flagged_sample']:.0%} of the "
          f"random sample out of distribution")
else:
    print("thresholds set by hand:", res["chosen"])
res["chosen"]

# %% [markdown]
# ## The flag scored out of sample
#
# The numbers above were measured on the galaxies that chose the thresholds, so they
# flatter the flag. `photozsom.workflow.validation.run_nested_flags` scores it nested: the labelled
# galaxies are split into five folds, and each fold is flagged with the thresholds and the
# under-performing cells that the *other* four folds chose by the same rule (training
# counts leave-one-out in scoring as in selection). The table gives, for each map, the
# weighted recall, false-positive rate, Youden's J with its standard error, precision and
# share flagged of the whole flag and of its two parts, in sample and nested.

# %%
from photozsom.workflow import validation

nested = validation.run_nested_flags(run, flagger=flagger, seed=seed)
nested["scores"].to_csv(run.write("flags/flag_scores_nested.csv"))
display(nested["folds"])
sc = nested["scores"]
for r in sc.index.get_level_values("som").unique():
    a, b = sc.loc[(r, "in sample", "flag")], sc.loc[(r, "nested", "flag")]
    print(f"here (map {r}): J in sample {a['J']:.3f} ± {a['J_se']:.3f}, nested {b['J']:.3f} ± "
          f"{b['J_se']:.3f}; precision {a['precision']:.0%} in sample, {b['precision']:.0%} nested")
sc.round(3)

# %% [markdown]
# The labelled galaxies' photo-z come from the out-of-fold networks of the MDN chapter, each
# trained without its fold and without the 10% it keeps for early stopping: with five folds
# on about 64% of the labelled galaxies, where the final network trains on 80%. Does the
# choice describe a weaker model than the one users run? `benchmarks/flag_fold_size.py`
# re-runs the out-of-fold networks, the per-cell reports and this choice with 3, 5 and 10
# folds (fold networks on 54%, 64% and 73%) on the default book's run; the stored table:

# %%
fold_sizes = stored_result("flag_fold_size.csv", "flag_fold_size.py")
if fold_sizes is not None:
    display(fold_sizes[["folds", "fold_train_fraction", "som", "min_count", "distance_quantile",
                        "n_bad", "flag_J", "flag_J_se", "underperforming_J",
                        "underperforming_J_se"]].round(3))

# %% [markdown]
# ```{glue:figure} fig_choice
# :name: "figure-threshold-choice"
#
# Choosing the out-of-distribution thresholds of the southern map. Left: Youden's J
# (recall − false-positive rate) of the out-of-distribution flag as a detector of
# catastrophic outliers among the evaluated galaxies (weighted to the random sample's
# cells), for each minimum training count per
# cell and distance quantile of the SOM's training sample; right: the share of the random
# sample each pair flags out of distribution [%]. White outlines: significantly better than
# a random flag and within one standard error of the best J; star: the chosen pair (the
# outlined one flagging least).
# ```

# %% [markdown]
# ## Flagging a user's sample
#
# As a user's sample we take the whole random sample, north and south: the kind of
# catalogue someone would ask photometric redshifts for. Each row goes to the map of its
# footprint.

# %%
flagged = res["random_flags"]
random = run.random()
assert len(flagged) == len(random)  # one row per input row, in input order
summary = (
    flagged.groupby("som")
    .agg(
        galaxies=("flag", "size"),
        flagged_pct=("flag", lambda f: 100 * f.mean()),
        out_of_distribution_pct=("ood", lambda f: 100 * f.mean()),
        underperforming_pct=("underperforming", lambda f: 100 * f.mean()),
    )
    .rename(index={"": "no map"})
)
summary.round(2)

# %%
flagged["reason"].str.split(":").str[0].value_counts().head(8).rename("galaxies").to_frame()

# %% [markdown]
# The explorer of the previous chapter, now with the flag: choose "flag fraction" in the
# drop-down; flagged galaxies are framed in orange.

# %%
from photozsom.explore import run_explorer, save_explorer
from photozsom.workflow.book import publish_page

explorer = save_explorer(run_explorer(run.root, n_jobs=-1, metric="flag"),
                         run.figure("som_explorer_flags.html"), title="photozsom SOM explorer")
publish_page(explorer, title="SOM explorer with flags")

# %% [markdown]
# ## What the flag marks, by magnitude
#
# A flag that marks most galaxies tells a user little unless it is clear where it is
# informative. Below, the flagged fraction of the random sample and its reasons against
# r-band magnitude, and — on the evaluated spectroscopic galaxies — the photo-z metrics of
# flagged and unflagged galaxies in each magnitude bin.

# %%
by_mag = validation.flag_by_magnitude_nested(run, flagger, nested["galaxies"])
by_mag.round(3)

# %% [markdown]
# The MAD and η of flagged and unflagged evaluated galaxies above use the nested flags (the
# split was not decided on the galaxies measured). The same with thresholds set by hand (the
# scale's preset `min_count` and the 0.99 quantile, this book's previous defaults), to see
# what choosing them from the data changed (its under-performing cells are still judged in
# sample, so its flagged/unflagged contrast is flattered):

# %%
hand = {r: (pipeline.SCALES[scale]["min_count"], 0.99) for r in res["chosen"]}
by_mag_hand = pipeline.flag_by_magnitude(
    run, pipeline.build_flagger(run, hand, flag_metrics=flag_metrics))
n_r = by_mag["n_random"]
for label, t in (("hand-set", by_mag_hand), ("chosen", by_mag)):
    print(f"here, {label} thresholds: {(t['flagged'] * n_r).sum() / n_r.sum():.0%} of the "
          f"random sample flagged ({(t['ood'] * n_r).sum() / n_r.sum():.0%} out of "
          f"distribution); MAD flagged / not flagged, brightest bin "
          f"{t['mad_flagged'].iloc[0]:.3f} / {t['mad_unflagged'].iloc[0]:.3f}, faintest "
          f"{t['mad_flagged'].iloc[-1]:.3f} / {t['mad_unflagged'].iloc[-1]:.3f}")

# %%
fig = plots.flag_by_magnitude(by_mag)
publish_figure("fig_flag_mag", fig, run.figure("flag_by_magnitude.png"))

# %% [markdown]
# ```{glue:figure} fig_flag_mag
# :name: "figure-flag-by-magnitude"
#
# Left: fraction of the random sample flagged, out of distribution and in under-performing
# cells, per r-band magnitude bin [AB mag]. Right: MAD of flagged and unflagged evaluated
# spectroscopic galaxies in the same bins.
# ```
#
# ## Choosing your own threshold
#
# The paper leaves it to future work to let users set thresholds for their own analysis.
# `photozsom.evaluation.cells.threshold_curve` does it: for a range of minimum training counts it gives
# the fraction of the user's sample kept and the MAD, η and PCO expected for what is kept
# (the evaluated galaxies reweighted, cell by cell, to the user's cell occupancy). A user who
# needs few outliers (e.g. for clustering) can read off how much of the sample a stricter
# cut costs.

# %%
s_flags = flagged[flagged["som"] == "S"]
curve = cells.threshold_curve(
    report,
    ev["CELL"].to_numpy(),
    ev["Z"].to_numpy(),
    ev["Z_PHOT_MEAN"].to_numpy(),
    ev["PIT"].to_numpy(),
    criterion="n_train",
    sample_cell=s_flags["cell"].to_numpy(),
)
curve.to_csv(run.write("flags/threshold_curve.csv"), index=False)
fig = plots.threshold_curve(
    curve, x="threshold", xlabel="minimum training galaxies per cell"
)
publish_figure("fig_threshold", fig, run.figure("threshold_curve.png"))
curve.round(4)

# %% [markdown]
# ```{glue:figure} fig_threshold
# :name: "figure-threshold"
#
# Keeping only galaxies in cells with at least the given number of training galaxies: the
# fraction of the random sample kept (left) and the MAD, η and PCO expected for the kept
# galaxies (right).
# ```
#
# ## Does the flag catch bad photo-z? Scored against the simulation's truth
#
# *Beyond the paper.* The simulated sky knows what the paper's data cannot: the true
# redshift, how much of a galaxy's light belongs to a neighbour, and whether its
# spectroscopic redshift is wrong. Here the flag is treated as a *detector* of catastrophic
# photo-z outliers (against the true redshift), of blends (more than 10% of the r-band flux
# from neighbours) and of wrong spectroscopic redshifts, and compared with the simplest
# alternative a user has: flagging the widest P(z) (90% interval over 1 + z), at the same
# fraction flagged. The flag is the nested one above: each galaxy is flagged with the
# thresholds and under-performing cells chosen on the other folds, so it is not scored on
# the galaxies that defined it. Precision is the share of flagged galaxies that are bad;
# recall the share of bad galaxies flagged (in %).

# %%
truth = validation.score_flag_against_truth(run, flagger=flagger, nested=nested)
table = detection.summary_table(truth["table"])
table.to_csv(run.write("flags/flag_vs_truth.csv"))
fig = plots.plot_detection(truth["curves"], truth["table"])
publish_figure("fig_truth", fig, run.figure("flag_vs_truth.png"))
table

# %% [markdown]
# ```{glue:figure} fig_truth
# :name: "figure-flag-truth"
#
# Recall (share of bad galaxies flagged) against the fraction of galaxies flagged, for flags
# built from the SOM (cell training count, cell outlier rate, distance to the prototype) and
# from the width of P(z), for catastrophic outliers, blends and wrong spectroscopic
# redshifts; points mark the book's flag. The diagonal is a random flag.
# ```
#
# The area under each curve (0.5: no better than random), and what it says on this run:

# %%
t = truth["table"]
for kind in ("outlier", "blend", "wrong_specz"):
    a = t[(t["truth"] == kind) & (t["flag"] == "SOM flag")].iloc[0]
    b = t[(t["truth"] == kind) & t["flag"].str.startswith("P(z) width")].iloc[0]
    more = "more" if a["recall"] > b["recall"] else "fewer"
    print(f"here ({kind}): the SOM flag catches {a['recall']:.0%} at precision "
          f"{a['precision']:.0%}; flagging the widest P(z) at the same fraction catches "
          f"{b['recall']:.0%} at {b['precision']:.0%} — the SOM flag finds {more}")
truth["auc"].round(3)

# %% [markdown]
# ## A SOM of the embeddings
#
# *The paper's future work.* The same questions for a map trained on the random sample's
# image embeddings instead of its colours: how tightly each cell holds its redshifts (the
# count-weighted spread of the true redshift within cells; smaller means the map separates
# redshifts better) and how well its flag detects bad photo-z. Each map chooses its own
# thresholds by the same rule, nested out of sample as above.

# %%
maps_cmp = validation.compare_maps(run, flagger=flagger)
print("thresholds chosen per fold:", maps_cmp["settings"]["chosen"])
display(maps_cmp["spread"].round(3))
detection.summary_table(maps_cmp["table"])

# %% [markdown]
# ## What this chapter wrote

# %%
outputs(
    run.write("flags/"),
    run.figure("figure2_flagged_cutouts.png"),
    run.figure("threshold_curve.png"),
    run.figure("threshold_choice.png"),
)
