"""Self-organizing map: the :class:`SOM` façade (:mod:`photozsom.som.map`) over two backends.

- :mod:`photozsom.som.map` — :class:`SOM`: validation, standardisation, chunked mapping,
  missing values, map quality, training distances, save/load (the module notes say how);
- :mod:`photozsom.som.torch_batch` — :class:`TorchBatchSOM`, Kohonen's batch map (default,
  CUDA when present);
- :mod:`photozsom.som.minisom_adapter` — :class:`MiniSomBackend`, minisom's online SOM;
- :mod:`photozsom.som.base`, :mod:`photozsom.som.grid` — the backend protocol and the
  rectangular / hexagonal geometry.
"""

from photozsom.som.base import SOMBackend
from photozsom.som.grid import Grid
from photozsom.som.map import ARTIFACT_VERSION, BACKENDS, SOM
from photozsom.som.minisom_adapter import MiniSomBackend
from photozsom.som.torch_batch import TorchBatchSOM

__all__ = [
    "ARTIFACT_VERSION",
    "BACKENDS",
    "SOM",
    "Grid",
    "MiniSomBackend",
    "SOMBackend",
    "TorchBatchSOM",
]
