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
# # A mixture density network trained on the CRPS
#
# *Paper section 2, "Foundation Models & Downstream Training".*
#
# The downstream model is a 4-layer densely connected network that maps an embedding $X$
# to 200 non-negative weights $w_k$ (a softmax) of a mixture of Gaussians with fixed,
# evenly spaced centres $\mu_k$ on $[0, 1.6]$ and fixed width $\sigma = 0.0037$, each
# truncated to $[0, 1.6]$:
#
# $$ P(z\,|\,X) = \sum_{k=1}^{200} w_k(X)\, \mathcal{N}_{[0,1.6]}(z;\, \mu_k, \sigma). $$
#
# It is trained to minimise the **continuous ranked probability score**
# (Matheson & Winkler 1976),
#
# $$ \mathrm{CRPS}(F, z) = \int \big(F(z') - \mathbf{1}\{z' \ge z\}\big)^2\, dz', $$
#
# a proper score in units of redshift that rewards sharp *and* calibrated $P(z|X)$.
# For this fixed mixture it has a closed form, $\mathrm{CRPS} = w^\top A w - 2 w^\top b(z) + c(z)$,
# where the matrix $A$ of component-pair integrals depends only on the fixed centres and
# width and is computed once (`photozsom.mdn.crps_mixture`).
#
# As in the paper, 10% of the galaxies are held out for tuning (early stopping) and another
# 10% for the final test; the split is made by `OBJID` and seed, so every chapter agrees on it.

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0
inputs = "embedding"  # "embedding" (the paper), "catalog" or "embedding+catalog"
# widths of the three hidden layers (+ the 200-wide output layer)
hidden = [256, 256, 256]
max_epochs = None  # length of the one-cycle schedule; None: the scale's preset
cv_folds = None  # out-of-fold predictions for the per-cell analysis; None: preset, 0: none

# %%
import numpy as np
import pandas as pd

from photozsom import metrics, pipeline, plots
from photozsom.book import outputs, publish_figure

plots.style()
run = pipeline.Run(data_dir)

# %% [markdown]
# ## Training
#
# `pipeline.run_mdn` builds a `photozsom.model.PhotoZModel`: the inputs by name (the
# embedding columns, the catalogue features, or both), an imputer fitted on the training
# split (a catalogue feature that cannot be computed, e.g. an undetected WISE band, takes
# the training median and the row says so), and the MDN, trained with AdamW on
# mini-batches of 1024 galaxies under a one-cycle learning-rate schedule (warm-up to 0.01,
# then a cosine decay), keeping the epoch with the best validation CRPS; on a GPU, or a CPU
# with native bfloat16, the training steps run in mixed precision (predictions stay
# float32). These defaults reach the CRPS of a slow plateau schedule in a third of the time
# (`benchmarks/mdn.py`). The same saved model is what `photozsom predict` applies to any
# catalogue.

# %%
res = pipeline.run_mdn(
    run, scale=scale, seed=seed, inputs=inputs, hidden=hidden, max_epochs=max_epochs,
    cv_folds=cv_folds,
)
model = res["model"]
print(model)
history = model.history_
fig = plots.loss_curves(history)
publish_figure("fig_loss", fig, run.figure("mdn_loss.png"))
print(
    f"best validation CRPS {history['val_crps'].min():.4f} at epoch "
    f"{int(history.loc[history['val_crps'].idxmin(), 'epoch'])}"
)

# %% [markdown]
# ```{glue:figure} fig_loss
# :name: "figure-mdn-loss"
#
# Mean CRPS (in redshift) of the training and validation sets per epoch; the dotted line
# marks the epoch whose weights are kept.
# ```
#
# ## P(z|X) on the test set

# %%
pred = res["predictions"]
spec = run.spec_with_split()
test = spec[spec["SPLIT"] == "test"]
pdf = model.predict(pipeline.model_inputs(run, test, model.features))
z_test = test["Z"].to_numpy()
rng = np.random.default_rng(seed)
show = rng.choice(len(test), size=6, replace=False)
fig = plots.example_pdfs(pdf, z_test, show)
publish_figure("fig_pdfs", fig, run.figure("mdn_example_pdfs.png"))
pd.Series(metrics.summary(pdf, z_test)).to_frame("test set").T

# %% [markdown]
# ```{glue:figure} fig_pdfs
# :name: "figure-example-pdfs"
#
# P(z|X) of six random test galaxies, with the spectroscopic redshift as a dashed line. A
# 200-component mixture can be narrow, broad or multi-modal; a second peak usually marks a
# colour-redshift degeneracy.
# ```
#
# ## Out-of-fold predictions for the per-cell analysis
#
# The paper evaluates each SOM cell on its 10% test split: 1.2 million galaxies, about a
# thousand per cell. Our simulated default has a few thousand test galaxies, too few to
# measure a cell's MAD or outlier rate. So, beyond the paper, we also make **out-of-fold**
# predictions: the labelled galaxies (training and validation splits) are cut into
# `cv_folds` folds of equal size by a seeded draw independent of the train/validation/test
# split, and each fold is predicted by an MDN trained on the others. Every galaxy then has a prediction from a model that never saw it, and the per-cell
# analysis (chapter *Is local training density predictive of performance?*) uses them all.
# The 10% test split stays untouched for Table 1.

# %%
if "oof" in res:
    oof = res["oof"]
    print(
        f"out-of-fold P(z|X) for {len(oof):,} galaxies in {oof['FOLD'].nunique()} folds; mean "
        f"CRPS {oof['CRPS'].mean():.4f} (test split: {pred['CRPS'].mean():.4f})"
    )

# %% [markdown]
# ## What this chapter wrote

# %%
outputs(
    run.path("mdn/"), run.figure("mdn_loss.png"), run.figure("mdn_example_pdfs.png")
)
