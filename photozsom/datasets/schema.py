"""Compatibility alias: the DR10 column schema lives in :mod:`photozsom.schema`."""

from photozsom.schema import *
from photozsom.schema import __all__  # noqa: F401
