"""An interactive SOM explorer: point at a cell, see its numbers, its galaxies and its photo-z.

:func:`som_explorer` builds a Bokeh layout from the per-cell table of
:func:`photozsom.evaluation.cells.report` (one row per cell) and, optionally, the evaluated galaxies
and their cutouts:

- the SOM grid (square or hexagonal cells, as :attr:`photozsom.som.SOM.grid_positions`)
  coloured by a metric chosen in a drop-down — training count, test count, mean redshift,
  MAD, bias, outlier fraction η, PCO fraction, significance (``-log10`` of the smallest
  Benjamini-Hochberg q-value over the four metrics) and the fraction of flagged galaxies —
  with a colour bar labelled with the quantity and its unit;
- hovering a cell shows its numbers with their bootstrap errors, q-values and the global
  values they are tested against;
- clicking a cell fills the panel on the right: the cell's numbers, up to ``max_thumbs``
  colour cutouts of its galaxies (small PNGs embedded as data URIs, stretched by
  :func:`photozsom.plots.rgb_image`) and its galaxies on the z_phot vs z_spec plane over
  all galaxies in grey.

Everything is in the page: :func:`explorer_html` and :func:`save_explorer` write a
standalone HTML file with BokehJS inlined (:data:`bokeh.resources.INLINE`), so it works
offline from ``file://``; :func:`display_in_notebook` shows it in Jupyter or a Jupyter Book
page inside an ``<iframe srcdoc=...>``, which needs no Bokeh set-up in the notebook.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from photozsom import cells
>>> rng = np.random.default_rng(0)
>>> cell = rng.integers(0, 12, 600); z = rng.uniform(0.1, 1.0, 600)
>>> zp = z + 0.03 * (1 + z) * rng.standard_normal(600)
>>> rep = cells.report(cell, z, zp, None, 12, np.bincount(cell, minlength=12), n_boot=50)
>>> gal = pd.DataFrame({"CELL": cell, "Z": z, "Z_PHOT_MEAN": zp})
>>> layout = som_explorer(rep.table, (3, 4), global_=rep.global_, settings=rep.settings,
...                       galaxies=gal)
>>> html = explorer_html(layout)
>>> "<script" in html and "cdn.bokeh.org" not in html
True
"""

from __future__ import annotations

import base64
import html as _html
import io
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from photozsom.artifacts import atomic_path
from photozsom.embed.store import CutoutStore
from photozsom.flags import load_flagger
from photozsom.plots import rgb_image
from photozsom.schema import point_column
from photozsom.workflow import pipeline

__all__ = ["METRIC_CHOICES", "display_in_notebook", "explorer_html", "run_explorer",
           "save_explorer", "som_explorer", "thumbnail_uri"]

#: Metrics offered in the drop-down: key -> menu label. ``pco`` appears only when the table
#: has finite PCO values, ``flag`` only when ``galaxies`` has a flag column.
METRIC_CHOICES: dict[str, str] = {
    "n_train": "training count",
    "count": "test count",
    "z_mean": "mean redshift",
    "mad": "MAD",
    "bias": "bias",
    "eta": "outlier fraction η",
    "pco": "PCO fraction",
    "signif": "significance",
    "flag": "flag fraction",
}

_HEX_DX = np.sqrt(3.0) / 2.0  # column spacing of a hexagonal map (minisom geometry)
_NAN_COLOR = "#d9d9d9"
_Q_FLOOR = 1e-12  # q-values below this are shown as -log10 q = 12
_METRICS = ("mad", "bias", "eta", "pco")


# --------------------------------------------------------------------------------------
# geometry and inputs
# --------------------------------------------------------------------------------------

def _cell_polygons(shape: tuple[int, int], topology: str) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray, np.ndarray]:
    """Centres ``(x, y)`` (shape (K,)) and polygon vertices (shape (K, V)) of every cell.

    Cells are numbered ``k = row * cols + col``; ``x`` runs along columns and ``y`` along
    rows. A hexagonal map has columns ``sqrt(3)/2`` apart and columns ``j`` with
    ``cols - 1 - j`` even shifted by ``-1/2`` in ``y`` (minisom's geometry, the same as
    :attr:`photozsom.som.SOM.grid_positions`); its cells are flat-topped hexagons of
    inradius 1/2, so neighbours share an edge.
    """
    rows, cols = shape
    i, j = np.meshgrid(np.arange(rows, dtype=float), np.arange(cols, dtype=float), indexing="ij")
    if topology == "hexagonal":
        shift = np.where((cols - 1 - j) % 2 == 0, -0.5, 0.0)
        x, y = (j * _HEX_DX).ravel(), (i + shift).ravel()
        ang = np.deg2rad(np.arange(0, 360, 60))
        r = 1.0 / np.sqrt(3.0)  # circumradius of a hexagon of inradius 1/2
        dx, dy = r * np.cos(ang), r * np.sin(ang)
    else:
        x, y = j.ravel(), i.ravel()
        dx, dy = np.array([-0.5, 0.5, 0.5, -0.5]), np.array([-0.5, -0.5, 0.5, 0.5])
    return x, y, x[:, None] + dx, y[:, None] + dy


def _column(df: pd.DataFrame, name: str, what: str, required: bool = True) -> str | None:
    """The column of ``df`` called ``name`` in any case, or None / ValueError when absent."""
    hits = [c for c in df.columns if str(c).upper() == name.upper()]
    if hits:
        return hits[0]
    if required:
        raise ValueError(f"{what} has no column {name!r} (any case); it has {list(df.columns)}")
    return None


def _check_table(cell_table: pd.DataFrame, n_cells: int) -> pd.DataFrame:
    if not isinstance(cell_table, pd.DataFrame):
        raise TypeError(f"cell_table must be a pandas DataFrame (CellReport.table), got "
                        f"{type(cell_table).__name__}")
    if len(cell_table) != n_cells or not np.array_equal(
            np.asarray(cell_table.index), np.arange(n_cells)):
        raise ValueError(f"cell_table must have one row per cell, indexed 0..{n_cells - 1} "
                         f"(shape rows * cols = {n_cells}); got {len(cell_table)} rows with index "
                         f"{cell_table.index[:5].tolist()}...: pass the shape the SOM was built "
                         f"with")
    need = ["n_train", "count", "z_mean", *_METRICS]
    missing = [c for c in need if c not in cell_table]
    if missing:
        raise ValueError(f"cell_table lacks columns {missing}: pass the table of "
                         f"photozsom.evaluation.cells.report")
    return cell_table


def _check_galaxies(galaxies: pd.DataFrame, images: np.ndarray | None, n_cells: int):
    c_cell = _column(galaxies, "CELL", "galaxies")
    c_z = _column(galaxies, "Z", "galaxies")
    c_zp = point_column(galaxies, "galaxies")
    c_flag = _column(galaxies, "FLAG", "galaxies", required=False)
    cell = np.asarray(galaxies[c_cell])
    if cell.dtype.kind not in "iu":
        raise ValueError(f"galaxies[{c_cell!r}] must hold integer SOM cells, got {cell.dtype}")
    cell = cell.astype(np.int64)
    if cell.size and (cell.min() < -1 or cell.max() >= n_cells):
        raise ValueError(f"galaxies[{c_cell!r}] must lie in [0, {n_cells}) or be -1 (no cell); "
                         f"got range [{cell.min()}, {cell.max()}]: is shape right?")
    z = np.asarray(galaxies[c_z], dtype=float)
    zp = np.asarray(galaxies[c_zp], dtype=float)
    flag = None if c_flag is None else np.asarray(galaxies[c_flag]).astype(bool)
    if images is not None:
        if not (hasattr(images, "shape") and hasattr(images, "__getitem__")):
            images = np.asarray(images)
        if len(images.shape) != 4 or images.shape[0] != len(galaxies) or images.shape[1] < 3:
            raise ValueError(f"images must be [N, 4, H, W] g, r, i, z cutouts aligned with the "
                             f"{len(galaxies)} rows of galaxies, got shape {images.shape}")
    return cell, z, zp, flag, images


# --------------------------------------------------------------------------------------
# thumbnails
# --------------------------------------------------------------------------------------

def thumbnail_uri(image: np.ndarray, *, size: int = 48, colors: int = 64) -> str:
    """A small PNG of one cutout as a ``data:image/png;base64,...`` URI.

    Parameters
    ----------
    image : ndarray, shape (4, H, W)
        Nanomaggies per pixel, bands g, r, i, z; coloured by :func:`photozsom.plots.rgb_image`
        (z, r, g as R, G, B, asinh stretch).
    size : int
        Largest width and height of the thumbnail in pixels: a larger cutout is resampled
        to it with a box filter (pixel averages), a smaller one keeps its pixels (the page
        scales it up).
    colors : int
        Palette size of the PNG (adaptive palette, no dithering); 0 keeps full RGB.

    Returns
    -------
    str
        The data URI.
    """
    from PIL import Image


    rgb = rgb_image(image)
    # row 0 at the bottom, as imshow(origin="lower") in photozsom.plots
    im = Image.fromarray(np.ascontiguousarray(rgb[::-1]))
    if max(im.size) > size:
        im = im.resize((size, size), Image.Resampling.BOX)
    if colors:
        im = im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                         dither=Image.Dither.NONE)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------------------
# per-cell values
# --------------------------------------------------------------------------------------

def _fmt(v: float, err: float = np.nan, digits: int = 4, scale: float = 1.0, unit: str = "") -> str:
    if not np.isfinite(v):
        return "–"
    s = f"{v * scale:.{digits}f}"
    if np.isfinite(err):
        s += f" ± {err * scale:.{digits}f}"
    return s + unit


def _qtext(q: float, worse: bool) -> str:
    if not np.isfinite(q):
        return ""
    tag = ", significantly worse" if worse else ""
    return f" (q = {q:.2g}{tag})"


def _cell_values(tab: pd.DataFrame, glob: Mapping[str, Any], flag_frac: np.ndarray | None
                 ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Colour values, their legend (label, palette, range) and the hover strings per cell."""
    from bokeh.palettes import Inferno256, RdBu11, Viridis256

    col = {c: tab[c].to_numpy(dtype=float) for c in ("n_train", "count", "z_mean", *_METRICS)}
    err = {c: (tab[f"{c}_err"].to_numpy(dtype=float) if f"{c}_err" in tab
               else np.full(len(tab), np.nan)) for c in ("z_mean", *_METRICS)}
    q = {m: (tab[f"{m}_q"].to_numpy(dtype=float) if f"{m}_q" in tab else np.full(len(tab), np.nan))
         for m in _METRICS}
    worse = {m: (tab[f"{m}_worse"].to_numpy(dtype=bool) if f"{m}_worse" in tab
                 else np.zeros(len(tab), bool)) for m in _METRICS}
    thr = float(glob.get("outlier_threshold", 0.15))
    fdr = float(glob.get("fdr", 0.05))
    with np.errstate(divide="ignore", invalid="ignore"):
        qmin = np.fmin.reduce(np.vstack([q[m] for m in _METRICS]), axis=0)
        signif = np.where(np.isfinite(qmin), 0.0 - np.log10(np.clip(qmin, _Q_FLOOR, 1.0)), np.nan)
        values = {
            "n_train": np.log10(1.0 + col["n_train"]),
            "count": np.log10(1.0 + col["count"]),
            "z_mean": col["z_mean"],
            "mad": col["mad"],
            "bias": col["bias"],
            "eta": 100.0 * col["eta"],
            "pco": 100.0 * col["pco"],
            "signif": signif,
        }
    legend = {
        "n_train": {"label": "log₁₀(1 + training galaxies in the cell)", "palette": Viridis256},
        "count": {"label": "log₁₀(1 + test galaxies in the cell)", "palette": Viridis256},
        "z_mean": {"label": "mean spectroscopic redshift z_spec of the cell",
                   "palette": Viridis256},
        "mad": {"label": "MAD of Δz = (z_phot − z_spec) / (1 + z_spec) (dimensionless)",
                "palette": Viridis256},
        "bias": {"label": "bias: mean of Δz = (z_phot − z_spec) / (1 + z_spec)",
                 "palette": tuple(RdBu11)[::-1], "centered": True},
        "eta": {"label": f"outlier fraction η [%] (|Δz| > {thr:g})", "palette": Viridis256},
        "pco": {"label": f"PCO fraction [%] (z_spec outside the central "
                         f"{100 * glob.get('level', 0.99):g} % interval)", "palette": Viridis256},
        "signif": {"label": f"−log₁₀ q, smallest over MAD, bias, η, PCO "
                            f"(≥ {-np.log10(fdr):.2f}: q ≤ {fdr:g})", "palette": Inferno256,
                   "zero": True, "min_high": 2.0 * -np.log10(fdr)},
    }
    if flag_frac is not None:
        values["flag"] = 100.0 * flag_frac
        legend["flag"] = {"label": "flagged galaxies in the cell [%]", "palette": Viridis256,
                          "zero": True}
    for k in ("n_train", "pco"):  # no training counts given, a point-estimate model
        if not np.isfinite(values[k]).any():
            del values[k], legend[k]

    n = len(tab)
    g = {k: float(glob.get(k, np.nan)) for k in ("mad", "bias", "eta", "pco", "z_mean")}
    text: dict[str, list[str]] = {
        "n_train_txt": [("–" if not np.isfinite(v) else f"{int(v):d}") for v in col["n_train"]],
        "count_txt": [f"{int(v):d}" for v in col["count"]],
        "z_txt": [_fmt(col["z_mean"][k], err["z_mean"][k], 3) for k in range(n)],
        "mad_txt": [_fmt(col["mad"][k], err["mad"][k]) + _qtext(q["mad"][k], worse["mad"][k])
                    for k in range(n)],
        "bias_txt": [_fmt(col["bias"][k], err["bias"][k]) + _qtext(q["bias"][k], worse["bias"][k])
                     for k in range(n)],
        "eta_txt": [_fmt(col["eta"][k], err["eta"][k], 1, 100.0, " %")
                    + _qtext(q["eta"][k], worse["eta"][k]) for k in range(n)],
        "pco_txt": [_fmt(col["pco"][k], err["pco"][k], 1, 100.0, " %")
                    + _qtext(q["pco"][k], worse["pco"][k]) for k in range(n)],
        "signif_txt": [("–" if not np.isfinite(s) else f"{s:.2f}") for s in signif],
        "flag_txt": (["–"] * n if flag_frac is None
                     else [_fmt(f, digits=1, scale=100.0, unit=" %") for f in flag_frac]),
    }
    pct = {"digits": 1, "scale": 100.0, "unit": " %"}
    text["global_txt"] = [
        f"global: MAD {_fmt(g['mad'])}, bias {_fmt(g['bias'])}, η {_fmt(g['eta'], **pct)}"
        + ("" if not np.isfinite(g["pco"]) else f", PCO {_fmt(g['pco'], **pct)}")
    ] * n
    return values, legend, text


def _colour_range(v: np.ndarray, spec: Mapping[str, Any], clip: tuple[float, float] | None
                  ) -> tuple[float, float]:
    finite = v[np.isfinite(v)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = (np.percentile(finite, clip) if clip is not None
              else (finite.min(), finite.max()))
    if spec.get("centered"):
        lim = max(abs(lo), abs(hi))
        lo, hi = -lim, lim
    if spec.get("zero"):
        lo = 0.0
    hi = max(hi, spec.get("min_high", hi))
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0) * 1e-3 + 1e-12
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------
# the layout
# --------------------------------------------------------------------------------------

_TOOLTIP = """
<div style="font-size: 12px; max-width: 420px">
<b>cell @cell</b> (row @row, column @col) · @status<br>
training galaxies: <b>@n_train_txt</b> · test galaxies: <b>@count_txt</b><br>
mean z_spec: @z_txt<br>
MAD: @mad_txt<br>
bias: @bias_txt<br>
η: @eta_txt<br>
PCO: @pco_txt<br>
−log₁₀ q (min): @signif_txt · flagged: @flag_txt<br>
<span style="color: #666">@global_txt</span>
</div>
"""

_ON_SELECT = """
const d = cells.data;
const idx = cells.selected.indices;
if (idx.length == 0) { return; }
const k = idx[idx.length - 1];
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
let h = '<div class="pzs-cell" data-cell="' + d.cell[k] + '">';
h += '<h3 style="margin: 0 0 4px 0">cell ' + d.cell[k] + ' (row ' + d.row[k] + ', column '
     + d.col[k] + ')</h3>';
h += '<table style="font-size: 12px; border-collapse: collapse">';
const rows = [['training galaxies', d.n_train_txt[k]], ['test galaxies', d.count_txt[k]],
              ['status', d.status[k]], ['mean z_spec', d.z_txt[k]], ['MAD', d.mad_txt[k]],
              ['bias', d.bias_txt[k]], ['η', d.eta_txt[k]], ['PCO', d.pco_txt[k]],
              ['−log₁₀ q (min)', d.signif_txt[k]], ['flagged', d.flag_txt[k]]];
for (const [a, b] of rows) {
  h += '<tr><td style="padding: 0 8px 0 0; color: #555">' + a + '</td><td>' + esc(b) + '</td></tr>';
}
h += '</table><div style="font-size: 11px; color: #666">' + esc(d.global_txt[k]) + '</div>';
if (thumbs !== null) {
  const t = thumbs.data;
  const t0 = d.t_start[k], nt = d.t_count[k];
  h += '<div class="pzs-thumbs" style="display: grid; grid-template-columns: repeat(4, '
       + (thumb_px + 4) + 'px); gap: 2px; margin-top: 6px">';
  for (let i = t0; i < t0 + nt; i++) {
    const tip = 'z_spec ' + t.z[i].toFixed(3) + ', z_phot ' + t.zp[i].toFixed(3);
    h += '<img class="pzs-thumb" width="' + thumb_px + '" height="' + thumb_px + '" title="' + tip
         + '" alt="' + tip + '" src="' + t.uri[i] + '" style="box-sizing: content-box; '
         + 'image-rendering: pixelated; '
         + 'border: 2px solid ' + (t.flag[i] ? '#e66101' : 'transparent') + '">';
  }
  h += '</div>';
  if (nt == 0) { h += '<div style="font-size: 12px">no cutouts in this cell</div>'; }
  else { h += '<div style="font-size: 11px; color: #666">' + nt + ' of ' + d.count_txt[k]
              + ' test galaxies (z, r, g as R, G, B; orange frame: flagged)</div>'; }
}
h += '</div>';
panel.text = h;
if (gals !== null) {
  const g = gals.data;
  const g0 = d.g_start[k], ng = d.g_count[k];
  sel.data = {z: g.z.slice(g0, g0 + ng), zp: g.zp.slice(g0, g0 + ng),
              flag: g.flag.slice(g0, g0 + ng), color: g.color.slice(g0, g0 + ng)};
  scatter_title.text = 'cell ' + d.cell[k] + ': ' + ng + ' test galaxies';
}
"""

_ON_METRIC = """
const key = spec.keys[spec.labels.indexOf(cb_obj.value)];
const d = cells.data;
d.value = d['v_' + key];
mapper.palette = spec.palette[key];
mapper.low = spec.low[key];
mapper.high = spec.high[key];
bar.title = spec.label[key];
cells.change.emit();
"""


def som_explorer(
    cell_table: pd.DataFrame,
    shape: tuple[int, int],
    *,
    global_: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    galaxies: pd.DataFrame | None = None,
    images: np.ndarray | None = None,
    topology: str = "rectangular",
    max_thumbs: int = 16,
    thumb_px: int = 48,
    thumb_colors: int = 64,
    metric: str | None = None,
    clip: tuple[float, float] | None = (2, 98),
    max_background: int = 20_000,
    seed: int = 0,
    title: str = "SOM explorer: photo-z performance cell by cell",
    n_jobs: int = 1,
    progress: bool = False,
):
    """The interactive SOM map: colour by a metric, hover for numbers, click for galaxies.

    Parameters
    ----------
    cell_table : DataFrame
        One row per cell, index ``0 .. rows*cols - 1`` (cell ``k = row * cols + col``), with
        the columns of :func:`photozsom.evaluation.cells.report`: ``n_train``, ``count``, ``status``,
        ``z_mean``, and for ``m`` in ``mad, bias, eta, pco`` the value ``m``, and where
        present ``m_err`` (bootstrap error), ``m_q`` (Benjamini-Hochberg q-value) and
        ``m_worse``; η and PCO are fractions (shown in %).
    shape : (int, int)
        ``(rows, cols)`` of the SOM.
    global_ : mapping
        Global values the cells are tested against (:attr:`photozsom.evaluation.cells.CellReport.global_`):
        ``mad``, ``bias``, ``eta``, ``pco``, ``z_mean``.
    settings : mapping, optional
        How the table was made (:attr:`photozsom.evaluation.cells.CellReport.settings`): ``fdr``,
        ``level``, ``outlier_threshold`` go into the labels (defaults 0.05, 0.99, 0.15; keys
        in ``global_`` are read too).
    galaxies : DataFrame, optional
        One row per evaluated (test) galaxy with columns ``CELL`` (SOM cell, -1 for none),
        ``Z`` (spectroscopic redshift), a point photo-z (the first of ``Z_PHOT_MEAN``,
        ``Z_PHOT_MEDIAN``, ``Z_PHOT_MODE`` it has) and optionally ``FLAG`` (bool; column
        names in any case). Enables the z_phot vs z_spec panel, the cutouts
        and the "flag fraction" metric.
    images : ndarray, shape (N, 4, H, W), optional
        g, r, i, z cutouts of ``galaxies`` (same rows), nanomaggies per pixel; up to
        ``max_thumbs`` per cell, drawn at random (``seed``), become ``thumb_px``-pixel PNGs
        (:func:`thumbnail_uri`).
    topology : {"rectangular", "hexagonal"}
        Cell geometry, as the SOM's.
    max_thumbs : int
        Cutouts per cell shown on click.
    thumb_px : int
        Thumbnail width and height, pixels.
    thumb_colors : int
        Palette size of the thumbnail PNGs (0: full RGB); about 1 kB per 48-pixel
        thumbnail with 64 colours.
    metric : str, optional
        Metric shown first, a key of :data:`METRIC_CHOICES` (default: the training count,
        or the test count when the table has no ``n_train``). Metrics without a finite
        value in any cell (``n_train`` when no training counts were given, ``pco`` for a
        point-estimate model) are left out of the drop-down.
    clip : (lo, hi) percentiles or None
        Colour range of each metric clipped to these percentiles of its finite cell values
        (as :func:`photozsom.plots.som_maps`); bias is symmetric about 0.
    max_background : int
        Most galaxies drawn in grey behind a cell's galaxies on the z_phot vs z_spec plane
        (a random subset, ``seed``).
    seed : int
        Seed of the choice of thumbnails and background galaxies.
    title : str
        Heading above the map.
    n_jobs : int
        Threads making the thumbnails (-1: all cores).
    progress : bool
        Progress bar over the thumbnails.

    Returns
    -------
    bokeh.models.LayoutDOM
        Show with :func:`bokeh.io.show`, write with :func:`save_explorer`, embed with
        :func:`explorer_html` or :func:`display_in_notebook`. Named models, for scripting:
        ``"cells"`` (the per-cell ColumnDataSource, colour values in ``v_<metric>``),
        ``"som_map"``, ``"colour_bar"``, ``"metric"`` (the Select), ``"cell_panel"`` (the
        Div filled on click), ``"cell_galaxies"`` (the clicked cell's galaxies).
    """
    from bokeh.layouts import column, row
    from bokeh.models import (
        ColorBar,
        ColumnDataSource,
        CustomJS,
        Div,
        FixedTicker,
        HoverTool,
        LinearColorMapper,
        Select,
        TapTool,
    )
    from bokeh.plotting import figure

    try:
        rows_, cols_ = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (rows, cols), got {shape!r}") from None
    if rows_ < 1 or cols_ < 1:
        raise ValueError(f"shape must have rows, cols >= 1, got {shape!r}")
    if topology not in ("rectangular", "hexagonal"):
        raise ValueError(f"topology must be 'rectangular' or 'hexagonal', got {topology!r}")
    if not (isinstance(max_thumbs, (int, np.integer)) and max_thumbs >= 0):
        raise ValueError(f"max_thumbs must be a non-negative integer, got {max_thumbs!r}")
    if images is not None and galaxies is None:
        raise ValueError("images need galaxies (their CELL, Z, Z_PHOT_MEAN rows, in the same order)")
    n_cells = rows_ * cols_
    tab = _check_table(cell_table, n_cells)
    glob = {**dict(settings or {}), **dict(global_)}

    # galaxies sorted by cell: cell k's galaxies are rows g_start[k] : g_start[k] + g_count[k]
    g_start = np.zeros(n_cells, np.int64)
    g_count = np.zeros(n_cells, np.int64)
    t_start = np.zeros(n_cells, np.int64)
    t_count = np.zeros(n_cells, np.int64)
    flag_frac = None
    gal_src = thumb_src = None
    rng = np.random.default_rng(seed)
    if galaxies is not None:
        gcell, gz, gzp, gflag, images = _check_galaxies(galaxies, images, n_cells)
        keep = np.flatnonzero(gcell >= 0)
        # random order within a cell, so the first max_thumbs of a cell are a random subset
        order = keep[np.lexsort((rng.random(keep.size), gcell[keep]))]
        g_count = np.bincount(gcell[order], minlength=n_cells)
        g_start = np.concatenate([[0], np.cumsum(g_count)[:-1]])
        flag_s = (np.zeros(order.size, bool) if gflag is None else gflag[order])
        if gflag is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                n_flag = np.bincount(gcell[order], flag_s.astype(float), minlength=n_cells)
                flag_frac = n_flag / g_count
        gal_src = ColumnDataSource(
            {"z": gz[order].astype(np.float32), "zp": gzp[order].astype(np.float32),
             "flag": flag_s, "color": np.where(flag_s, "#e66101", "#2b83ba")},
            name="all_galaxies")
        if images is not None and max_thumbs > 0:
            t_count = np.minimum(g_count, max_thumbs)
            t_start = np.concatenate([[0], np.cumsum(t_count)[:-1]])
            rank = np.arange(order.size) - np.repeat(g_start, g_count)
            pick = order[rank < np.repeat(t_count, g_count)]
            def thumb(i: int) -> str:
                return thumbnail_uri(images[i], size=thumb_px, colors=thumb_colors)

            workers = (os.cpu_count() or 1) if n_jobs == -1 else max(1, int(n_jobs))
            bar = tqdm(total=pick.size, desc="thumbnails", unit="cutout",
                       disable=None if progress else True)
            with ThreadPoolExecutor(workers) as pool:  # numpy and PIL release the GIL here
                uris = []
                for uri in pool.map(thumb, pick.tolist()):
                    uris.append(uri)
                    bar.update()
            bar.close()
            thumb_src = ColumnDataSource(
                {"uri": uris, "z": gz[pick].astype(np.float32), "zp": gzp[pick].astype(np.float32),
                 "flag": (np.zeros(pick.size, bool) if gflag is None else gflag[pick])},
                name="thumbnails")

    values, legend, text = _cell_values(tab, glob, flag_frac)
    if metric is None:
        metric = "n_train" if "n_train" in values else "count"
    if metric not in values:
        raise ValueError(f"metric must be one of {list(values)}, got {metric!r}")
    keys = list(values)
    lows, highs = {}, {}
    for k in keys:
        lows[k], highs[k] = _colour_range(values[k], legend[k], clip)

    x, y, xs, ys = _cell_polygons((rows_, cols_), topology)
    data: dict[str, Any] = {
        "xs": [list(p) for p in xs], "ys": [list(p) for p in ys],
        "cell": np.arange(n_cells), "row": np.arange(n_cells) // cols_,
        "col": np.arange(n_cells) % cols_,
        "status": (tab["status"].astype(str).tolist() if "status" in tab
                   else ["–"] * n_cells),
        "value": values[metric],
        "g_start": g_start, "g_count": g_count, "t_start": t_start, "t_count": t_count,
        **{f"v_{k}": v for k, v in values.items()},
        **text,
    }
    cells = ColumnDataSource(data, name="cells")

    mapper = LinearColorMapper(palette=legend[metric]["palette"], low=lows[metric],
                               high=highs[metric], nan_color=_NAN_COLOR)
    # square data units (match_aspect with data ranges); the frame about as wide as the map
    aspect = (np.ptp(y) + 1.0) / (np.ptp(x) + 1.0)
    fig = figure(name="som_map", width=480, height=int(np.clip(190 + 400 * aspect, 300, 900)),
                 match_aspect=True, tools="pan,wheel_zoom,reset,save",
                 x_axis_label="SOM column", y_axis_label="SOM row", toolbar_location="above",
                 title=title)
    fig.x_range.range_padding = fig.y_range.range_padding = 0.02
    if topology == "hexagonal":  # columns sqrt(3)/2 apart: tick and label the column numbers
        step = next(n for n in (1, 2, 5, 10, 20, 50, 100, 10**9) if cols_ / n <= 12)
        cols_ticked = np.arange(0, cols_, step)
        fig.xaxis.ticker = FixedTicker(ticks=(cols_ticked * _HEX_DX).tolist())
        fig.xaxis.major_label_overrides = {float(c * _HEX_DX): str(c) for c in cols_ticked}
    fig.grid.visible = False
    r = fig.patches("xs", "ys", source=cells, fill_color={"field": "value", "transform": mapper},
                    line_color="white", line_width=0.5,
                    selection_line_color="black", selection_line_width=2.5,
                    nonselection_fill_alpha=1.0, nonselection_line_color="white")
    fig.add_tools(HoverTool(renderers=[r], tooltips=_TOOLTIP))
    tap = TapTool(renderers=[r])
    fig.add_tools(tap)
    fig.toolbar.active_tap = tap
    bar = ColorBar(color_mapper=mapper, title=legend[metric]["label"], orientation="horizontal",
                   title_text_font_size="12px", title_text_font_style="normal", height=12,
                   title_standoff=4, padding=6, name="colour_bar")
    fig.add_layout(bar, "below")

    labels = [METRIC_CHOICES[k] for k in keys]
    select = Select(title="colour the map by", value=METRIC_CHOICES[metric], options=labels,
                    name="metric", width=220)
    spec = {"keys": keys, "labels": labels,
            "palette": {k: list(legend[k]["palette"]) for k in keys},
            "low": lows, "high": highs, "label": {k: legend[k]["label"] for k in keys}}
    select.js_on_change("value", CustomJS(args={"cells": cells, "mapper": mapper, "bar": bar,
                                                "spec": spec}, code=_ON_METRIC))

    panel = Div(text="<i>Click a cell to see its numbers"
                + (", its galaxies" if thumb_src is not None else "")
                + (" and its z_phot vs z_spec." if gal_src is not None else ".") + "</i>",
                name="cell_panel", width=max(320, 4 * (thumb_px + 6) + 20),
                # fixed height (the layout does not reflow when the text changes): the table,
                # then the thumbnails in rows of four; scrolls if a long text needs more
                height=290 + (20 + -(-max_thumbs // 4) * (thumb_px + 6) if thumb_src is not None
                              else 0),
                styles={"font-size": "13px", "overflow-y": "auto"})

    side: list[Any] = [panel]
    sel_src = scatter_title = None
    if gal_src is not None:
        sel_src = ColumnDataSource({"z": [], "zp": [], "flag": [], "color": []},
                                   name="cell_galaxies")
        z_all = np.asarray(gal_src.data["z"], float)
        zp_all = np.asarray(gal_src.data["zp"], float)
        zmax = float(np.nanmax(np.concatenate([z_all, zp_all, [0.5]])) * 1.05)
        thr = float(glob.get("outlier_threshold", 0.15))
        sc = figure(name="zphot_zspec", width=320, height=320, x_range=(0, zmax),
                    y_range=(0, zmax), x_axis_label="z_spec", y_axis_label="z_phot",
                    tools="pan,wheel_zoom,reset", title="click a cell", match_aspect=True)
        scatter_title = sc.title
        bg = np.arange(z_all.size)
        if bg.size > max_background:
            bg = np.sort(rng.choice(bg, max_background, replace=False))
        sc.scatter(z_all[bg].astype(np.float32), zp_all[bg].astype(np.float32), size=2,
                   color="#bbbbbb", alpha=0.35)
        zz = np.array([0.0, zmax])
        sc.line(zz, zz, color="black", line_width=1)
        for sgn in (1, -1):
            sc.line(zz, zz + sgn * thr * (1 + zz), color="black", line_dash="dashed", line_width=1)
        sc.scatter("z", "zp", source=sel_src, size=6, color="color", line_color="black",
                   line_width=0.5)
        side.append(sc)

    cells.selected.js_on_change("indices", CustomJS(
        args={"cells": cells, "panel": panel, "thumbs": thumb_src, "gals": gal_src,
              "sel": sel_src, "scatter_title": scatter_title, "thumb_px": int(thumb_px)},
        code=_ON_SELECT))

    note = Div(text=(f"Hover a cell for its numbers (± bootstrap error, q: Benjamini-Hochberg "
                     f"q-value against the global value, FDR {glob.get('fdr', 0.05):g}); grey "
                     f"cells have no value. Map: {rows_} × {cols_} {topology} cells."),
               width=480, styles={"font-size": "12px", "color": "#555"})
    return row(column(select, fig, note), column(*side), name="photozsom_explorer")


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------

def explorer_html(layout, *, title: str = "photozsom SOM explorer") -> str:
    """The explorer as one standalone HTML page with BokehJS inlined (works offline).

    Parameters
    ----------
    layout : bokeh.models.LayoutDOM
        From :func:`som_explorer`.
    title : str
        The page's ``<title>``.
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    return file_html(layout, INLINE, title=title)


def save_explorer(layout, path: str | Path, *, title: str = "photozsom SOM explorer") -> Path:
    """Write :func:`explorer_html` to ``path`` (atomically) and return the path."""

    path = Path(path)
    page = explorer_html(layout, title=title)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
    return path


def display_in_notebook(layout, *, height: int = 820, title: str = "photozsom SOM explorer"):
    """Show the explorer in Jupyter or a Jupyter Book page, self-contained.

    The standalone page of :func:`explorer_html` goes into an ``<iframe srcdoc=...>``, so
    the notebook output (and the book page built from it) carries BokehJS itself: no
    ``output_notebook()``, no CDN, no extra file next to the page.

    Parameters
    ----------
    layout : bokeh.models.LayoutDOM or str
        From :func:`som_explorer`, or a page from :func:`explorer_html`.
    height : int
        Height of the frame, pixels.

    Returns
    -------
    IPython.display.HTML
    """
    from IPython.display import HTML

    page = layout if isinstance(layout, str) else explorer_html(layout, title=title)
    return HTML(f'<div class="photozsom-explorer">'
                f'<iframe srcdoc="{_html.escape(page, quote=True)}" '
                f'style="width: 100%; height: {int(height)}px; border: none" '
                f'title="{_html.escape(title)}"></iframe></div>')


class _StoreImages:
    """Cutouts of given store rows, read one at a time when a thumbnail needs them."""

    def __init__(self, store_path, rows: np.ndarray):
        import threading


        self._store = CutoutStore(store_path)
        self._rows = np.asarray(rows)
        self._lock = threading.Lock()
        self.shape = (len(self._rows), 4, self._store.size, self._store.size)

    def __getitem__(self, i: int) -> np.ndarray:
        with self._lock:
            images, _, _ = self._store.read(self._rows[[int(i)]])
        return images[0]

    def close(self) -> None:
        self._store.close()


def run_explorer(run_dir, *, region: str = "S", **kwargs):
    """The explorer of a book run directory: a map's cell report, its evaluated galaxies (with
    their flags) and their cutouts. ``kwargs`` go to :func:`som_explorer`."""

    run = pipeline.Run(run_dir)
    rep = pipeline.load_reports(run).get(region)
    if rep is None:
        run.read(f"cells/{region}")
    som = pipeline.load_maps(run)[region]
    ev = pd.read_parquet(run.read("cells/evaluated.parquet"))
    ev = ev[(ev["SOM"] == region).to_numpy() & (ev["CELL"].to_numpy() >= 0)].reset_index(drop=True)
    galaxies = ev[["CELL", "Z", point_column(ev)]].copy()
    if run.exists("flags/flagger"):
        spec = run.spec().set_index("OBJID").loc[ev["OBJID"].to_numpy()].reset_index()
        galaxies["FLAG"] = load_flagger(run.read("flags/flagger")).flag(spec)["flag"].to_numpy()
    images = None
    if run.exists("sky/cutouts.h5"):

        with CutoutStore(run.cutouts_path()) as store:
            rows = store.rows_of(ev["OBJID"].to_numpy())
        images = _StoreImages(run.cutouts_path(), rows)
    try:
        return som_explorer(rep.table, som.shape, global_=rep.global_, settings=rep.settings,
                            galaxies=galaxies, images=images,
                            topology=getattr(som, "topology", "rectangular"), **kwargs)
    finally:
        if images is not None:
            images.close()
