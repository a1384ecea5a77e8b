"""Execute the book's jupytext chapters with papermill and render them with Jupyter Book 1.x.

The chapters live in ``book/*.py`` (jupytext percent format, the single source of truth);
``_toc.yml`` at the project root fixes their order. :func:`run_book`

1. converts each chapter to a notebook with deterministic cell ids,
2. executes it with papermill (``parameters`` cell: ``scale``, ``data_dir``, ``seed``, ...)
   into ``book/executed/<name>.ipynb``, stopping at the first failing cell and naming it,
3. removes execution timestamps so that the same seed gives the same notebooks,
4. builds the HTML with ``jupyter-book build -W -n --keep-going`` (warnings fail).

Chapters pass files to each other through ``data_dir`` (default ``runs/<scale>``), laid out
by :mod:`photozsom.workflow.pipeline`: each chapter runs one stage and shows what it made. Re-running
a chapter re-runs the chapters that depend on it, and the HTML is built only when every
stage's recorded inputs match (:func:`photozsom.workflow.pipeline.require_consistent`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from photozsom import plots
from photozsom.workflow.pipeline import STAGES, downstream, require_consistent

__all__ = ["ChapterFailed", "chapters", "cli_main", "find_root", "outputs", "publish_figure",
           "publish_page", "run_book", "stored_result", "with_dependents"]

def _chapter_stages() -> dict[str, str]:
    """Chapter name -> the pipeline stage it runs (from :data:`photozsom.workflow.pipeline.STAGES`)."""

    return {s.chapter: s.name for s in STAGES.values()}


def with_dependents(names: Iterable[str], all_names: list[str]) -> list[str]:
    """``names`` plus every chapter whose stage reads what their stages write (book order).

    Chapters that run no stage (they only read: the appendix, the adapt chapter) follow
    whenever any stage re-runs.
    """

    by_chapter = _chapter_stages()
    stages = [by_chapter[n] for n in names if n in by_chapter]
    todo = set(names)
    if stages:
        todo |= {STAGES[s].chapter for s in downstream(stages)}
        todo |= {n for n in all_names if n not in by_chapter and n != "intro"}
    return [n for n in all_names if n in todo]


class ChapterFailed(RuntimeError):
    """A chapter raised; the message names the chapter, the cell and the error."""


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The project root: the first parent of ``start`` (default: cwd) holding ``_toc.yml`` and ``book/``."""
    here = Path(start or os.getcwd()).resolve()
    for p in (here, *here.parents):
        if (p / "_toc.yml").exists() and (p / "book").is_dir():
            return p
    pkg = Path(__file__).resolve().parents[2]
    if (pkg / "_toc.yml").exists():
        return pkg
    raise FileNotFoundError(f"no _toc.yml with a book/ folder above {here}: run from the photozsom checkout or pass --root")


def chapters(root: str | os.PathLike) -> list[str]:
    """Chapter names in ``_toc.yml`` order (``book/executed/<name>`` entries)."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    files: list[str] = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            for part in e.get("chapters", []) if isinstance(e.get("chapters"), list) else []:
                files.append(part["file"])

    for key in ("chapters", "parts"):
        for e in toc.get(key, []) or []:
            if "chapters" in e:
                walk(e["chapters"])
            else:
                walk([e])
    return [Path(f).name for f in files]


def _declared_parameters(nb) -> set[str]:
    """Names assigned in the cell tagged ``parameters``."""
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return set(re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]*)?=", cell.source, flags=re.MULTILINE))
    return set()


def _to_notebook(src: Path):
    import jupytext
    import nbformat

    nb = jupytext.read(src)
    # A hidden first cell: tqdm.auto warns in kernels without ipywidgets; its bars are off
    # in executed notebooks anyway (stderr is not a terminal), so the warning is noise.
    setup = nbformat.v4.new_code_cell(
        'import warnings\nwarnings.filterwarnings("ignore", message="IProgress not found")',
        metadata={"tags": ["remove-cell"]},
    )
    nb.cells.insert(0, setup)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata.pop("jupytext", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{src.stem}-{i:03d}"
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if "parameters" in tags and "hide-cell" not in tags:
            tags.append("hide-cell")
    return nb


def _scrub(path: Path) -> None:
    """Remove timestamps and durations papermill/nbclient write, hide the injected cell."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for i, cell in enumerate(nb.cells):
        md = cell.setdefault("metadata", {})
        md.pop("papermill", None)
        md.pop("execution", None)
        tags = md.get("tags", [])
        if "injected-parameters" in tags:
            cell["id"] = f"{path.stem}-injected"
            if "remove-cell" not in tags:
                tags.append("remove-cell")
        if cell.cell_type == "code":
            cell["execution_count"] = None
            for out in cell.get("outputs", []):
                if "execution_count" in out:
                    out["execution_count"] = None
    nbformat.write(nb, path)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


# a Unix socket path holds at most 104 bytes on macOS (108 on Linux), the terminating NUL
# included; the sockets are named <runtime>/photozsom-<12 hex>-ipc-<k>
_SOCKET_PATH_MAX = 103


def _kernel_options() -> dict:
    """Papermill options for the chapter kernels: local IPC sockets on POSIX.

    The kernel then opens no TCP port (nothing else on a shared machine can connect to
    it; its socket files live in Jupyter's runtime directory), and ipykernel >= 7 does
    not warn once per chapter that its TCP channel is unencrypted. On other systems, or
    when the runtime directory's path is too long for a socket name, nbclient's default
    (TCP on localhost) is kept.
    """
    if os.name != "posix":
        return {}
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import CaselessStrEnum, default

    runtime = Path(jupyter_runtime_dir())
    if len(os.fsencode(runtime / "photozsom-0123456789ab-ipc-99")) > _SOCKET_PATH_MAX:
        return {}

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _ip_default(self) -> str:
            # unique per kernel, so that two builds never share a socket, and outside the
            # book, so that a crashed kernel leaves nothing there
            runtime.mkdir(parents=True, exist_ok=True)
            return str(runtime / f"photozsom-{uuid.uuid4().hex[:12]}-ipc")

    return {"kernel_manager_class": IPCKernelManager}


def run_book(
    root: str | os.PathLike | None = None,
    scale: str = "default",
    only: Iterable[str] | None = None,
    params: dict | None = None,
    html: bool = True,
    data_dir: str | None = None,
    log=print,
) -> dict[str, float]:
    """Execute the chapters and build the HTML book.

    Parameters
    ----------
    root : path, optional
        Project root (holds ``_toc.yml``, ``_config.yml``, ``book/``); found from cwd by default.
    scale : {"ci", "default"} or str
        Passed to every chapter as ``scale``; ``ci`` runs in minutes.
    only : iterable of str, optional
        Run these chapters (names as in ``_toc.yml``, e.g. ``"som"``) and every chapter that
        depends on what they write (:func:`with_dependents`), so a re-run SOM never sits
        beside density figures made from the old one.
    params : dict, optional
        Extra papermill parameters, given to each chapter that declares them.
    html : bool
        Build the HTML with Jupyter Book after executing.
    data_dir : str, optional
        Run directory shared by the chapters (default ``runs/<scale>`` under ``root``).

    Returns
    -------
    dict
        Seconds per chapter (and ``"html"`` for the build).

    Raises
    ------
    ChapterFailed
        At the first failing cell, naming the chapter, cell and error.
    """
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    root = find_root(root) if root is None else Path(root).resolve()
    names = chapters(root)
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown chapter(s) {unknown}; the book has {names}")
        names = with_dependents(only, names)
    out_dir = root / "book" / "executed"
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir or str(Path("runs") / scale)
    base = {"scale": scale, "data_dir": data_dir, **(params or {})}
    timings: dict[str, float] = {}
    env_backend = os.environ.pop("MPLBACKEND", None)  # executed notebooks need the inline backend
    try:
        for name in names:
            src = root / "book" / f"{name}.py"
            if not src.exists():
                raise FileNotFoundError(f"_toc.yml lists {name} but {src} does not exist")
            nb = _to_notebook(src)
            declared = _declared_parameters(nb)
            todo = {k: v for k, v in base.items() if k in declared}
            tmp = out_dir / f".{name}.input.ipynb"
            nbformat.write(nb, tmp)
            out = out_dir / f"{name}.ipynb"
            log(f"[book] {name}: executing ({', '.join(f'{k}={v!r}' for k, v in todo.items())})")
            t0 = time.time()
            try:
                pm.execute_notebook(str(tmp), str(out), parameters=todo, kernel_name="python3",
                                    progress_bar=False, cwd=str(root), log_output=False,
                                    **_kernel_options())
            except PapermillExecutionError as err:
                raise ChapterFailed(
                    f"chapter {name!r} failed in cell {err.cell_index} (execution count {err.exec_count}):\n"
                    f"{err.source}\n{err.ename}: {err.evalue}\n(see {out})"
                ) from None
            finally:
                tmp.unlink(missing_ok=True)
            timings[name] = time.time() - t0
            _scrub(out)
            log(f"[book] {name}: done in {timings[name]:.0f} s")
        if html:

            require_consistent(root / data_dir if not Path(data_dir).is_absolute() else data_dir)
            t0 = time.time()
            build = root / "_build" / "html"
            _vendor_mathjax(root, log)
            jb = Path(sys.executable).with_name("jupyter-book")
            cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(root), "-W", "-n", "--keep-going"]
            log("[book] " + " ".join(cmd))
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.stdout.write(proc.stdout[-6000:])
                sys.stderr.write(proc.stderr[-6000:])
                raise ChapterFailed(f"jupyter-book build failed (exit {proc.returncode}); see output above")
            timings["html"] = time.time() - t0
            log(f"[book] HTML in {build / 'index.html'}")
    finally:
        if env_backend is not None:
            os.environ["MPLBACKEND"] = env_backend
    log("[book] time per chapter: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {sum(timings.values()):.0f} s")
    return timings


def publish_figure(name: str, fig, path: str | os.PathLike) -> None:
    """Save ``fig`` as a PNG, glue it for a captioned ``{glue:figure}`` and close it.

    Closing matters: the notebook's inline backend would otherwise show the figure a second
    time, uncaptioned, under the cell that drew it.

    Parameters
    ----------
    name : str
        Glue key, the one the chapter's ``{glue:figure}`` directive names.
    fig : matplotlib.figure.Figure
    path : path
        Where the PNG goes (``RunDir.figure(...)``).
    """
    import matplotlib.pyplot as plt
    from myst_nb import glue


    plots.save(fig, path)
    glue(name, fig, display=False)
    plt.close(fig)  # returns None too, so a chapter's last line shows nothing


def _vendor_mathjax(root: Path, log: Callable[[str], None]) -> None:
    """Copy a local MathJax 2.7 (shipped by ``jupyter-server-mathjax``) to ``book/_static/mathjax``.

    ``_config.yml`` points Sphinx's ``mathjax_path`` there, so equations render in a book read
    offline (Sphinx's default loads MathJax 3 from a CDN). Without the package the folder stays
    empty and equations show as LaTeX source.
    """
    dest = root / "book" / "_static" / "mathjax"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if (dest / "MathJax.js").exists():
        return
    try:
        import jupyter_server_mathjax
    except ImportError:
        log("[book] jupyter-server-mathjax is not installed: equations will show as LaTeX offline")
        dest.mkdir(exist_ok=True)
        return
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", dest, dirs_exist_ok=True)


def publish_page(path: str | os.PathLike, *, height: int = 900, title: str = "interactive page"):
    """Show a standalone HTML page (e.g. the SOM explorer) in the rendered book.

    The page is copied once into the book's static files (``book/_static/explorer/``, which
    Jupyter Book copies to ``_build/html/_static/``) and shown in an ``<iframe>``, so several
    chapters can show it without storing its megabytes in each notebook.
    """
    from IPython.display import IFrame

    path = Path(path)
    dest = find_root() / "book" / "_static" / "explorer" / path.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if path.resolve() != dest.resolve():
        shutil.copyfile(path, dest)
    return IFrame(f"../../_static/explorer/{path.name}", width="100%", height=int(height),
                  extras=['style="border:0"', f'title="{title}"', 'loading="lazy"'])


def stored_result(name: str, script: str):
    """A benchmark's stored table, ``benchmarks/results/<name>`` of this checkout, as a
    DataFrame; None (and a line saying how to make it) when the file is not there.

    Chapters show these tables instead of recomputing them (they take minutes to hours);
    ``script`` names the benchmark that writes the file (``benchmarks/<script>``).
    """
    import pandas as pd

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / name
    if not path.is_file():
        print(f"no stored table at {path} (run python benchmarks/{script})")
        return None
    return pd.read_csv(path)


def outputs(*paths: str | os.PathLike):
    """A table of files a chapter wrote: path, size (MB) — shown at the end of each chapter."""
    import pandas as pd

    rows = []
    for p in paths:
        p = Path(p)
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            rows.append({"file": str(f), "size_MB": round(f.stat().st_size / 1e6, 3) if f.exists() else float("nan")})
    return pd.DataFrame(rows)


def cli_main(args) -> int:
    """Entry point of ``photozsom book``."""
    params = {}
    for item in args.param:
        if "=" not in item:
            raise ValueError(f"-p expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        params[k.strip()] = _parse_value(v)
    try:
        run_book(args.root, scale=args.scale, only=args.only, params=params, html=not args.no_html,
                 data_dir=params.pop("data_dir", None))
    except ChapterFailed as err:
        print(f"photozsom book: {err}", file=sys.stderr)
        return 1
    except RuntimeError as err:  # StaleRunError: the run directory mixes runs
        print(f"photozsom book: {err}", file=sys.stderr)
        return 1
    return 0


def clean(root: str | os.PathLike) -> None:
    """Remove executed notebooks and the HTML build."""
    root = Path(root)
    shutil.rmtree(root / "book" / "executed", ignore_errors=True)
    shutil.rmtree(root / "_build", ignore_errors=True)
