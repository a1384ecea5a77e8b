#!/usr/bin/env python3
"""Set up and run photozsom on a fresh machine with nothing but Python >= 3.10.

    python3 tasks.py book     # build the book on the embedded default sky (the main job)
    python3 tasks.py test     # ruff + the test suite + docstring examples (CI runs exactly this)
    python3 tasks.py test --fast   # the fast tier: no chapter execution or long training

Both create (or reuse) the project virtual environment ``.venv``, install torch 2.13.0
first (a CPU build; an unpinned torch would pull a multi-GB CUDA build), then the package
with the extras the command needs. Re-running skips the install when pyproject.toml has
not changed. Extra arguments go to ``photozsom book`` or ``pytest``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("PHOTOZSOM_VENV", ROOT / ".venv"))
TORCH = "torch==2.13.0"
EXTRAS = {"book": "book,sim,explore", "test": "book,sim,explore,survey,aion,qp,dev,rail"}


def _py() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list, **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, check=True, **kw)


def ensure_env(extras: str) -> Path:
    """Create ``.venv`` if needed and install torch (pinned) and ``.[extras]``."""
    if sys.version_info < (3, 10):
        sys.exit(f"photozsom needs Python >= 3.10; this is {sys.version.split()[0]}")
    if not _py().exists():
        _run([sys.executable, "-m", "venv", str(VENV)])
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()[:16]
    stamp = VENV / f".photozsom-{extras.replace(',', '-')}.stamp"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return _py()
    t0 = time.time()
    pip = [str(_py()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run(pip + ["--upgrade", "pip"])
    _run(pip + [TORCH])
    _run(pip + ["-e", f".[{extras}]"], cwd=ROOT)
    stamp.write_text(digest)
    print(f"environment ready in {time.time() - t0:.0f} s ({VENV})", flush=True)
    return _py()


def _ensure_chromium() -> str | None:
    """Install Debian's chromium for the rendered-book check when we are root.

    Returns None when chromium is there, else why it cannot be installed here; the test
    command passes that reason to pytest (``PHOTOZSOM_NO_CHROMIUM``); with such a reason the
    rendered-book test checks the HTML files without a browser (and says so), anywhere else
    a missing chromium fails it.
    """
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return None
    if os.environ.get("PHOTOZSOM_NO_APT"):
        return "PHOTOZSOM_NO_APT is set"
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root with apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
                       check=True, env=env, timeout=900, stdout=subprocess.DEVNULL)
    except (subprocess.SubprocessError, OSError) as err:
        return f"apt-get install chromium failed: {err}"
    return None


def main(argv: list) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    what, rest = argv[0], argv[1:]
    py = ensure_env(EXTRAS[what])
    env = dict(os.environ, PYTHONHASHSEED="0")
    if what == "book":
        return subprocess.run([str(py), "-m", "photozsom", "book", *rest], cwd=ROOT, env=env, check=False).returncode
    no_chromium = _ensure_chromium()
    if no_chromium:
        print(f"chromium cannot be installed here ({no_chromium}): the rendered book is checked "
              f"without a browser (no screenshots)", flush=True)
        env["PHOTOZSOM_NO_CHROMIUM"] = no_chromium
    return run_tests(py, rest, env)


def run_tests(py: Path, rest: list, env: dict) -> int:
    """ruff, then pytest with the package's docstring examples.

    ``--fast`` runs the fast tier (``-m "not slow"``: no chapter execution, no long training;
    a few minutes); without it the whole suite runs, as CI does. Explicit test paths replace
    the default ``tests`` + docstring examples of ``photozsom``.
    """
    fast = "--fast" in rest
    rest = [a for a in rest if a != "--fast"]
    lint = subprocess.run([str(VENV / "bin" / "ruff"), "check", "."], cwd=ROOT, check=False)
    if lint.returncode:
        print("ruff found problems (above): fix them or `ruff check --fix .`", flush=True)
        return lint.returncode
    explicit = any(Path(a.split("::")[0]).exists() for a in rest if not a.startswith("-"))
    paths = [] if explicit else ["tests", "photozsom", "--doctest-modules"]
    marks = ["-m", "not slow"] if fast else []
    cmd = [str(py), "-m", "pytest", *paths, *marks, *rest]
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
