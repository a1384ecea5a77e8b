"""The interactive SOM explorer: its data equal the report's, and it works offline in Chromium.

The browser test drives headless Chromium through the DevTools protocol (a small client on
``websocket-client``): it loads the standalone page from ``file://``, records every request
and console message, takes a screenshot, then hovers and clicks a cell with synthetic mouse
events and reads what Bokeh drew (the tooltip and the side panel live in shadow DOMs).
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import bokeh  # noqa: F401  (the explore extra, installed by the test command: fail, never skip)
import numpy as np
import pandas as pd
import pytest

from photozsom.evaluation import cells
from photozsom.explore import explorer_html, save_explorer, som_explorer, thumbnail_uri
from photozsom.plots import rgb_image

SHAPE = (6, 7)


def _synthetic(shape=SHAPE, n=900, size=20, seed=3, images=True):
    """A report, its galaxies (with flags) and g, r, i, z cutouts: a round galaxy on noise."""
    rng = np.random.default_rng(seed)
    k = shape[0] * shape[1]
    w = rng.gamma(1.0, size=k)
    w[[5, 11]] = 0.0  # two empty cells
    w /= w.sum()
    cell = rng.choice(k, n, p=w)
    z = rng.uniform(0.05, 1.0, n)
    zp = z + 0.03 * (1 + z) * rng.standard_normal(n)
    out = rng.random(n) < 0.05
    zp[out] = rng.uniform(0.0, 1.2, out.sum())
    rep = cells.report(cell, z, zp, rng.random(n), k, rng.poisson(40, k), n_boot=50, seed=seed)
    gal = pd.DataFrame({"CELL": cell, "Z": z, "Z_PHOT_MEAN": zp, "flag": rng.random(n) < 0.3})
    imgs = None
    if images:
        yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
        sig = rng.uniform(1.0, 3.0, n)[:, None, None, None]
        flux = rng.uniform(1.0, 20.0, (n, 4))[:, :, None, None]
        imgs = flux * np.exp(-(xx**2 + yy**2) / (2 * sig**2)) / (2 * np.pi * sig**2)
        imgs = imgs + 0.01 * rng.standard_normal(imgs.shape)
    return rep, gal, imgs


def _build(topology="rectangular", **kw):
    rep, gal, imgs = _synthetic()
    layout = som_explorer(rep.table, SHAPE, global_=rep.global_, settings=rep.settings,
                          galaxies=gal, images=imgs, topology=topology, **kw)
    return layout, rep, gal, imgs


@pytest.fixture(scope="module")
def built():
    return _build()


def _source(layout, name):
    return layout.select_one({"name": name})


def test_cell_values_in_source_equal_the_table(built):
    layout, rep, gal, _ = built
    tab = rep.table
    d = _source(layout, "cells").data
    np.testing.assert_array_equal(d["cell"], np.arange(len(tab)))
    np.testing.assert_array_equal(d["row"] * SHAPE[1] + d["col"], tab.index.to_numpy())
    np.testing.assert_allclose(d["v_mad"], tab["mad"], equal_nan=True)
    np.testing.assert_allclose(d["v_bias"], tab["bias"], equal_nan=True)
    np.testing.assert_allclose(d["v_eta"], 100 * tab["eta"], equal_nan=True)
    np.testing.assert_allclose(d["v_pco"], 100 * tab["pco"], equal_nan=True)
    np.testing.assert_allclose(d["v_z_mean"], tab["z_mean"], equal_nan=True)
    np.testing.assert_allclose(10 ** d["v_n_train"] - 1, tab["n_train"], rtol=1e-12)
    np.testing.assert_allclose(10 ** d["v_count"] - 1, tab["count"], rtol=1e-12)
    # significance: -log10 of the smallest q over the four metrics, NaN where none was tested
    q = tab[["mad_q", "bias_q", "eta_q", "pco_q"]].to_numpy(float)
    tested = np.isfinite(q).any(axis=1)
    expect = np.full(len(tab), np.nan)
    expect[tested] = -np.log10(np.maximum(np.nanmin(q[tested], axis=1), 1e-12))
    np.testing.assert_allclose(d["v_signif"], expect, equal_nan=True)
    # flag fraction against a pandas group-by of the galaxies
    frac = gal.groupby("CELL")["flag"].mean().reindex(tab.index)
    np.testing.assert_allclose(d["v_flag"], 100 * frac.to_numpy(float), equal_nan=True)
    # galaxies per cell (slices of the sorted galaxy source) are the report's test counts
    np.testing.assert_array_equal(d["g_count"], tab["count"])
    # the initial colour is the training count; hover text carries value, error and q
    np.testing.assert_allclose(d["value"], d["v_n_train"])
    k = int(np.flatnonzero(tab["status"] == "ok")[0])
    assert d["mad_txt"][k].startswith(f"{tab['mad'][k]:.4f} ± {tab['mad_err'][k]:.4f} (q = ")
    eta, eta_err = 100 * tab["eta"][k], 100 * tab["eta_err"][k]
    assert d["eta_txt"][k].startswith(f"{eta:.1f} ± {eta_err:.1f} %")
    assert d["count_txt"][k] == str(int(tab["count"][k]))
    empty = np.flatnonzero(tab["count"] == 0)
    assert empty.size and all(d["mad_txt"][e] == "–" for e in empty)


def test_each_cell_galaxies_and_thumbnails_are_its_own(built):
    layout, rep, gal, imgs = built
    d = _source(layout, "cells").data
    allg = _source(layout, "all_galaxies").data
    th = _source(layout, "thumbnails").data
    for k in range(len(rep.table)):
        g0, ng = d["g_start"][k], d["g_count"][k]
        mine = gal[gal["CELL"] == k]
        assert sorted(np.asarray(allg["z"][g0:g0 + ng])) == pytest.approx(
            sorted(mine["Z"].astype(np.float32)))
        t0, nt = d["t_start"][k], d["t_count"][k]
        assert nt == min(len(mine), 16)
        zs = set(np.float32(mine["Z"]).tolist())
        assert set(np.asarray(th["z"][t0:t0 + nt]).tolist()) <= zs
    # a thumbnail is the galaxy's rgb_image (rows flipped: north up), at thumb_px pixels
    from PIL import Image

    i = 0
    uri = thumbnail_uri(imgs[i], size=20, colors=0)
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    np.testing.assert_array_equal(got, rgb_image(imgs[i])[::-1])
    small = thumbnail_uri(imgs[i], size=10)
    im = Image.open(io.BytesIO(base64.b64decode(small.split(",", 1)[1])))
    assert im.size == (10, 10) and im.format == "PNG"
    # downsampled by pixel averages: the mean colour of the 2 x 2 blocks (64-colour palette)
    blocks = rgb_image(imgs[i])[::-1].astype(float).reshape(10, 2, 10, 2, 3).mean((1, 3))
    assert np.abs(np.asarray(im.convert("RGB"), float) - blocks).mean() < 3.0


def test_hexagonal_cells_sit_on_the_som_grid_and_touch_their_neighbours():
    from photozsom.som import SOM

    layout, *_ = _build("hexagonal", max_thumbs=0)
    d = _source(layout, "cells").data
    xs, ys = np.array(d["xs"]), np.array(d["ys"])
    pos = SOM(shape=SHAPE, n_features=2, topology="hexagonal").grid_positions
    np.testing.assert_allclose(np.column_stack([xs.mean(1), ys.mean(1)]), pos, atol=1e-12)
    # the x axis labels column numbers at the columns' positions
    axis = _source(layout, "som_map").xaxis[0]
    labels = {round(t, 9): axis.major_label_overrides[t] for t in axis.ticker.ticks}
    col_x = {round(x, 9): str(c) for c, x in zip(d["col"], pos[:, 0])}
    assert labels == col_x
    # cells whose centres are 1 apart (the six neighbours) share an edge: two vertices
    for a in range(len(pos)):
        for b in range(a + 1, len(pos)):
            dist = np.hypot(*(pos[a] - pos[b]))
            va = np.round(np.column_stack([xs[a], ys[a]]), 9)
            vb = np.round(np.column_stack([xs[b], ys[b]]), 9)
            shared = (va[:, None, :] == vb[None, :, :]).all(-1).sum()
            assert shared == (2 if abs(dist - 1) < 1e-9 else 0), (a, b, dist)


def test_bad_inputs_name_the_fix():
    rep, gal, _ = _synthetic(images=False)
    with pytest.raises(ValueError, match="one row per cell"):
        som_explorer(rep.table, (5, 7), global_=rep.global_)
    with pytest.raises(ValueError, match="no point photo-z column"):
        som_explorer(rep.table, SHAPE, global_=rep.global_, galaxies=gal.drop(columns="Z_PHOT_MEAN"))
    # a median is taken as the point value when the table has no mean (any case)
    som_explorer(rep.table, SHAPE, global_=rep.global_,
                 galaxies=gal.rename(columns={"Z_PHOT_MEAN": "z_phot_median"}))
    with pytest.raises(ValueError, match="aligned"):
        som_explorer(rep.table, SHAPE, global_=rep.global_, galaxies=gal,
                     images=np.zeros((3, 4, 8, 8)))
    with pytest.raises(ValueError, match="metric must be one of"):
        som_explorer(rep.table, SHAPE, global_=rep.global_, metric="flag")  # no galaxies, no flags


def test_metrics_without_values_leave_the_menu():
    rep, *_ = _synthetic(images=False)
    tab = rep.table.assign(n_train=np.nan, pco=np.nan)
    layout = som_explorer(tab, SHAPE, global_=rep.global_)
    menu = layout.select_one({"name": "metric"})
    assert "training count" not in menu.options and "PCO fraction" not in menu.options
    assert menu.value == "test count" and "MAD" in menu.options
    assert "v_n_train" not in _source(layout, "cells").data


def test_page_is_self_contained_and_small(built, tmp_path):
    layout, *_ = built
    path = save_explorer(layout, tmp_path / "som.html")
    page = path.read_text()
    # the HTML tags themselves (script bodies emptied): no external source of any kind
    tags = re.sub(r"(<script\b[^>]*>).*?</script>", r"\1</script>", page, flags=re.DOTALL)
    srcs = re.findall(r'<\w+\b[^>]*\b(?:src|href)\s*=\s*["\']?([^"\'\s>]+)', tags)
    assert not [s for s in srcs if not s.startswith("data:")], srcs
    assert "cdn.bokeh.org" not in page and not re.search(r"<script\b[^>]*\bsrc=", page)
    # BokehJS inlined: the library's own code is in the page
    assert len(page) > 1_000_000 and "Bokeh.embed.embed_items" in page
    assert len(explorer_html(layout)) == pytest.approx(len(page), rel=0.01)
    assert path.stat().st_size < 15e6


# --------------------------------------------------------------------------------------
# headless Chromium
# --------------------------------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class _Browser:
    """Headless Chromium driven over the DevTools protocol, every event kept."""

    def __init__(self, exe: str, profile: Path, size=(1280, 1000)):
        import websocket  # websocket-client (a jupyter_server dependency)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                 f"--window-size={size[0]},{size[1]}", "about:blank"]
        self.proc = subprocess.Popen([exe, *flags], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.ws = None
        port_file = profile / "DevToolsActivePort"
        for _ in range(600):
            if port_file.exists() and port_file.read_text().strip():
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            targets = json.load(r)
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(url, suppress_origin=True, timeout=60)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, **params):
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def js(self, expr: str):
        expr = "{" + _DEEP + expr + "\n}"  # a block: its consts are gone after each call
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr[len(_DEEP) + 1:][:200]}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expr: str, timeout: float = 30.0):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            value = self.js(expr)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expr}")

    def mouse(self, kind: str, x: float, y: float, **kw):
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, **kw)

    def close(self):
        if self.ws is not None:
            self.ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(20)


# helpers for _Browser.js: every element under document, through open shadow roots (Bokeh
# renders into them), the text of them all, a Bokeh view and a model by name
_DEEP = """
const deepAll = (root, sel) => {
  const out = [...root.querySelectorAll(sel)];
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) out.push(...deepAll(el.shadowRoot, sel));
  }
  return out;
};
const deepText = (root) => {
  const parts = [];
  const walk = (node) => {
    if (node.nodeType === 3) { parts.push(node.textContent); return; }
    if (node.nodeName === 'SCRIPT' || node.nodeName === 'STYLE') { return; }
    if (node.shadowRoot) { walk(node.shadowRoot); }
    for (const c of node.childNodes) { walk(c); }
  };
  walk(root);
  return parts.join('');
};
const view = (name) => [...Bokeh.index.all_views()].find(v => v.model.name === name);
const model = (name) => Bokeh.documents[0].get_model_by_name(name);
"""


@pytest.fixture
def browser(tmp_path):
    exe = _chromium()
    if exe is None:   # never skipped: these tests are the only check of the page's behaviour
        pytest.fail("chromium is not installed: run `python3 tasks.py test` (it installs Debian's "
                    "chromium when it can) or install chromium; the explorer's hover and click "
                    "can only be checked in a browser")
    b = _Browser(exe, tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


@pytest.mark.parametrize("topology", ["rectangular", "hexagonal"])
def test_chromium_renders_offline_and_hover_click_show_the_cell(browser, tmp_path, topology):
    from PIL import Image

    layout, rep, gal, _ = _build(topology)
    page = save_explorer(layout, tmp_path / "som.html")
    tab = rep.table
    d = _source(layout, "cells").data
    b = browser
    for domain in ("Runtime", "Log", "Page", "Network"):
        b.send(f"{domain}.enable")
    b.send("Page.navigate", url=page.as_uri())
    b.wait_for("typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0 "
               "&& Bokeh.documents[0].is_idle", timeout=90)
    n_canvas = b.wait_for("deepAll(document, 'canvas').length")
    assert n_canvas >= 2  # the map and the z_phot vs z_spec plot

    png = base64.b64decode(b.send("Page.captureScreenshot", format="png")["data"])
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    colours = np.unique(shot.reshape(-1, 3), axis=0)
    assert shot.std() > 20 and len(colours) > 100, "the screenshot is (nearly) blank"

    # a cell with galaxies, thumbnails and a value, on the screen from Bokeh's own scales
    k = int(np.flatnonzero((tab["count"] >= 3).to_numpy())[len(tab) // 3])
    cx, cy = float(np.mean(d["xs"][k])), float(np.mean(d["ys"][k]))
    sx, sy = b.js(f"""(() => {{
        const v = view('som_map'); const r = v.canvas_view.el.getBoundingClientRect();
        return [r.left + v.frame.x_scale.compute({cx}), r.top + v.frame.y_scale.compute({cy})];
    }})()""")
    head = f"cell {k} (row {k // SHAPE[1]}, column {k % SHAPE[1]})"
    assert head not in b.js("deepText(document)")

    b.mouse("mouseMoved", sx, sy)
    tip = b.wait_for(f"deepText(document).includes({json.dumps(head)}) && deepText(document)")
    assert f"test galaxies: {int(tab['count'][k])}" in tip
    assert f"{tab['mad'][k]:.4f} ± {tab['mad_err'][k]:.4f}" in tip

    b.mouse("mousePressed", sx, sy, button="left", clickCount=1)
    b.mouse("mouseReleased", sx, sy, button="left", clickCount=1)
    b.wait_for(f"model('cell_panel').text.includes({json.dumps(head)})")
    n_thumbs = b.wait_for("""(() => {
        const imgs = deepAll(document, 'img.pzs-thumb');
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth === 20
               && i.width === 48) && imgs.length; })()""")  # 20-pixel cutouts shown at 48
    assert n_thumbs == min(int(tab["count"][k]), 16)
    # and they are the cell's galaxies: each carries its z_spec and z_phot
    titles = b.js("deepAll(document, 'img.pzs-thumb').map(i => i.title)")
    mine = gal[gal["CELL"] == k]
    pairs = {(f"{a:.3f}", f"{c:.3f}")
             for a, c in zip(np.float32(mine["Z"]), np.float32(mine["Z_PHOT_MEAN"]))}
    shown = {tuple(re.fullmatch(r"z_spec (\S+), z_phot (\S+)", t).groups()) for t in titles}
    assert len(shown) == n_thumbs and shown <= pairs
    assert b.js("model('cells').selected.indices") == [k]
    sel = b.js("(() => { const s = model('cell_galaxies').data; "
               "return [Array.from(s.z), Array.from(s.zp)]; })()")
    assert sorted(sel[0]) == pytest.approx(sorted(mine["Z"]), abs=1e-6)
    assert sorted(sel[1]) == pytest.approx(sorted(mine["Z_PHOT_MEAN"]), abs=1e-6)

    # the drop-down recolours the map and relabels the colour bar
    b.js("model('metric').value = 'MAD'")
    b.wait_for("Bokeh.documents[0].is_idle")
    value = b.js("Array.from(model('cells').data.value)")
    np.testing.assert_allclose(np.array(value, dtype=float), tab["mad"].to_numpy(float),
                               equal_nan=True)
    assert b.js("model('colour_bar').title").startswith("MAD of Δz")
    mapper = b.js("(() => { const m = model('colour_bar').color_mapper; "
                  "return [m.low, m.high]; })()")
    assert mapper == pytest.approx(np.nanpercentile(tab["mad"], [2, 98]))

    # offline: nothing but the file itself and data: URIs was requested; no error anywhere
    urls = [e["params"]["request"]["url"] for e in b.events
            if e["method"] == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), \
        [u[:80] for u in urls if not u.startswith(("file:", "data:"))]
    errors = [e for e in b.events if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled"
                  and e["params"]["type"] in ("error", "assert", "warning"))
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert not errors, json.dumps(errors)[:2000]


def test_notebook_frame_holds_the_whole_page(built):
    import html

    from photozsom.explore import display_in_notebook

    layout, *_ = built
    out = display_in_notebook(layout, height=700)
    m = re.fullmatch(r'<div[^>]*><iframe srcdoc="([^"]*)" style="[^"]*height: 700px[^"]*" '
                     r'title="[^"]*"></iframe></div>', out.data)
    assert m, out.data[:200]
    page = html.unescape(m.group(1))
    assert page.startswith("<!DOCTYPE html>") and "Bokeh.embed.embed_items" in page
    assert len(page) == pytest.approx(len(explorer_html(layout)), rel=0.01)


def test_chromium_runs_the_notebook_frame(browser, tmp_path):
    from photozsom.explore import display_in_notebook

    layout, rep, *_ = _build(max_thumbs=4)
    page = tmp_path / "chapter.html"
    page.write_text("<!DOCTYPE html><html><body><h1>a chapter</h1>"
                    + display_in_notebook(layout).data + "<p>after</p></body></html>")
    b = browser
    for domain in ("Runtime", "Log", "Page", "Network"):
        b.send(f"{domain}.enable")
    b.send("Page.navigate", url=page.as_uri())
    frame = "(() => { const f = document.querySelector('iframe'); return f && f.contentWindow; })()"
    b.wait_for(f"(() => {{ const w = {frame}; return w && w.Bokeh && w.Bokeh.documents.length > 0 "
               f"&& w.Bokeh.documents[0].is_idle; }})()", timeout=90)
    assert b.js(f"deepAll({frame}.document, 'canvas').length") >= 2
    n = b.js(f"{frame}.Bokeh.documents[0].get_model_by_name('cells').data.cell.length")
    assert n == len(rep.table)
    errors = [e for e in b.events if e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Runtime.consoleAPICalled"
                  and e["params"]["type"] in ("error", "assert", "warning"))]
    assert not errors, json.dumps(errors)[:2000]
