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
# None: 40 (ci) / 150 (default); early stopping usually ends sooner
max_epochs = None
# out-of-fold predictions for the per-cell analysis (0: test split only)
cv_folds = 5

# %%
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer

from photozsom import metrics, plots
from photozsom.book import outputs, publish_figure
from photozsom.embed import load_embeddings
from photozsom.features import catalog_features
from photozsom.mdn import MDN, cross_val_predict, train_val_test_split
from photozsom.results import prediction_table
from photozsom.rundir import RunDir

plots.style()
run = RunDir(data_dir)
max_epochs = int(max_epochs or (40 if scale == "ci" else 150))
spec = run.spec()

# %% [markdown]
# ## Inputs and the 80/10/10 split

# %%
z = spec["Z"].to_numpy(np.float64)
objid = spec["OBJID"].to_numpy()
i_train, i_val, i_test = train_val_test_split(
    objid, fractions=(0.8, 0.1, 0.1), seed=seed
)
blocks = []
if "embedding" in inputs:
    emb, _ = load_embeddings(
        run.need("embed", "embeddings.h5"), objid=spec["OBJID"].to_numpy()
    )
    blocks.append(emb)
if "catalog" in inputs:
    Xc, ok = catalog_features(spec, name="spec.parquet")
    # every galaxy is kept: a missing catalogue feature (e.g. a band without a measured
    # shape) takes the training set's median of that feature
    imputer = SimpleImputer(strategy="median", keep_empty_features=True)
    blocks.append(imputer.fit(Xc[i_train]).transform(Xc))
    print(f"catalogue features: {(~np.isfinite(Xc)).sum():,} missing values filled")
X = np.hstack(blocks).astype(np.float32)
split = pd.Series("train", index=range(len(spec)))
split.iloc[i_val] = "val"
split.iloc[i_test] = "test"
pd.DataFrame({"OBJID": objid, "SPLIT": split.to_numpy()}).to_parquet(
    run.path("mdn", "split.parquet"), index=False
)
print(
    f"inputs: {inputs} ({X.shape[1]} features); train {len(i_train):,}, validation {len(i_val):,}, "
    f"test {len(i_test):,}"
)

# %% [markdown]
# ## Training
#
# AdamW on mini-batches, early stopping on the validation CRPS (the best epoch's weights are
# kept). The progress bar shows the running training and validation CRPS.

# %%
model = MDN(
    n_inputs=X.shape[1], hidden=tuple(hidden), seed=seed, max_epochs=max_epochs
)
history = model.fit(X[i_train], z[i_train], X[i_val], z[i_val])
history = pd.DataFrame(history)
history.to_csv(run.path("mdn", "history.csv"), index=False)
model.save(run.path("mdn", "mdn.pt"))
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
pdf = model.predict(X[i_test])
pdf.save(run.path("mdn", "test_pdf.npz"))
pred = prediction_table(pdf, objid[i_test], z[i_test])
pred.to_parquet(run.path("mdn", "predictions.parquet"), index=False)
rng = np.random.default_rng(seed)
show = rng.choice(len(pred), size=6, replace=False)
fig = plots.example_pdfs(pdf, z[i_test], show)
publish_figure("fig_pdfs", fig, run.figure("mdn_example_pdfs.png"))
pd.Series(
    metrics.summary(pdf, z[i_test], z_pred=pred["Z_PHOT"].to_numpy())
).to_frame("test set").T

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
# `cv_folds` folds by a hash of `OBJID`, and each fold is predicted by an MDN trained on the
# others. Every galaxy then has a prediction from a model that never saw it, and the per-cell
# analysis (chapter *Is local training density predictive of performance?*) uses them all.
# The 10% test split stays untouched for Table 1.

# %%
if cv_folds:
    pool = np.sort(np.concatenate([i_train, i_val]))
    oof_pdf, fold = cross_val_predict(
        X[pool],
        z[pool],
        objid[pool],
        n_folds=cv_folds,
        seed=seed,
        hidden=tuple(hidden),
        max_epochs=max_epochs,
    )
    oof = prediction_table(oof_pdf, objid[pool], z[pool])
    oof["FOLD"] = fold
    oof.to_parquet(run.path("mdn", "oof_predictions.parquet"), index=False)
    print(
        f"out-of-fold P(z|X) for {len(oof):,} galaxies; mean CRPS {oof['CRPS'].mean():.4f} "
        f"(test split: {pred['CRPS'].mean():.4f})"
    )

# %% [markdown]
# ## What this chapter wrote

# %%
outputs(
    run.path("mdn"), run.figure("mdn_loss.png"), run.figure("mdn_example_pdfs.png")
)
