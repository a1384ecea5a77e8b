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
# | `spec.parquet` | spectroscopic galaxies with DR10 photometry, `Z`, `SURVEY` | `photozsom.datasets.specz.compile_surveys` + `crossmatch` |
# | `random.parquet` | the representative random sample | DR10 sweeps read with `photozsom.datasets.legacysurvey` |
# | `cutouts.h5` | g, r, i, z cutouts, nanomaggies per pixel | `photozsom.datasets.cutouts.download_cutouts` + `fits_to_store` |
#
# By default the chapter *simulates* these files (see the introduction); the code path for
# real files is shown below and used when `spec_files` is set.

# %% tags=["parameters"]
scale = "ci"  # "ci" (minutes) or "default" (the published book)
data_dir = "runs/ci"  # where every chapter reads and writes
seed = 0  # the simulated sky is deterministic in the seed
# real data: {"DESI": "zpix-main.fits", "SDSS": "specObj-dr17.fits", ...}
spec_files = None
sweep_files = None  # real data: list of DR10 sweep FITS files (photometry to match)
random_files = None  # real data: list of DR10 sweep/random-galaxy files for the SOM
# real data: folder for downloaded cutouts, used when download is True
cutout_dir = None
download = False  # never contact the cutout service unless asked

# %%
import json
import time

import pandas as pd
from IPython.display import display

from photozsom import plots
from photozsom.book import outputs, publish_figure
from photozsom.datasets import simulate
from photozsom.datasets.summary import sky_settings_table, survey_summary
from photozsom.rundir import RunDir

plots.style()
run = RunDir(data_dir)
sky = run.path("sky")

# %% [markdown]
# ## The simulated sky
#
# `simulate` is deterministic in `seed`: the same seed gives byte-identical files, so the
# numbers in this book are reproducible. It skips the work when the files already exist.

# %%
t0 = time.time()
if spec_files is None:
    paths = simulate(sky, scale=scale, seed=seed, overwrite=False)
    settings = json.loads((sky / "settings.json").read_text())
    print(f"simulated sky in {sky} ({time.time() - t0:.0f} s)")
    sizes, per_band = sky_settings_table(settings)
    display(sizes)
    display(per_band)
else:
    from photozsom.datasets import crossmatch, cutouts, legacysurvey, specz

    readers = {"DESI": specz.read_desi, "SDSS": specz.read_sdss}
    catalogs, reports = [], []
    for survey, path in spec_files.items():
        reader = readers.get(survey.upper())
        cat, rep = (
            reader(path) if reader else specz.read_generic(path, survey=survey)
        )
        catalogs.append(cat)
        reports.append(rep)
    display(specz.cut_table(*reports))  # rows removed by each quality cut
    compiled, counts = specz.compile_surveys(catalogs)
    display(counts)  # duplicates and redshift range, per survey
    matched = crossmatch.crossmatch_stream(
        compiled, legacysurvey.iter_catalogs(sweep_files), radius_arcsec=2.0
    )
    print(
        f"{matched['MATCHED'].sum():,} of {len(matched):,} matched within 2 arcsec; "
        "the unmatched rows lie outside the footprint"
    )
    matched[matched["MATCHED"].to_numpy(bool)].to_parquet(sky / "spec.parquet")
    pd.concat(legacysurvey.iter_catalogs(random_files)).to_parquet(
        sky / "random.parquet"
    )
    if download:
        ok = matched[matched["MATCHED"].to_numpy(bool)]
        got = cutouts.download_cutouts(ok["RA"], ok["DEC"], ok["OBJID"], cutout_dir)
        print(got)
        good = got.table[got.table["STATUS"] != "failed"]
        cutouts.fits_to_store(good["PATH"], good["OBJID"], sky / "cutouts.h5")

# %%
spec = run.spec()
random = run.random()
print(f"spectroscopic galaxies: {len(spec):,}   random sample: {len(random):,}")
spec.head()

# %% [markdown]
# The columns carry DR10 names and units (fluxes in nanomaggies, `SHAPE_R` in arcsec), so
# everything downstream runs unchanged on real sweeps. `PHOTSYS` is `S` for the DECam
# southern footprint (with i-band) and `N` for the BASS/MzLS northern footprint (no
# i-band); `Z_TRUE` exists only in the simulation and is used for diagnostics, never for
# training.

# %%
per_survey = survey_summary(spec)
display(per_survey.round(3))

# %% [markdown]
# ## Figure 3: the redshift distribution of each survey
#
# As in the paper, the combined sample is dominated by DESI and SDSS, whose bright
# magnitude-limited programmes (BGS r < 19.5, SDSS main r < 17.77) fill z < 0.4 and whose
# colour-selected LRG and ELG programmes reach z ~ 1-1.6. Deep pencil-beam surveys
# (DEEP2/3, VVDS, VIPERS, PRIMUS) contribute few galaxies but sample fainter colours.

# %%
fig3 = plots.redshift_distributions(spec["Z"], spec["SURVEY"])
publish_figure("fig3", fig3, run.figure("figure3_nz_per_survey.png"))

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
from photozsom.datasets.store import CutoutStore

with CutoutStore(run.cutouts_path()) as store:
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
outputs(sky, run.figure("figure3_nz_per_survey.png"))
