"""Every Python block and every `photozsom` command of the README runs as written.

The blocks run in order, in one namespace, in an empty directory: the README's example
trains on the DESI galaxies the package ships, so an undefined name, a wrong column or a
changed signature fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of each fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", text, re.DOTALL)]


def commands(code: str) -> list[list[str]]:
    """The ``photozsom ...`` command lines of a bash block (continuations joined)."""
    code = code.replace("\\\n", " ")
    out = []
    for line in code.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("photozsom "):
            out.append(shlex.split(line)[1:])
    return out


def test_readme_blocks_are_found():
    found = blocks(README.read_text())
    langs = [lang for lang, _ in found]
    assert langs.count("python") >= 3 and langs.count("bash") >= 2
    assert any(c[0] == "train" for _, code in found for c in commands(code))


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    ran = []
    for lang, code in blocks(README.read_text()):
        if lang == "python":
            exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
            ran.append("python")
        elif lang == "bash":
            for args in commands(code):
                done = subprocess.run([sys.executable, "-m", "photozsom", *args],
                                      capture_output=True, text=True, check=False)
                assert done.returncode == 0, f"photozsom {' '.join(args)}:\n{done.stderr[-3000:]}"
                ran.append(args[0])
    assert "train" in ran and "predict" in ran and ran.count("python") >= 3
    out = namespace["out"]
    # the command's output and the Python one agree row for row
    import pandas as pd

    cli = pd.read_parquet(tmp_path / "my_photoz.parquet")
    assert len(cli) == len(out)
    pd.testing.assert_series_equal(cli["Z_PHOT_MEAN"].reset_index(drop=True),
                                   out["Z_PHOT_MEAN"].reset_index(drop=True), check_names=False,
                                   rtol=1e-5)
    # on real held-out fields the flag marks a minority, and the flagged are worse
    s = namespace["summary"]
    assert 0 < s["flagged_fraction"] < 1 / 3
    assert s["flagged"]["eta_%"] > s["not flagged"]["eta_%"]
