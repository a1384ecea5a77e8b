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
# # Adapting the book to your own sample
#
# Every chapter reads and writes plain files in `data_dir`, and every stage validates its
# input against the DR10 schema (`photozsom.schema`), so you can enter the pipeline
# at any stage with your own files.
#
# ## Pointing the chapters at real data
#
# | chapter | parameter | what to give it |
# |---|---|---|
# | data | `spec_catalog`, `random_catalog` | a spectroscopic table that already has DR10 photometry columns and `Z` (a spec-z query with photometry attached), and a representative random sample for the SOM |
# | data | `spec_files`, `sweep_files`, `random_files` | raw files instead: `{"DESI": "zpix-main.fits", "SDSS": "specObj-dr17.fits", "MyZ": ["my.csv", {"RA": "ra", "DEC": "dec", "Z": "z"}]}` — DESI and SDSS get their quality cuts, others a column mapping — matched within 2" to DR10 sweeps |
# | data | `cutout_dir`, `download=True` | fetch g,r,i,z cutouts from the Legacy Survey cutout service (DR10 layer in the south, DR9-north for BASS/MzLS; cached, resumable); nothing is downloaded unless you ask |
# | data | `split_by` | e.g. `ROSETTE` or a column of "train"/"val"/"test": a split you choose |
# | som | `som_shape`, `som_shape_north`, `epochs`, `backend` | map sizes and training; `backend="minisom"` for minisom |
# | embeddings | `embedder="aion"`, `aion_model` | AION-1 embeddings (install `photozsom[aion]`, weights from Hugging Face) |
# | mdn | `inputs`, `hidden`, `max_epochs` | embeddings, catalogue features or both |
# | density | `n_boot`, `fdr` | bootstrap resamples and false discovery rate |
# | flagging | `min_count`, `distance_quantile`, `flag_metrics` | the thresholds of your flag (`"auto"`: chosen from your labelled galaxies) |
#
# For example: `photozsom book --only data -p data_dir=runs/mine -p spec_catalog=my.parquet`
# (re-runs every chapter that depends on the data, in `runs/mine`).
#
# Without any chapter, two commands take a spectroscopic table to photo-z and flags
# (worked example 2 below runs them on real galaxies):
#
# ```bash
# photozsom train my_spec.parquet -o my_photoz [--random my_random.parquet] [--split-by COL]
# photozsom predict my_galaxies.fits -o my_photoz.parquet --model my_photoz
# ```
#
# `photozsom train` fits a `PhotoZModel` on the bands the table has, predicts the labelled
# galaxies out of fold and fits the flag (`photozsom.flags.SOMFlagger`) on them; in Python,
# `photozsom.train.train(...)`, or `SOMFlagger(...).fit(random, labelled, z, z_oof, pit=pit_oof)`
# with your own out-of-fold predictions.
#
# ## Worked example 1: a second sky, a different selection
#
# Here a user brings a sample the models were not built on: a second simulated sky with
# another seed, from which they select faint galaxies, fainter than most spectroscopic
# targets. We train `PhotoZModel`s on the book's sky with the catalogue features, the image
# embeddings and both, run them and the book's flagger on the user's galaxies unchanged, and
# check what the flag is for: are the flagged galaxies really the ones with worse
# photometric redshifts?

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0
user_seed = 1000  # seed of the second simulated sky
user_scale = "ci"  # its size (cutouts are made as large as the main sky's)
r_min = 20.0  # the user's selection: r-band magnitude fainter than this [AB mag]

# %%
import subprocess
import sys

import pandas as pd
from IPython.display import Markdown, display

from photozsom.data import desi_edr
from photozsom.embed import Encoder, embed_to_file
from photozsom.embed.store import CutoutStore
from photozsom.evaluation.results import flag_comparison
from photozsom.features import magnitudes
from photozsom.flags import load_flagger
from photozsom.model import PhotoZModel
from photozsom.predict import predict_table
from photozsom.sim import simulate
from photozsom.workflow import pipeline
from photozsom.workflow.book import outputs

run = pipeline.Run(data_dir)
user_dir = run.write("user_sample/")
with CutoutStore(run.cutouts_path()) as main_store:
    size = main_store.size  # the encoder was trained on cutouts of this size [pixels]
simulate(user_dir, scale=user_scale, seed=user_seed, cutout_size=size, overwrite=False)
user = pd.read_parquet(user_dir / "spec.parquet")
user = user[magnitudes(user, ("R",))["r"].to_numpy() > r_min].reset_index(drop=True)
print(f"user sample: {len(user):,} galaxies with r > {r_min} from a sky with seed {user_seed}")

# %% [markdown]
# The user's cutouts go through the book's trained encoder; the three models are trained on
# the book's sky (the embedding one is the MDN chapter's model) and applied unchanged.

# %%
encoder = Encoder.load(run.read("embed/encoder"))
(user_dir / "embed").mkdir(exist_ok=True)
embed_to_file(encoder, user_dir / "cutouts.h5", user_dir / "embed" / "embeddings.h5")
user_in = pipeline.model_inputs(pipeline.Run(user_dir), user, "embedding")
flagger = load_flagger(run.read("flags/flagger"))
spec = run.spec_with_split()
comparisons = {}
for features in ("catalog", "embedding", "both"):
    if features == "embedding":
        model = PhotoZModel.load(run.read("mdn/model"))
    else:
        model = pipeline.fit_photoz_model(run, spec, features, scale=scale, seed=seed)
    pred = pd.concat([user_in[["OBJID", "Z"]], predict_table(user_in, model, flagger)], axis=1)
    pred.to_parquet(user_dir / f"predictions_{features}.parquet", index=False)
    comparisons[features] = flag_comparison(pred)
table = pd.concat(comparisons, names=["inputs", "galaxies"])
table.round(4)

# %% [markdown]
# If the flag works, the flagged rows have a larger MAD, η and PCO than the rows left
# unflagged, for every kind of input. On this run:

# %%
for features, t in comparisons.items():
    worse = [m for m in ("MAD", "eta_%", "PCO_%")
             if t.loc["flagged", m] > t.loc["not flagged", m]]
    print(f"here ({features}): flagged galaxies are worse on {', '.join(worse) or 'nothing'}")
pred["PZ_FLAG_REASON"].str.split(":").str[0].value_counts().head(6).rename("galaxies").to_frame()

# %% [markdown]
# ## Worked example 2: real galaxies, the way a user would
#
# photozsom ships one real sample (`photozsom.data.desi_edr.load_bgs_north`): 112,104
# galaxies of the DESI Early Data Release Bright Galaxy Survey in ten northern rosettes, with
# Legacy Surveys DR9-north photometry (BASS g, r; MzLS z; unWISE W1, W2) and DESI
# spectroscopic redshifts. What they can show: a photo-z model and its flag trained with
# `photozsom train` on a table as a user would bring it, and applied with `photozsom predict`
# to spatially separate fields; and whether the flag separates good from bad photo-z on
# *real* galaxies. What they cannot: they are bright (r < ~20.2) and at low redshift
# (z < 0.6), northern (no i-band), have no images (no embeddings), and no representative
# random sample comes with them — the SOM is trained on the labelled galaxies themselves
# (`photozsom train` says so), so "thin training data" here means thin within BGS, not
# within the sky.
#
# Rosettes 18 and 19 are held out entirely; the table given to `photozsom train` has a
# `SPLIT` column: six training rosettes, rosette 15 for early stopping and recalibration,
# rosette 14 as the test split that neither the model nor the flag sees.

# %%
display(Markdown(f"*Data credit:* {desi_edr.CREDIT}."))
real_dir = run.write("desi_edr_bgs/")
files = desi_edr.write_example(real_dir / "input", seed=seed,
                               fraction=pipeline.preset(scale)["real_fraction"])
model_dir = real_dir / "photoz"
n_boot = int(pipeline.preset(scale)["n_boot"])


def photozsom(*args: str) -> subprocess.CompletedProcess:
    """Run the photozsom command as a user would, showing the command line."""
    print("$ photozsom " + " ".join(args))
    return subprocess.run([sys.executable, "-m", "photozsom", *args], capture_output=True,
                          text=True, check=True)


done = photozsom("train", str(files["labelled"]), "-o", str(model_dir), "--seed", str(seed),
                 "--n-boot", str(n_boot), "--overwrite", "--quiet")
print(done.stdout)

# %% [markdown]
# The directory holds the model, its flag and the held-out test summary; `photozsom predict`
# uses it whole on the two rosettes no model has seen:

# %%
out = real_dir / "held_out_photoz.parquet"
done = photozsom("predict", str(files["held_out"]), "-o", str(out), "--model", str(model_dir),
                 "--overwrite")
held = pd.read_parquet(out)
real_cmp = flag_comparison(held)
print(held["PZ_STATUS"].value_counts().to_dict())
real_cmp.round(4)

# %%
t = real_cmp
verdict = "worse" if t.loc["flagged", "MAD"] > t.loc["not flagged", "MAD"] else "not worse"
print(
    f"here: on {int(t.loc['all', 'N']):,} held-out real galaxies the flag marks "
    f"{t.loc['flagged', 'fraction']:.0%}; their MAD {t.loc['flagged', 'MAD']:.4f} is "
    f"{verdict} than the unflagged galaxies' {t.loc['not flagged', 'MAD']:.4f} "
    f"(eta {t.loc['flagged', 'eta_%']:.1f}% vs {t.loc['not flagged', 'eta_%']:.1f}%)."
)

# %% [markdown]
# ## What this chapter wrote

# %%
outputs(user_dir, real_dir)
