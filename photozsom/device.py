"""Choice of torch device: CUDA when present, CPU otherwise, overridable everywhere."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path


def torch_build_has_gpu() -> bool:
    """Whether the installed torch could see a GPU: a CUDA (or ROCm) build.

    Read from ``torch/version.py`` without importing torch (importing it takes 1-3 s), so a
    CPU-only build -- this package's default install, ``torch==2.13.0`` from the CPU index --
    is recognised at no cost and :func:`default_device` can answer ``"cpu"`` at once.
    Returns True when torch is already imported and built with CUDA or ROCm, when its
    ``version.py`` names a CUDA or HIP version, and whenever the file cannot be read
    (unknown: the caller then asks torch itself).
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "version"):
        return bool(getattr(torch.version, "cuda", None) or getattr(torch.version, "hip", None))
    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.submodule_search_locations:
            return True
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except (OSError, ImportError, ValueError, StopIteration):
        return True
    for name in ("cuda", "hip"):
        m = re.search(rf"^{name}\s*(?::[^=\n]*)?=\s*(.+?)\s*$", text, re.MULTILINE)
        if m is None or m.group(1) != "None":
            return True
    return False


def default_device(device: str | None = None) -> str:
    """Return the torch device to use.

    Parameters
    ----------
    device : str or None
        An explicit choice ("cpu", "cuda", "cuda:1"); ``None`` picks "cuda" when
        ``torch.cuda.is_available()`` and "cpu" otherwise (without importing torch when
        the installed build has no GPU support: :func:`torch_build_has_gpu`).

    Raises
    ------
    ValueError
        When "cuda" is requested but no CUDA device is available.
    """
    if device is None:
        if not torch_build_has_gpu():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} requested but torch finds no CUDA device; "
                             f"use device='cpu'")
    return device


#: Torch intra-op threads while a model trains on the CPU (``MDN(threads=...)``). Torch splits
#: its gradient reductions by thread count, so the same seed trains a different network on a
#: machine with another number of cores; a fixed count gives the same model on any CPU. Two
#: is torch's own choice on the 2-core machines the book and CI run on (so their numbers are
#: those of the default), and these small networks gain little from more threads.
TRAIN_THREADS = 2


@contextlib.contextmanager
def fixed_threads(n: int | None, device: str = "cpu") -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads on the CPU, then restore the count.

    ``n=None`` or a CUDA ``device`` leaves torch as it is.
    """
    if n is None or str(device).startswith("cuda"):
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def trains_with_fixed_threads(fit: Callable) -> Callable:
    """Decorate a model's ``fit`` to run under :func:`fixed_threads` with the model's own
    ``threads`` and ``device`` attributes."""

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        with fixed_threads(self.threads, self.device):
            return fit(self, *args, **kwargs)

    return wrapper
