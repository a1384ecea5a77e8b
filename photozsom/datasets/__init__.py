"""Reading real survey files and simulating the embedded default sky."""

from photozsom.schema import COLUMNS, validate

__all__ = ["COLUMNS", "simulate", "validate"]


def simulate(*args, **kwargs):
    """Simulate the embedded default Legacy Survey sky; see :func:`photozsom.datasets.mock.simulate`."""
    from photozsom.datasets.mock import simulate as _simulate

    return _simulate(*args, **kwargs)


simulate.__doc__ = simulate.__doc__
