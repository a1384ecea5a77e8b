"""Diagnostic plots of a simulated sky: N(z) per survey and colour-redshift diagrams.

Usage::

    python benchmarks/plot_mock.py SKY_DIR [--out DIR]

where SKY_DIR holds the files written by ``photozsom simulate`` (``spec.parquet``,
``random.parquet``). Writes ``mock_nz_per_survey.png`` (the analogue of the paper's
appendix C, Figure 3), ``mock_colour_redshift.png`` (g-r, r-z, z-W1, W1-W2 against the
true redshift for the random sample, with the spectroscopic programmes on top) and
``mock_colour_colour.png`` (g-r vs r-z and r-z vs z-W1, random vs spectroscopic, with the
random sample's stars in red), and prints the surface densities the sky matches against their
published values (:func:`photozsom.data.summary.mock_density_table`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from photozsom.features import magnitudes


def nz_per_survey(spec: pd.DataFrame, path: Path) -> None:
    counts = spec["SURVEY"].value_counts()
    names = list(counts.index)
    bins = np.linspace(0, 1.6, 65)
    fig = plt.figure(figsize=(16, 9))
    ax0 = fig.add_axes([0.05, 0.1, 0.3, 0.8])
    ax0.hist(spec["Z"], bins=bins, color="k", histtype="stepfilled", alpha=0.3)
    bottom = np.zeros(bins.size - 1)
    for i, name in enumerate(names):
        h, _ = np.histogram(spec.loc[spec["SURVEY"] == name, "Z"], bins=bins)
        ax0.bar(bins[:-1], h, width=np.diff(bins), bottom=bottom, align="edge", label=name, lw=0,
                color=f"C{i % 10}")
        bottom += h
    ax0.set_xlabel("spectroscopic redshift Z")
    ax0.set_ylabel("galaxies per bin")
    ax0.set_title(f"all surveys, N = {len(spec):,}")
    ax0.legend(fontsize=7, ncol=2)
    ncol = 5
    nrow = int(np.ceil(len(names) / ncol))
    for i, name in enumerate(names):
        ax = fig.add_axes([0.40 + (i % ncol) * 0.118, 0.9 - (i // ncol + 1) * (0.8 / nrow), 0.105,
                           0.8 / nrow - 0.05])
        z = spec.loc[spec["SURVEY"] == name, "Z"]
        ax.hist(z, bins=bins, density=True, color=f"C{i % 10}")
        ax.set_title(f"{name}  N={len(z):,}", fontsize=8)
        ax.set_yticks([])
        ax.tick_params(labelsize=6)
        ax.set_xlim(0, 1.6)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def colour_redshift(spec: pd.DataFrame, rand: pd.DataFrame, path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    south = rand[rand["PHOTSYS"] == "S"]
    south = south.iloc[rng.permutation(len(south))[:60000]]
    mr = magnitudes(south, name="random")
    ms = magnitudes(spec, name="spec")
    bright = (mr["r"] < 23.0).to_numpy()
    pairs = [("g", "r"), ("r", "z"), ("z", "w1"), ("w1", "w2")]
    fig, axs = plt.subplots(2, 4, figsize=(18, 8), sharex=True)
    for j, (a, b) in enumerate(pairs):
        ax = axs[0, j]
        ax.hexbin(south["Z_TRUE"][bright], (mr[a] - mr[b])[bright], gridsize=70, extent=(0, 1.6, -1, 3.5),
                  bins="log", cmap="Greys", mincnt=1)
        ax.set_ylabel(f"{a}-{b} (AB)")
        ax.set_title(f"random sample, south, r < 23: {a}-{b}")
        ax = axs[1, j]
        for k, prog in enumerate(["BGS", "LRG", "ELG", "MGS", "BOSS"]):
            sel = (spec["PROGRAM"] == prog).to_numpy()
            ax.scatter(spec["Z"][sel], (ms[a] - ms[b])[sel], s=1, alpha=0.3, color=f"C{k}", label=prog)
        ax.set_ylim(-1, 3.5)
        ax.set_xlabel("redshift")
        ax.set_ylabel(f"{a}-{b} (AB)")
        ax.set_title(f"spectroscopic programmes: {a}-{b}")
        if j == 0:
            ax.legend(markerscale=8, fontsize=8)
    axs[0, 0].set_xlim(0, 1.6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def colour_colour(spec: pd.DataFrame, rand: pd.DataFrame, path: Path) -> None:
    mr = magnitudes(rand, name="random")
    ms = magnitudes(spec, name="spec")
    fig, axs = plt.subplots(1, 3, figsize=(17, 5.5))
    ax = axs[0]
    ax.hexbin(mr["r"] - mr["z"], mr["g"] - mr["r"], gridsize=80, extent=(-0.5, 2.5, -0.5, 2.5), bins="log",
              cmap="Greys", mincnt=1)
    ax.scatter(ms["r"] - ms["z"], ms["g"] - ms["r"], s=1, c=spec["Z"], cmap="viridis", vmin=0, vmax=1.6, alpha=0.4)
    star = rand["IS_STAR"].to_numpy() if "IS_STAR" in rand else np.zeros(len(rand), bool)
    few = np.flatnonzero(star)[:5000]
    ax.scatter((mr["r"] - mr["z"]).to_numpy()[few], (mr["g"] - mr["r"]).to_numpy()[few], s=1, color="C3",
               alpha=0.3, label="stars (random)")
    ax.set_xlabel("r-z")
    ax.set_ylabel("g-r")
    ax.set_title("grey: random sample; points: spec, coloured by Z")
    if few.size:
        ax.legend(markerscale=8, loc="upper left")
    ax = axs[1]
    ax.hexbin(mr["r"] - mr["z"], mr["z"] - mr["w1"], gridsize=80, extent=(-0.5, 2.5, -1.5, 3.0), bins="log",
              cmap="Greys", mincnt=1)
    sc = ax.scatter(ms["r"] - ms["z"], ms["z"] - ms["w1"], s=1, c=spec["Z"], cmap="viridis", vmin=0, vmax=1.6,
                    alpha=0.4)
    ax.scatter((mr["r"] - mr["z"]).to_numpy()[few], (mr["z"] - mr["w1"]).to_numpy()[few], s=1, color="C3",
               alpha=0.3)
    rz = np.linspace(-0.5, 2.5, 2)
    ax.plot(rz, 0.8 * rz - 0.6, "k--", lw=1, label="DESI LRG non-stellar cut")
    ax.legend(loc="upper left")
    ax.set_xlabel("r-z")
    ax.set_ylabel("z-W1")
    fig.colorbar(sc, ax=ax, label="Z")
    ax = axs[2]
    bins = np.linspace(14, 26, 61)
    ax.hist(mr["r"], bins=bins, density=True, histtype="step", label="random", color="C0")
    ax.hist(ms["r"], bins=bins, density=True, histtype="step", label="spectroscopic", color="C1")
    ax.set_xlabel("r (AB, extinction-corrected)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sky", help="directory written by photozsom simulate")
    p.add_argument("--out", default=None, help="where to write the PNGs (default: SKY)")
    a = p.parse_args(argv)
    sky = Path(a.sky)
    out = Path(a.out) if a.out else sky
    out.mkdir(parents=True, exist_ok=True)
    spec = pd.read_parquet(sky / "spec.parquet")
    rand = pd.read_parquet(sky / "random.parquet")
    nz_per_survey(spec, out / "mock_nz_per_survey.png")
    colour_redshift(spec, rand, out / "mock_colour_redshift.png")
    colour_colour(spec, rand, out / "mock_colour_colour.png")
    for name in ("mock_nz_per_survey.png", "mock_colour_redshift.png", "mock_colour_colour.png"):
        print(out / name)
    settings_path = sky / "settings.json"
    if settings_path.exists():
        import json

        from photozsom.data.summary import mock_density_table

        settings = json.loads(settings_path.read_text())
        if "random_area_deg2" in settings:
            with pd.option_context("display.width", 200, "display.max_colwidth", 40):
                print(mock_density_table(rand, settings).drop(columns=["selection"]).round(2))


if __name__ == "__main__":
    main()
