"""``pip install photozsom`` without extras gives the pipeline, ``predict`` and ``flag``.

The simulator's (kcorrect, speclite), the book's (seaborn, jupyter-book) and the explorer's
and survey extras' packages are made unimportable in a fresh interpreter, which then imports
the core modules and runs the command line.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ["kcorrect", "speclite", "seaborn", "jupyter_book", "papermill", "bokeh", "lsdb",
           "hats", "dask", "qp"]


def test_core_imports_and_cli_work_without_the_extras():
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = {BLOCKED!r}

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is not installed (blocked by the test)")
                return None

        sys.meta_path.insert(0, Block())
        import photozsom.model, photozsom.flags, photozsom.predict, photozsom.workflow.pipeline  # noqa
        import photozsom.som, photozsom.evaluation.cells, photozsom.calibrate, photozsom.baseline  # noqa
        try:
            import kcorrect  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker does not work")
        from photozsom.cli import main
        for cmd in (["flag", "--help"], ["predict", "--help"]):
            try:
                main(cmd)
            except SystemExit as e:
                assert e.code == 0, e.code
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().endswith("ok")
    assert "photozsom predict" in res.stdout or "usage" in res.stdout
