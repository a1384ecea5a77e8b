"""One function per figure of the paper (and of the book), in one seaborn style.

Every function returns the matplotlib ``Figure`` and never calls ``plt.show()``; chapters
display and save it (:func:`save`). Axes carry units; colour bars are labelled.

=========================  ==============================================================
function                   figure
=========================  ==============================================================
:func:`redshift_distributions`  Figure 3: N(z) per survey and combined
:func:`som_maps`           Figure 7 (and occupancy maps): values on the SOM grid
:func:`metric_vs_count`    Figures 1 and 8: cell metric vs training count
:func:`cutout_grid`        Figure 2: cutouts from flagged cells
:func:`zphot_vs_zspec`     Figures 4 and 5: KDE of z_phot vs z_spec, intervals / PCOs
:func:`pit_histogram`      Figure 6: PIT with widened outer bins
:func:`loss_curves`        MDN train / validation CRPS per epoch
:func:`example_pdfs`       a few P(z|X) with the true redshift
:func:`threshold_curve`    fraction kept and metrics of what is kept vs threshold
:func:`spec_vs_random`     magnitudes and colours of the spectroscopic vs random sample
:func:`embedding_map`      embedding principal components coloured by a property
:func:`plot_detection`     a flag as a detector: precision and recall vs fraction flagged
=========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from photozsom.evaluation.detection import TRUTH_LABELS
from photozsom.features import magnitudes

__all__ = [
    "LS_RGB_WEIGHTS",
    "SCORE_LABELS",
    "cutout_grid",
    "embedding_map",
    "example_pdfs",
    "loss_curves",
    "metric_vs_count",
    "pit_histogram",
    "plot_detection",
    "redshift_distributions",
    "rgb_image",
    "save",
    "som_maps",
    "spec_vs_random",
    "style",
    "threshold_curve",
    "zphot_vs_zspec",
]

#: Axis labels of the paper's metrics.
METRIC_LABELS = {
    "mad": r"MAD of $\Delta z$",
    "bias": r"bias $\langle \Delta z \rangle$",
    "eta": r"outlier fraction $\eta$ [%]",
    "pco": "PCO fraction [%]",
    "z_mean": "mean spectroscopic redshift",
    "n_train": r"$\log_{10}$ training count",
    "count": "test galaxies in cell",
}
_PERCENT = {"eta", "pco"}

#: Legend labels of the continuous flag scores of
#: :func:`photozsom.workflow.validation.score_flag_against_truth` and
#: :func:`~photozsom.workflow.validation.compare_maps` (:func:`plot_detection`).
SCORE_LABELS: dict[str, str] = {
    "n_train": "SOM: training galaxies in the cell (fewer = worse)",
    "distance": "SOM: distance to the prototype",
    "cell_eta": "SOM: cell's outlier rate (cross-fitted)",
    "pz_width": "no SOM: P(z) 90% width / (1 + z_phot)",
    "colour: n_train": "colour SOM: training galaxies in the cell",
    "embedding: n_train": "embedding SOM: training galaxies in the cell",
    "colour: cell_eta": "colour SOM: cell's outlier rate (cross-fitted)",
    "embedding: cell_eta": "embedding SOM: cell's outlier rate (cross-fitted)",
}


def style() -> None:
    """The book's plotting style (seaborn 'ticks', colour-blind palette, readable fonts)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="ticks", palette="colorblind",
                  rc={"figure.dpi": 100, "savefig.dpi": 150, "axes.titleweight": "bold",
                      "figure.constrained_layout.use": True})


def save(fig: plt.Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG (parents created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def redshift_distributions(z: np.ndarray, survey: Sequence[str], *, bins: int = 64,
                           z_range: tuple[float, float] = (0.0, 1.6), ncols: int = 4) -> plt.Figure:
    """Figure 3: the combined N(z) (left) and the normalised N(z) of each survey (right).

    Parameters
    ----------
    z : ndarray, shape (N,)
        Spectroscopic redshifts.
    survey : sequence of str, shape (N,)
        Survey of each redshift; panels are ordered by size, with N in each title.
    """
    z = np.asarray(z, dtype=float)
    survey = np.asarray(survey).astype(str)
    names, counts = np.unique(survey, return_counts=True)
    order = np.argsort(-counts)
    names, counts = names[order], counts[order]
    edges = np.linspace(*z_range, bins + 1)
    nrows = int(np.ceil(len(names) / ncols))
    fig = plt.figure(figsize=(4 + 2.6 * ncols, max(4.0, 1.7 * nrows)))
    gs = fig.add_gridspec(nrows, ncols + 2)
    ax0 = fig.add_subplot(gs[:, :2])
    ax0.hist(z, bins=edges, color="0.3")
    ax0.set_xlabel("spectroscopic redshift $z$")
    ax0.set_ylabel("galaxies per bin")
    ax0.set_title(f"All surveys, N={len(z):,}")
    for k, (name, n) in enumerate(zip(names, counts)):
        ax = fig.add_subplot(gs[k // ncols, 2 + k % ncols])
        ax.hist(z[survey == name], bins=edges, density=True, color=f"C{k % 10}")
        ax.set_title(f"{name}, N={n:,}", fontsize=9)
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
        if k // ncols == nrows - 1 or k + ncols >= len(names):
            ax.set_xlabel("$z$", fontsize=9)
    return fig


def _grid(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.size != shape[0] * shape[1]:
        raise ValueError(f"expected {shape[0] * shape[1]} cell values for a {shape} map, got {values.size}")
    return values.reshape(shape)


def som_maps(maps: Mapping[str, np.ndarray], shape: tuple[int, int], *, ncols: int = 2,
             cmaps: Mapping[str, str] | None = None, clip: tuple[float, float] | None = (2, 98),
             labels: Mapping[str, str] | None = None, centered: Sequence[str] = ("bias",)) -> plt.Figure:
    """Values on the SOM grid, one panel per map (Figure 7, occupancy maps).

    Parameters
    ----------
    maps : mapping of name -> ndarray, shape (rows * cols,)
        One value per cell, flat index ``row * cols + col``; NaN (empty cells) is grey.
    shape : (rows, cols)
    clip : (lo, hi) percentiles or None
        Colour range clipped to these percentiles of the finite values, "so as to keep a
        sensible dynamic range" as in the paper.
    centered : names whose colour scale is symmetric about zero (diverging map).
    """
    labels = {**METRIC_LABELS, **(labels or {})}
    cmaps = dict(cmaps or {})
    n = len(maps)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.0 * nrows), squeeze=False)
    for ax, (name, vals) in zip(axes.flat, maps.items()):
        g = _grid(vals, shape)
        finite = g[np.isfinite(g)]
        vmin = vmax = None
        if clip is not None and finite.size:
            vmin, vmax = np.percentile(finite, clip)
        cmap = cmaps.get(name, "viridis")
        if name in centered and finite.size:
            lim = np.nanmax(np.abs([vmin, vmax])) if vmin is not None else np.abs(finite).max()
            vmin, vmax, cmap = -lim, lim, cmaps.get(name, "RdBu_r")
        cm = plt.get_cmap(cmap).copy()
        cm.set_bad("0.85")
        im = ax.imshow(np.ma.masked_invalid(g), origin="lower", cmap=cm, vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        ax.set_xlabel("SOM column")
        ax.set_ylabel("SOM row")
        label = labels.get(name, name)
        ax.set_title(label.split(" [")[0] if len(label) < 40 else name)
        fig.colorbar(im, ax=ax, shrink=0.85, label=label)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig


def metric_vs_count(report, *, metrics: Sequence[str] = ("mad", "bias", "eta", "pco"),
                    mask_zero_outliers: bool = True, count_col: str = "n_train",
                    global_label: str = "global") -> plt.Figure:
    """Figures 1 and 8: each cell's metric against its training count.

    Parameters
    ----------
    report : CellReport
        :func:`photozsom.evaluation.cells.report` output (columns ``<metric>``, ``<metric>_err``,
        ``<metric>_sigma0``, ``<metric>_signif``, ``n_train``, ``count``, ``status``).
    mask_zero_outliers : bool
        Figure 1 hides cells with no outlier (eta and PCO of exactly 0) "for clarity";
        Figure 8 shows them.
    global_label : str
        What the global value is measured on, for the legend (e.g. "all out-of-fold galaxies").

    Notes
    -----
    Error bars are the bootstrap errors; the dashed red lines are the global value plus and
    minus the 1-sigma of the null distribution the significance test uses for a cell of that
    size (``<metric>_sigma0``: the sampling error of the global MAD, the binomial error of
    η and PCO; for the bias the test uses each cell's own scatter, and the band shows its
    median); significant cells (Benjamini-Hochberg) are drawn in red.
    """
    glob = dict(report.global_)
    report = report.table
    rep = report[report["status"] != "empty"] if "status" in report else report
    rep = full = rep[rep[count_col] > 0]
    if mask_zero_outliers and {"eta", "pco"} <= set(rep.columns):
        rep = rep[(rep["eta"] > 0) | (rep["pco"] > 0)]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        scale = 100.0 if m in _PERCENT else 1.0
        x = rep[count_col].to_numpy(float)
        y = rep[m].to_numpy(float) * scale
        err = rep.get(f"{m}_err", pd.Series(np.nan, index=rep.index)).to_numpy(float) * scale
        sig = rep.get(f"{m}_signif", pd.Series(False, index=rep.index)).to_numpy(bool)
        ax.errorbar(x[~sig], y[~sig], yerr=err[~sig], fmt="o", ms=3, alpha=0.5, lw=0.8, color="C0",
                    label="cell")
        if sig.any():
            ax.errorbar(x[sig], y[sig], yerr=err[sig], fmt="o", ms=3.5, lw=0.8, color="C3",
                        label="significant (BH)")
        g = glob.get(m)
        if g is not None and np.isfinite(g):
            unit = "%" if m in _PERCENT else ""
            ax.axhline(g * scale, color="k", lw=1.2,
                       label=f"{global_label} = {g * scale:.3g}{unit}")
            if f"{m}_sigma0" in rep and len(rep):
                # The reference sigma scales as k / sqrt(n_test) (standard error of the mean or
                # std, binomial); the expected test count of a cell is its training count times
                # the test/train ratio of the whole sample.
                k = np.nanmedian(full[f"{m}_sigma0"].to_numpy(float)
                                 * np.sqrt(full["count"].to_numpy(float)))
                ratio = full["count"].sum() / max(full[count_col].sum(), 1)
                xs = np.logspace(np.log10(max(x.min(), 1)), np.log10(x.max() + 1), 100)
                band = k / np.sqrt(np.maximum(xs * ratio, 1.0)) * scale
                ax.plot(xs, g * scale + band, "r--", lw=1, label=r"test's null $\pm 1\sigma$ for cell size")
                lower = g * scale - band
                if m != "bias":                          # MAD, eta and PCO cannot be negative
                    lower = np.maximum(lower, 0.0)
                ax.plot(xs, lower, "r--", lw=1)
        if m != "bias" and len(y):                  # non-negative metrics: axis starts at 0
            top = np.nanmax(np.r_[y + np.nan_to_num(err), (g or 0) * scale])
            ax.set_ylim(-0.03 * top, 1.05 * top)
        ax.set_xscale("log")
        ax.set_xlabel("training galaxies in cell [log scale]")
        ax.set_ylabel(METRIC_LABELS.get(m, m))
        ax.legend(fontsize=8, loc="best")
    return fig


#: Band weights of the Legacy Survey viewer's colour images (g 6.0, r 3.4, z 2.2).
LS_RGB_WEIGHTS = {"g": 6.0, "r": 3.4, "i": 2.8, "z": 2.2}


def rgb_image(image: np.ndarray, *, bands: tuple[int, int, int] = (3, 1, 0),
              names: str = "griz", q: float = 8.0) -> np.ndarray:
    """A colour image of one cutout: Lupton et al. (2004) asinh RGB, as the Legacy Survey viewer.

    The three bands (default z, r, g as R, G, B) are weighted as the viewer does
    (:data:`LS_RGB_WEIGHTS`), the black level is each band's background noise (robust
    standard deviation) and the stretch is set by the brightest band at the centre, so the
    target galaxy is bright but not saturated whatever its flux.

    Parameters
    ----------
    image : ndarray, shape (4, H, W)
        Nanomaggies per pixel, bands g, r, i, z (NaN, e.g. an absent band, is shown as 0).
    bands : (int, int, int)
        Indices of the R, G, B bands in ``image``.
    names : str
        Band letters of ``image``'s first axis.
    q : float
        Asinh softening of :func:`astropy.visualization.make_lupton_rgb`.

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    from astropy.stats import mad_std
    from astropy.visualization import make_lupton_rgb

    ch = [np.nan_to_num(np.asarray(image[b], float)) * LS_RGB_WEIGHTS[names[b]] for b in bands]
    sky = np.array([mad_std(c) for c in ch])
    h, w = ch[0].shape[0] // 2, ch[0].shape[1] // 2
    peak = max(float(c[h - 2:h + 3, w - 2:w + 3].max() - s) for c, s in zip(ch, sky))
    return make_lupton_rgb(*ch, minimum=sky, stretch=max(peak, 1e-6), Q=q)


def cutout_grid(images: np.ndarray, titles: Sequence[str], *, ncols: int = 4,
                bands: tuple[int, int, int] = (3, 1, 0), pixscale: float = 0.262) -> plt.Figure:
    """Figure 2: colour (z, r, g as R, G, B) cutouts in a grid, stretched by :func:`rgb_image`.

    Parameters
    ----------
    images : ndarray, shape (N, 4, H, W)
        Nanomaggies per pixel, bands g, r, i, z.
    titles : sequence of str
        One title per cutout (e.g. cell, bias, z_spec, z_phot).
    bands : (int, int, int)
        Indices of the R, G, B bands.
    pixscale : float
        Arcsec per pixel, for the axis scale.
    """
    images = np.asarray(images, dtype=float)
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 3.0 * nrows), squeeze=False)
    half = images.shape[-1] * pixscale / 2
    for ax, img, title in zip(axes.flat, images, titles):
        ax.imshow(rgb_image(img, bands=bands), origin="lower", extent=(-half, half, -half, half))
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("arcsec", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("arcsec", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig


def _kde_background(ax, z_true, z_pred, zmax, seed, n_kde=4000, gridsize=120):
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(seed)
    sel = rng.choice(len(z_true), size=min(n_kde, len(z_true)), replace=False)
    kde = gaussian_kde(np.vstack([z_true[sel], z_pred[sel]]))
    g = np.linspace(0, zmax, gridsize)
    xx, yy = np.meshgrid(g, g)
    dens = kde(np.vstack([xx.ravel(), yy.ravel()])).reshape(xx.shape)
    im = ax.imshow(np.log10(dens + dens.max() * 1e-4), origin="lower", extent=(0, zmax, 0, zmax),
                   cmap="Greys", aspect="auto")
    ax.plot([0, zmax], [0, zmax], "k:", lw=1)
    zz = np.linspace(0, zmax, 50)
    for s in (1, -1):
        ax.plot(zz, zz + s * 0.15 * (1 + zz), color="0.5", lw=0.8, ls="--")
    ax.set_xlim(0, zmax)
    ax.set_ylim(0, zmax)
    ax.set_xlabel("spectroscopic redshift $z$")
    ax.set_ylabel(r"photometric redshift $\hat z$")
    return im


def zphot_vs_zspec(z_true: np.ndarray, z_pred: np.ndarray, *, lo: np.ndarray | None = None,
                   hi: np.ndarray | None = None, highlight: np.ndarray | None = None,
                   n_points: int = 300, zmax: float = 1.6, seed: int = 0, title: str = "") -> plt.Figure:
    """Figures 4 and 5: Gaussian-KDE density of (z_spec, z_phot) with points on top.

    Parameters
    ----------
    z_true, z_pred : ndarray, shape (N,)
    lo, hi : ndarray, shape (N,), optional
        Interval bounds drawn as error bars on ``n_points`` random galaxies (Figure 4: 90%).
    highlight : ndarray of bool, shape (N,), optional
        Galaxies drawn as red points instead (Figure 5: the PCOs).
    """
    z_true = np.asarray(z_true, float)
    z_pred = np.asarray(z_pred, float)
    fig, ax = plt.subplots(figsize=(6.2, 5.4))
    im = _kde_background(ax, z_true, z_pred, zmax, seed)
    fig.colorbar(im, ax=ax, label=r"$\log_{10}$ KDE density")
    rng = np.random.default_rng(seed + 1)
    if highlight is not None:
        idx = np.flatnonzero(np.asarray(highlight, bool))
        ax.scatter(z_true[idx], z_pred[idx], s=6, color="C3", alpha=0.7,
                   label=f"truth outside 99% interval ({len(idx):,})")
        ax.legend(loc="upper left", fontsize=8)
    elif lo is not None and hi is not None:
        idx = rng.choice(len(z_true), size=min(n_points, len(z_true)), replace=False)
        yerr = np.vstack([z_pred[idx] - np.asarray(lo)[idx], np.asarray(hi)[idx] - z_pred[idx]])
        ax.errorbar(z_true[idx], z_pred[idx], yerr=np.clip(yerr, 0, None), fmt="o", ms=2.5, lw=0.6,
                    color="C0", alpha=0.7, label="90% interval (random subset)")
        ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def pit_histogram(pit: np.ndarray, *, bins: int = 50, tail: float = 0.005) -> plt.Figure:
    """Figure 6: PIT histogram with the PCO tails as their own bins.

    The inner bins are ``1 / bins`` wide; the two outer bins span exactly the PCO tails
    ``[0, tail]`` and ``[1 - tail, 1]`` (0.005 for the central 99% interval), so their heights
    show the probabilistic outliers undiluted. Heights are densities: a calibrated model lies
    on 1 everywhere, tails included; the legend gives the fraction in each tail.
    """
    pit = np.asarray(pit, float)
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.concatenate([[0.0, tail], inner[(inner > tail) & (inner < 1 - tail)], [1 - tail, 1.0]])
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    lo, hi = float(np.mean(pit < tail)), float(np.mean(pit > 1 - tail))
    ax.hist(pit, bins=edges, density=True, color="C0", edgecolor="white", lw=0.4,
            label=f"PIT < {tail:g}: {lo:.2%}, PIT > {1 - tail:g}: {hi:.2%} "
                  f"(calibrated: {tail:.1%} each)")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="perfect calibration")
    ax.set_xlabel(r"PIT $= \mathrm{CDF}(z_{\rm spec})$")
    ax.set_ylabel("density")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8)
    return fig


def loss_curves(history: pd.DataFrame) -> plt.Figure:
    """Train and validation CRPS per epoch (``history`` from :meth:`photozsom.mdn.MDN.fit`)."""
    h = pd.DataFrame(history)
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(h["epoch"], h["train_crps"], label="training")
    ax.plot(h["epoch"], h["val_crps"], label="validation (10%)")
    best = h["val_crps"].idxmin()
    ax.axvline(h.loc[best, "epoch"], color="0.5", ls=":", label="best epoch (kept)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean CRPS [redshift]")
    ax.legend(fontsize=8)
    return fig


def example_pdfs(pdf, z_true: np.ndarray, index: Sequence[int], *, ncols: int = 3) -> plt.Figure:
    """A few P(z|X) (a :class:`photozsom.pdf.MixturePDF`) with the true redshift marked."""
    index = list(index)
    grid = np.linspace(0, 1.6, 801)
    dens = pdf[np.asarray(index)].evaluate(grid)
    nrows = int(np.ceil(len(index) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.6 * nrows), squeeze=False, sharex=True)
    for ax, i, d in zip(axes.flat, index, dens):
        ax.plot(grid, d, color="C0")
        ax.axvline(z_true[i], color="C3", ls="--", lw=1, label="$z_{\\rm spec}$")
        ax.set_ylabel("P(z|X)")
        ax.set_title(f"galaxy {i}", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("redshift $z$")
    axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(index):]:
        ax.set_visible(False)
    return fig


def threshold_curve(curve: pd.DataFrame, *, x: str = "threshold", xlabel: str = "threshold") -> plt.Figure:
    """Fraction of a sample kept and the metrics of what is kept, against a flag threshold."""
    c = pd.DataFrame(curve)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].plot(c[x], 100 * c["fraction_kept"], "k-o", ms=3)
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel("galaxies kept [%]")
    ax = axes[1]
    ax.plot(c[x], c["mad"], "-o", ms=3, label="MAD")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MAD of kept galaxies")
    ax2 = ax.twinx()
    ax2.plot(c[x], 100 * c["eta"], "-s", ms=3, color="C1", label=r"$\eta$")
    if "pco" in c:
        ax2.plot(c[x], 100 * c["pco"], "-^", ms=3, color="C2", label="PCO")
    ax2.set_ylabel("outlier / PCO fraction of kept [%]")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    pos = c[x][c[x] > 0]
    if len(pos) and pos.max() / pos.min() > 50:          # thresholds spanning decades
        for a in axes:
            if (c[x] <= 0).any():                        # a threshold of 0 (keep all): linear near 0
                a.set_xscale("symlog", linthresh=float(pos.min()), linscale=0.5)
            else:
                a.set_xscale("log")
            a.set_xlabel(f"{xlabel} [log scale]")
    return fig


def spec_vs_random(spec: pd.DataFrame, random: pd.DataFrame, *, n_points: int = 4000,
                   seed: int = 0) -> plt.Figure:
    """The spectroscopic sample against the random sample (southern rows, with i-band).

    Left: r-band magnitude distributions (extinction-corrected asinh AB mag). Right: g-r
    against r-z for a random subset of each.
    """

    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(14, 25, 56)
    for df, lab in ((random, "random sample"), (spec, "spectroscopic")):
        m = magnitudes(df[df["PHOTSYS"] == "S"], ("G", "R", "Z"))
        axes[0].hist(m.r, bins=bins, density=True, histtype="step", lw=2, label=lab)
        sel = rng.choice(len(m), size=min(n_points, len(m)), replace=False)
        axes[1].scatter((m.r - m.z).to_numpy()[sel], (m.g - m.r).to_numpy()[sel], s=1, alpha=0.3, label=lab)
    axes[0].set_xlabel("r [AB mag, extinction-corrected]")
    axes[0].set_ylabel("density [1/mag]")
    axes[0].legend()
    axes[1].set_xlim(-0.5, 2.5)
    axes[1].set_ylim(-0.5, 2.5)
    axes[1].set_xlabel("r - z [mag]")
    axes[1].set_ylabel("g - r [mag]")
    axes[1].legend(markerscale=8)
    return fig


def embedding_map(pcs: np.ndarray, colour_by: Mapping[str, np.ndarray], *, n_points: int = 20000,
                  seed: int = 0) -> plt.Figure:
    """First two principal components of an embedding, one panel per colouring quantity.

    Parameters
    ----------
    pcs : ndarray, shape (N, >=2)
    colour_by : mapping label -> ndarray, shape (N,)
        Label (with unit) -> value used for the colour of each point.
    """
    rng = np.random.default_rng(seed)
    sel = rng.choice(len(pcs), size=min(n_points, len(pcs)), replace=False)
    fig, axes = plt.subplots(1, len(colour_by), figsize=(5.2 * len(colour_by), 4.3), squeeze=False)
    for ax, (label, v) in zip(axes.flat, colour_by.items()):
        v = np.asarray(v, float)[sel]
        lo, hi = np.nanpercentile(v, [2, 98])
        sc = ax.scatter(pcs[sel, 0], pcs[sel, 1], c=v, s=2, cmap="viridis", vmin=lo, vmax=hi, rasterized=True)
        ax.set_xlabel("embedding PC 1")
        ax.set_ylabel("embedding PC 2")
        fig.colorbar(sc, ax=ax, label=label)
    return fig


def metrics_vs_redshift(by_z: pd.DataFrame, *, metrics: Sequence[str] = ("mad", "bias", "eta", "pco"),
                        global_values: Mapping[str, float] | None = None) -> plt.Figure:
    """MAD, bias, η, PCO against spectroscopic redshift (:func:`photozsom.evaluation.cells.metrics_by_redshift`)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), squeeze=False, sharex=True)
    for ax, m in zip(axes.flat, metrics):
        scale = 100.0 if m in _PERCENT else 1.0
        xerr = np.vstack([by_z["z_mid"] - by_z["z_lo"], by_z["z_hi"] - by_z["z_mid"]])
        ax.errorbar(by_z["z_mid"], by_z[m] * scale, yerr=by_z[f"{m}_err"] * scale, xerr=xerr,
                    fmt="o", ms=4, lw=1, color="C0", label="redshift bin")
        if global_values and m in global_values:
            ax.axhline(global_values[m] * scale, color="k", ls=":", lw=1, label="global")
        if m == "bias":
            ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_ylabel(METRIC_LABELS.get(m, m))
        ax.legend(fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("spectroscopic redshift $z$")
    return fig


def flag_by_magnitude(by_mag: pd.DataFrame) -> plt.Figure:
    """Flagged fractions and MAD of flagged / unflagged galaxies per r-magnitude bin."""
    mid = 0.5 * (by_mag["r_lo"] + by_mag["r_hi"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for col, lab in (("flagged", "flagged"), ("ood", "out of distribution"),
                     ("underperforming", "under-performing cell")):
        a.plot(mid, 100 * by_mag[col], "o-", label=lab)
    a.set_xlabel("r [AB mag]")
    a.set_ylabel("random sample [%]")
    a.set_ylim(0, 100)
    a.legend(fontsize=8)
    b.plot(mid, by_mag["mad_flagged"], "o-", color="C3", label="flagged")
    b.plot(mid, by_mag["mad_unflagged"], "o-", color="C0", label="not flagged")
    b.set_xlabel("r [AB mag]")
    b.set_ylabel(METRIC_LABELS.get("mad", "MAD"))
    b.legend(fontsize=8)
    return fig


def threshold_choice(table: pd.DataFrame) -> plt.Figure:
    """The scan of :func:`photozsom.flags.choose_thresholds`: Youden's J and the flagged
    fraction of the user's sample over ``min_count`` x ``distance_quantile``; the pairs
    within one standard error of the best J are outlined, the chosen one starred."""
    t = table.sort_values(["min_count", "distance_quantile"])
    mc = np.unique(t["min_count"])
    qs = np.unique(t["distance_quantile"])
    shape = (mc.size, qs.size)
    cost = "flagged_sample" if t["flagged_sample"].notna().all() else "flagged"
    panels = (("J", "Youden J (recall - false-positive rate)", "viridis"),
              (cost, "flagged out of distribution [%]", "magma_r"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (col, lab, cmap) in zip(axes, panels, strict=True):
        v = t[col].to_numpy(float).reshape(shape) * (100 if col != "J" else 1)
        im = ax.imshow(v, origin="lower", aspect="auto", cmap=cmap)
        fig.colorbar(im, ax=ax, label=lab)
        elig = t["eligible"].to_numpy(bool).reshape(shape)
        for i, j in zip(*np.nonzero(elig), strict=True):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="w", lw=1.2))
        ci, cj = np.unravel_index(int(np.argmax(t["chosen"].to_numpy(bool))), shape)
        ax.plot(cj, ci, marker="*", ms=16, color="C3", mec="k")
        ax.set_xticks(range(qs.size), [f"{q:g}" for q in qs], rotation=45)
        ax.set_yticks(range(mc.size), [str(int(m)) for m in mc])
        ax.set_xlabel("distance quantile of the SOM's training sample")
        ax.set_ylabel("min_count [training galaxies per cell]")
    return fig


def pit_before_after(pits: Mapping[str, np.ndarray], *, bins: int = 40, tail: float = 0.005) -> plt.Figure:
    """PIT histograms side by side (e.g. before / after recalibration), PCO tails as own bins."""
    fig, axes = plt.subplots(1, len(pits), figsize=(4.2 * len(pits), 3.6), sharey=True,
                             squeeze=False)
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.concatenate([[0.0, tail], inner[(inner > tail) & (inner < 1 - tail)],
                            [1 - tail, 1.0]])
    for ax, (name, pit) in zip(axes[0], pits.items()):
        pit = np.clip(np.asarray(pit, float), 0, 1)
        pco = float(np.mean((pit < tail) | (pit > 1 - tail)))
        ax.hist(pit, bins=edges, density=True, color="C0", edgecolor="white", lw=0.4)
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_title(f"{name}: PCO {pco:.2%}")
        ax.set_xlabel(r"PIT $= \mathrm{CDF}(z_{\rm spec})$")
        ax.set_xlim(0, 1)
    axes[0, 0].set_ylabel("density")
    return fig


def pco_per_cell(pco: pd.DataFrame) -> plt.Figure:
    """Per-cell PCO before (column ``before``) against after each other column [%]."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    x = 100 * pco["before"].to_numpy(float)
    for k, col in enumerate(c for c in pco.columns if c != "before"):
        ax.scatter(x, 100 * pco[col].to_numpy(float), s=8, alpha=0.6, color=f"C{k}", label=col)
    top = np.nanmax(100 * pco.to_numpy(float)) if np.isfinite(pco.to_numpy(float)).any() else 1
    ax.plot([0, top], [0, top], color="0.5", lw=0.8)
    ax.axhline(1.0, color="k", ls=":", lw=0.8)
    ax.axvline(1.0, color="k", ls=":", lw=0.8)
    ax.set_xlabel("cell PCO before recalibration [%]")
    ax.set_ylabel("cell PCO after [%]")
    ax.legend(fontsize=8)
    return fig



def plot_detection(curves: pd.DataFrame, table: pd.DataFrame | None = None, *,
                   truths: Sequence[str] = ("outlier", "blend", "wrong_specz"),
                   min_flagged: int = 20) -> plt.Figure:
    """Precision and recall against the fraction flagged, one column per truth class.

    Parameters
    ----------
    curves : DataFrame
        Long table with ``truth``, ``score`` and the columns of :func:`photozsom.evaluation.detection.detection_curve`
        (``photozsom.workflow.validation.score_flag_against_truth(...)["curves"]``).
    table : DataFrame, optional
        :func:`photozsom.evaluation.detection.flag_detection_table` rows (``truth``, ``flag``, ...), drawn as points.
    truths : sequence of str
        Truth classes to draw (columns of the figure), those present in ``curves``.
    min_flagged : int
        Precision is not drawn where fewer galaxies are flagged (one flagged galaxy gives a
        precision of 0 or 1).

    Returns
    -------
    matplotlib.figure.Figure
        Top row: precision (fraction of flagged galaxies that are bad); bottom row: recall
        (fraction of all bad galaxies caught); both against the fraction of galaxies
        flagged. Dashed grey: a flag drawn at random (precision = base rate,
        recall = fraction flagged).
    """
    truths = [t for t in truths if t in set(curves["truth"])]
    if not truths:
        raise ValueError("curves holds none of the requested truth classes; "
                         f"it has {sorted(set(curves['truth']))}")
    fig, axes = plt.subplots(2, len(truths), figsize=(4.2 * len(truths), 7), squeeze=False,
                             sharex=True, constrained_layout=True)
    scores = list(dict.fromkeys(curves["score"]))
    colours = {s: f"C{i}" for i, s in enumerate(scores)}
    flags = [] if table is None else list(dict.fromkeys(table["flag"]))
    markers = dict(zip(flags, "o^sDvP*X", strict=False))
    for j, tr in enumerate(truths):
        sub = curves[curves["truth"] == tr]
        base = float(sub["base_rate"].iloc[0])
        ax_p, ax_r = axes[0, j], axes[1, j]
        for s in scores:
            cs = sub[sub["score"] == s]
            lab = SCORE_LABELS.get(s, s)
            prec = cs["precision"].where(cs["n_flagged"] >= min_flagged)
            ax_p.plot(cs["fraction_flagged"], prec, color=colours[s], label=lab)
            ax_r.plot(cs["fraction_flagged"], cs["recall"], color=colours[s], label=lab)
        ax_p.axhline(base, color="0.5", ls="--", label="random flag")
        ax_r.plot([0, 1], [0, 1], color="0.5", ls="--", label="random flag")
        if table is not None:
            for f in flags:
                row = table[(table["truth"] == tr) & (table["flag"] == f)]
                if len(row):
                    kw = {"marker": markers.get(f, "o"), "color": "k", "ls": "none", "label": f}
                    ax_p.plot(row["fraction_flagged"], row["precision"], **kw)
                    ax_r.plot(row["fraction_flagged"], row["recall"], **kw)
        ax_p.set_title(f"{TRUTH_LABELS.get(tr, tr)}\n(base rate {100 * base:.2g}%)")
        ax_p.set_ylabel("precision (fraction of flagged that are bad)")
        ax_r.set_ylabel("recall (fraction of all bad caught)")
        ax_r.set_xlabel("fraction of galaxies flagged")
        ax_p.set_xlim(0, 1)
        ax_r.set_ylim(0, 1.02)
        shown = sub["precision"].where(sub["n_flagged"] >= min_flagged).to_numpy(float)
        top = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
        ax_p.set_ylim(0, min(1.02, max(0.05, 1.2 * top)))
    handles, labels = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8)
    return fig
