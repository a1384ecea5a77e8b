"""Device choice: CUDA when present, CPU otherwise, and no torch import to find that out on a
CPU-only torch build."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from photozsom.device import default_device, torch_build_has_gpu


def test_build_probe_agrees_with_torch_itself():
    assert torch_build_has_gpu() == bool(torch.version.cuda or torch.version.hip)
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("text, gpu", [
    ("cuda: Optional[str] = None\nhip: Optional[str] = None\n", False),
    ("cuda = None\nhip = None\n", False),
    ("cuda: Optional[str] = '12.4'\nhip: Optional[str] = None\n", True),
    ("cuda: Optional[str] = None\nhip: Optional[str] = '6.2.41133'\n", True),
    ("__version__ = '2.13.0'\n", True),            # unknown layout: ask torch
])
def test_build_probe_reads_version_py_without_importing_torch(tmp_path, monkeypatch, text, gpu):
    (tmp_path / "version.py").write_text(text)
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    assert torch_build_has_gpu() is gpu


def test_missing_version_file_counts_as_possibly_gpu(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    assert torch_build_has_gpu() is True


@pytest.mark.skipif(torch_build_has_gpu(), reason="a GPU build of torch is imported to look")
def test_a_saved_model_predicts_without_importing_torch(tmp_path):
    from photozsom.mdn import MDN

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype(np.float32)
    z = np.clip(0.5 + 0.1 * x[:, 0], 0.05, 1.5)
    m = MDN(3, hidden=(16, 16), seed=0, max_epochs=1, device="cpu")
    m.fit(x, z, progress=False)
    path = m.save(tmp_path / "mdn")
    np.save(tmp_path / "x.npy", x[:20])
    code = ("import sys, numpy as np\n"
            "from photozsom.mdn import MDN\n"
            f"m = MDN.load({str(path)!r})\n"
            f"w = m.predict_weights(np.load({str(tmp_path / 'x.npy')!r}))\n"
            f"np.save({str(tmp_path / 'w.npy')!r}, w)\n"
            "print(m.device, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cpu", "False"]
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), m.predict_weights(x[:20]))
