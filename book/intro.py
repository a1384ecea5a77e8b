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
# # photozsom: where can a photometric redshift be trusted?
#
# placeholder introduction

# %% tags=["parameters"]
scale = "ci"
data_dir = "runs/ci"
seed = 0

# %%
import photozsom

print("photozsom", photozsom.__version__)
