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
# # Data: spectroscopic redshifts, Legacy Survey photometry and image cutouts
#
# *Paper section 2, "Data Preparation", and appendix C.*
#
# The paper combines about 16 million spectroscopic redshifts from 20 surveys, keeps the
# high-quality galaxy redshifts, cross-matches them within 2" to the DESI Legacy Survey DR10
# catalogue (fluxes, shapes, Galactic extinction) and downloads 160-pixel g, r, i, z image
# cutouts around each; about 12 million galaxies survive. A further 18 million random
# Legacy Survey galaxies form the *representative sample* on which the SOM is trained.
#
# So there are three kinds of data, and this chapter writes all three to `data_dir/sky/`:
#
# | file | what | real-data equivalent |
# |---|---|---|
# | `spec.parquet` | spectroscopic galaxies with DR10 photometry, `Z`, `SURVEY` | `photozsom.data.specz.compile_surveys` + `crossmatch` |
# | `random.parquet` | the representative random sample | DR10 sweeps read with `photozsom.data.legacysurvey` |
# | `cutouts.h5` | g, r, i, z cutouts, nanomaggies per pixel | `photozsom.data.cutouts.download_cutouts` + `fits_to_store` |
#
# By default the chapter *simulates* these files (see the introduction). Your own data enter
# through the parameters below: a spectroscopic table that already carries DR10 photometry
# columns (`spec_catalog`, the common case: a spec-z query with photometry attached), or raw
# spectroscopic files plus DR10 sweeps (`spec_files`, `sweep_files`), which go through the
# quality cuts, the compilation and the 2" cross-match. Northern (BASS/MzLS) cutouts come
# from the DR9-north layer of the cutout service, southern ones from DR10
# (`photozsom.data.assemble.CUTOUT_LAYERS`).

# %% tags=["parameters"]
scale = "ci"  # "ci" (minutes) or "default" (the published book)
data_dir = "runs/ci"  # where every chapter reads and writes
seed = 0  # the simulated sky is deterministic in the seed
# your own spectroscopic catalogue that already has DR10 photometry columns and Z
# (FITS / Parquet / CSV), and optionally a representative random sample for the SOM
spec_catalog = None
random_catalog = None
# or raw files: {"DESI": "zpix-main.fits", "SDSS": "specObj-dr17.fits",
#                "MyZ": ["my.csv", {"RA": "ra", "DEC": "dec", "Z": "z"}]}
spec_files = None
sweep_files = None  # DR10 sweep FITS files to match spec_files against
random_files = None  # DR10 sweep files for the random sample (default: sweep_files)
cutout_dir = None  # where downloaded cutouts go, used when download is True
download = False  # never contact the cutout service unless asked
split_by = None  # e.g. "ROSETTE": whole fields go to train, validation or test

# %%
from IPython.display import display

from photozsom import plots
from photozsom.data.summary import (
    mock_density_table,
    sky_settings_table,
    survey_summary,
)
from photozsom.workflow import pipeline
from photozsom.workflow.book import outputs, publish_figure

plots.style()
run = pipeline.Run(data_dir)

# %% [markdown]
# ## The data stage
#
# `photozsom.workflow.pipeline.run_data` writes the three kinds of data and the 80/10/10
# train/validation/test split (a seeded hash of `OBJID`, so every chapter agrees on it).
# The simulated sky is deterministic in `seed`: the same seed gives byte-identical files, so
# the numbers in this book are reproducible. It skips the simulation when the files exist.

# %%
info = pipeline.run_data(
    run,
    scale=scale,
    seed=seed,
    spec_catalog=spec_catalog,
    random_catalog=random_catalog,
    spec_files=spec_files,
    sweep_files=sweep_files,
    random_files=random_files,
    cutout_dir=cutout_dir,
    download=download,
    split_by=split_by,
)
print(f"{info['source']}: {info['n_spec']:,} spectroscopic, {info['n_random']:,} random galaxies")
print("split:", info["split"])
if "settings" in info:
    sizes, per_band = sky_settings_table(info["settings"])
    display(sizes)
    display(per_band)
if "cuts" in info:
    display(info["cuts"])  # rows removed by each quality cut
    display(info["counts"])  # duplicates and redshift range, per survey

# %%
spec = run.spec()
random = run.random()
print(f"spectroscopic galaxies: {len(spec):,}   random sample: {len(random):,}")
spec.head()

# %% [markdown]
# How realistic is the simulated sky? The random sample includes Milky Way stars (the
# truth column `IS_STAR`, never a feature; their `TYPE` is mostly PSF, as in the real
# catalogue, with some confusion at faint magnitudes), and the cutouts carry source photon
# noise on top of the sky noise. Surface densities of the DESI target classes and of stars,
# measured on this sky and against the published values:

# %%
if "settings" in info:
    display(mock_density_table(random, info["settings"]).round(2))

# %% [markdown]
# The columns carry DR10 names and units (fluxes in nanomaggies, `SHAPE_R` in arcsec), so
# everything downstream runs unchanged on real sweeps. `PHOTSYS` is `S` for the DECam
# southern footprint (with i-band) and `N` for the BASS/MzLS northern footprint (no
# i-band); `Z_TRUE` exists only in the simulation and is used for diagnostics, never for
# training.

# %%
if "SURVEY" not in spec:
    spec["SURVEY"] = "all"  # a user catalogue without a survey column
per_survey = survey_summary(spec)
display(per_survey.round(3))

# %% [markdown]
# ## Figure 3: the redshift distribution of each survey
#
# In the paper the combined sample is dominated by DESI and SDSS, whose bright
# magnitude-limited programmes (BGS r < 19.5, SDSS main r < 17.77) fill z < 0.4 and whose
# colour-selected LRG and ELG programmes reach z ~ 1-1.6; deep pencil-beam surveys
# (DEEP2/3, VVDS, VIPERS, PRIMUS) contribute few galaxies but sample fainter colours.
# Here, from this run's files:

# %%
fig3 = plots.redshift_distributions(spec["Z"], spec["SURVEY"])
publish_figure("fig3", fig3, run.figure("figure3_nz_per_survey.png"))
family = spec["SURVEY"].astype(str).str.split("_").str[0]
share = family.value_counts(normalize=True)
low_z = spec["Z"].to_numpy() < 0.4
print(
    f"here: the two largest survey families are {share.index[0]} ({share.iloc[0]:.0%}) and "
    f"{share.index[1] if len(share) > 1 else '-'} "
    f"({share.iloc[1] if len(share) > 1 else 0:.0%}); {low_z.mean():.0%} of the redshifts "
    f"are below 0.4 and {(spec['Z'] > 1).mean():.1%} above 1."
)

# %% [markdown]
# ```{glue:figure} fig3
# :name: "figure-3"
#
# **Figure 3:** the combined spectroscopic redshift distribution (left) and the normalised
# distribution of each survey (right), with the number of galaxies N in each title. Look for
# the bright, low-redshift surveys (SDSS, GAMA, 2dF, 6dF) against the colour-selected DESI
# LRG/ELG and the deep surveys that reach z > 1.
# ```

# %% [markdown]
# ## The spectroscopic sample is not the sky
#
# The point of the paper in one plot: spectroscopic targets are brighter than a random
# galaxy and occupy a different part of colour space.

# %%
fig = plots.spec_vs_random(spec, random, seed=seed)
publish_figure("fig_bias", fig, run.figure("data_spec_vs_random.png"))

# %% [markdown]
# ```{glue:figure} fig_bias
# :name: "figure-spec-vs-random"
#
# The spectroscopic sample (orange) against the random sample (blue) in the south: the
# spectroscopic galaxies are brighter (left, r-band magnitude) and cluster in the colour
# regions that survey selections target (right, g-r against r-z).
# ```

# %% [markdown]
# ## Image cutouts
#
# Each spectroscopic galaxy, and a subset of the random sample (unlabelled images for
# self-supervised pretraining), has g, r, i, z cutouts at 0.262"/pixel in `cutouts.h5`.
# Northern galaxies have no i-band: the band is NaN and its mask is False.

# %%
from photozsom.embed.store import CutoutStore

with CutoutStore(run.cutouts_path()) as store:  # needs cutouts: simulated, or download=True
    print(store)
    rows = store.rows_of(spec["OBJID"].to_numpy()[:8])
    images, mask, ids = store.read(rows)
    size, pixscale = store.size, store.pixscale
titles = [
    f"z = {z:.2f} ({s})"
    for z, s in zip(spec["Z"].to_numpy()[:8], spec["SURVEY"].to_numpy()[:8])
]
fig = plots.cutout_grid(images, titles, pixscale=pixscale)
publish_figure("fig_cutouts", fig, run.figure("data_cutouts.png"))

# %% [markdown]
# ```{glue:figure} fig_cutouts
# :name: "figure-cutouts"
#
# Eight spectroscopic galaxies as z, r, g colour composites (asinh stretch), with their
# spectroscopic redshift and survey. Axes in arcsec.
# ```
#
# ## What this chapter wrote

# %%
outputs(run.write("sky/"), run.figure("figure3_nz_per_survey.png"))
