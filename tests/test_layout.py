"""The package layout: photozsom's own modules imported at the top of a module, not in functions."""

from __future__ import annotations

import ast
from pathlib import Path

import photozsom

ROOT = Path(photozsom.__file__).parent
#: Where a function-local import of a photozsom module is on purpose: the command line and
#: predict's model loaders import torch only when a command needs it, so that its argument
#: checks answer in under a second; the P(z) and the recalibration import their compiled
#: loops (numba, ~0.3 s) only when a summary is computed.
LAZY = {"cli.py": None, "predict.py": {"photozsom.model", "photozsom.flags"},
        "pdf.py": {"photozsom.kernels"}, "calibrate.py": {"photozsom.kernels"}}


def local_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``import photozsom...`` inside a function of ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("photozsom"):
                    found.append((inner.lineno, inner.module))
                elif isinstance(inner, ast.Import):
                    found += [(inner.lineno, a.name) for a in inner.names
                              if a.name.startswith("photozsom")]
    return found


def test_the_detector_finds_a_local_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef g():\n    from photozsom.pdf import MixturePDF\n    return 1\n")
    assert local_imports(f) == [(4, "photozsom.pdf")]


def test_no_function_local_imports_of_photozsom_modules():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        allowed = LAZY.get(rel, set())
        for line, module in local_imports(path):
            if allowed is None or module in allowed:
                continue
            bad.append(f"{rel}:{line} imports {module}")
    assert bad == []
