"""Colour images of cutouts, and that every figure function labels its axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from photozsom import plots
from photozsom.evaluation import detection


def _galaxy(flux_griz, size=33, sigma_px=2.0, noise=0.002, seed=0):
    """A round Gaussian galaxy (total flux per band, nanomaggies) on white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - size // 2
    prof = np.exp(-0.5 * (x**2 + y**2) / sigma_px**2)
    prof /= prof.sum()
    return np.stack([f * prof for f in flux_griz]) + rng.normal(0, noise, (4, size, size))


def test_rgb_image_shows_the_galaxy_on_a_dark_sky():
    img = _galaxy([1.0, 1.0, 1.0, 1.0])
    rgb = plots.rgb_image(img)
    assert rgb.shape == (33, 33, 3) and rgb.dtype == np.uint8
    centre = rgb[14:19, 14:19].max()
    corners = np.concatenate([rgb[:6, :6].ravel(), rgb[-6:, -6:].ravel()])
    assert centre >= 100                          # the galaxy stands out whatever its flux
    assert np.median(corners) < 30                # the sky is dark: black level at the noise


def test_rgb_image_colour_follows_the_spectrum_and_the_flux_scale_does_not_matter():
    red = plots.rgb_image(_galaxy([0.1, 0.4, 0.8, 1.2]))          # rising to the red: z >> g
    blue = plots.rgb_image(_galaxy([1.2, 0.9, 0.8, 0.7]))
    c = (slice(14, 19), slice(14, 19))
    assert red[c][..., 0].mean() > red[c][..., 2].mean()          # R (z) above B (g)
    assert blue[c][..., 2].mean() > blue[c][..., 0].mean()
    # the same galaxy 100x fainter (with 100x less noise) gives the same picture
    faint = plots.rgb_image(_galaxy([0.001, 0.004, 0.008, 0.012], noise=0.00002))
    assert np.abs(faint.astype(int) - red.astype(int)).max() <= 2


def test_rgb_image_accepts_an_absent_band_as_nan():
    img = _galaxy([1.0, 1.0, np.nan, 1.0])
    img[2] = np.nan                                # northern cutout: no i-band (not used by default)
    rgb = plots.rgb_image(img)
    with_i = img.copy()
    with_i[2] = 5.0                                # any i-band: the picture does not change
    np.testing.assert_array_equal(rgb, plots.rgb_image(with_i))
    assert rgb.dtype == np.uint8 and rgb.max() > 0


def test_cutout_grid_labels_axes_in_arcsec():
    fig = plots.cutout_grid(np.stack([_galaxy([1, 1, 1, 1], seed=s) for s in range(3)]), ["a", "b", "c"],
                            ncols=2)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3
    assert all(ax.get_xlabel() == "arcsec" for ax in fig.axes[-2:])
    assert [ax.get_title() for ax in axes] == ["a", "b", "c"]
    lo, hi = axes[0].get_xlim()
    assert hi - lo == np.float64(33 * 0.262)


def test_plot_detection_draws_labelled_axes(tmp_path):
    rng = np.random.default_rng(8)
    bad = rng.random(500) < 0.2
    s = bad + rng.normal(size=500)
    parts = []
    for tr in ("outlier", "blend"):
        for sc in ("distance", "pz_width"):
            c = detection.detection_curve(s, bad, n_thresholds=10)
            c.insert(0, "score", sc)
            c.insert(0, "truth", tr)
            parts.append(c)
    table = detection.flag_detection_table({"outlier": bad, "blend": bad}, {"SOM flag": s > 1})
    fig = plots.plot_detection(pd.concat(parts), table)
    axes = fig.axes
    assert len(axes) == 4
    assert "fraction" in axes[2].get_xlabel() and "precision" in axes[0].get_ylabel()
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(fig.legends) == 1 and "random flag" in texts
    assert plots.SCORE_LABELS["pz_width"] in texts and "SOM flag" in texts
    assert "blend" in axes[1].get_title()        # titled by the truth class
    fig.savefig(tmp_path / "f.png")
    plt.close(fig)
