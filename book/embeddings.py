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
# # Foundation-model embeddings of the images
#
# *Paper section 2, "Astronomical Foundation Models & Downstream Training".*
#
# A foundation model is pretrained *without labels* on a large set of images and maps each
# image to a vector, an *embedding*, that downstream models use instead of raw pixels. The
# paper uses AION-1 (Parker et al. 2025), a 4M-style multimodal transformer that accepts
# g, r, z images in the north and g, r, i, z in the south without retraining.
#
# `photozsom.embed` provides two embedders behind one protocol,
# `embed(cutouts[N, 4, H, W], band_mask[N, 4]) -> [N, D]`:
#
# * `AIONEmbedder` — the paper's model, for readers who have the AION-1 weights
#   (`embedder="aion"` below; steps at the end of this chapter);
# * `Encoder` — the default here: a compact convolutional network pretrained
#   self-supervised (contrastive) on the **unlabelled** random-sample cutouts, with
#   astronomy-appropriate augmentations (flips, 90° rotations, small shifts, noise re-drawn
#   from each band's sky noise, PSF jitter) and random band dropout so that northern (no
#   i-band) and southern galaxies share one encoder. It never sees a redshift.

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0
# "encoder" (built-in, default) or "aion" (needs the AION-1 weights)
embedder = "encoder"
aion_model = "polymathic-ai/aion-base"  # Hugging Face id or a local directory with the weights
dim = None  # embedding dimension of the built-in encoder; None: the scale's preset
epochs = None  # pretraining epochs; None: the scale's preset

# %%
from photozsom import plots
from photozsom.embed import load_embeddings
from photozsom.workflow import pipeline
from photozsom.workflow.book import outputs, publish_figure

plots.style()
run = pipeline.Run(data_dir)

# %% [markdown]
# ## Pretraining, then embedding every cutout
#
# `pipeline.run_embed` pretrains the encoder on random-sample cutouts only, so it never
# sees the spectroscopic sample's images before it embeds them; then `embed_to_file`
# streams the cutout store through it in chunks into `embeddings.h5`, keyed by `OBJID`
# (later chapters join on `OBJID`, never on row order) and resumable if interrupted.

# %%
info = pipeline.run_embed(
    run, scale=scale, seed=seed, embedder=embedder, aion_model=aion_model, dim=dim,
    epochs=epochs,
)
if "history" in info and info["n_pretrain"] is not None:
    print(f"pretrained on {info['n_pretrain']:,} unlabelled cutouts")
spec = run.spec()
emb, ids = load_embeddings(run.read("embed/embeddings.h5"), objid=spec["OBJID"].to_numpy())
print(f"{len(ids):,} spectroscopic embeddings of dimension {emb.shape[1]}")

# %% [markdown]
# ## What does the embedding hold?
#
# The encoder was never told a redshift, yet if it has learned what galaxies look like, the
# main directions of its embedding should follow colour, brightness and size, and through
# them redshift. Below: the first two principal components of the embeddings of the
# spectroscopic galaxies, coloured by spectroscopic redshift and by r-band magnitude, and
# the rank correlation of the leading components with physical properties.

# %%
from photozsom.embed.inspect import embedding_summary
from photozsom.features import magnitudes

pcs, corr = embedding_summary(emb, spec, n_components=5)
fig = plots.embedding_map(
    pcs,
    {
        "spectroscopic redshift": spec["Z"].to_numpy(),
        "r [AB mag]": magnitudes(spec, ("R",))["r"].to_numpy(),
    },
)
publish_figure("fig_emb", fig, run.figure("embedding_pca.png"))
corr.round(2)

# %% [markdown]
# ```{glue:figure} fig_emb
# :name: "figure-embedding"
#
# The first two principal components of the image embeddings of the spectroscopic galaxies,
# coloured by spectroscopic redshift (left) and r-band magnitude (right). Smooth gradients
# mean the embedding carries redshift information it was never trained on.
# ```
#
# ## Using AION-1 instead
#
# With access to the gated AION-1 weights (`polymathic-ai/aion-base` on Hugging Face):
#
# 1. `pip install "photozsom[aion]"` (installs `polymathic-aion` and `safetensors`);
# 2. `huggingface-cli login` and download the weights once, or point `aion_model` at a local
#    copy;
# 3. re-run this chapter with `-p embedder=aion` (cutouts must be at least 96 pixels: AION's
#    image codec centre-crops to 96×96, so simulate with `--cutout-size 160` or use real
#    160-pixel cutouts).
#
# `AIONEmbedder` batches southern (griz) and northern (grz) galaxies separately, passes all
# 576 image tokens to the encoder (`num_encoder_tokens=600`; the library default of 256
# silently drops most of them) and mean-pools the encoder tokens. It checks that the loaded
# weights are not randomly initialised, because `from_pretrained` loads non-strictly. AION
# was trained on DR10-south images; northern BASS/MzLS images are out of its training
# distribution.
#
# ## What this chapter wrote

# %%
outputs(run.write("embed/"), run.figure("embedding_pca.png"))
