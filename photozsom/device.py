"""Choice of torch device: CUDA when present, CPU otherwise, overridable everywhere."""

from __future__ import annotations


def default_device(device: str | None = None) -> str:
    """Return the torch device to use.

    Parameters
    ----------
    device : str or None
        An explicit choice ("cpu", "cuda", "cuda:1"); ``None`` picks "cuda" when
        ``torch.cuda.is_available()`` and "cpu" otherwise.

    Raises
    ------
    ValueError
        When "cuda" is requested but no CUDA device is available.
    """
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but torch finds no CUDA device; use device='cpu'")
    return device
