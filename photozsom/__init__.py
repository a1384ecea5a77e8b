"""photozsom: photometric redshifts for DESI Legacy Survey galaxies with SOM coverage flags.

The package, in the order data flows through it:

- :mod:`photozsom.schema`, :mod:`photozsom.io`, :mod:`photozsom.artifacts` — DR10 column
  names and the columns photozsom writes (with units); reading and writing catalogues (FITS,
  Parquet, CSV, HDF5, in chunks); how every model is saved (arrays + versioned JSON, atomic,
  no pickle).
- :mod:`photozsom.data` — real inputs: spectroscopic catalogues, DR10 sweeps, the 2"
  cross-match, the cutout service and the shipped DESI EDR sample;
  :mod:`photozsom.sim` — the simulated default sky (``sim`` extra).
- :mod:`photozsom.features` — fluxes to extinction-corrected asinh magnitudes and colours;
  ``"auto"`` recipes from the bands a catalogue has.
- :mod:`photozsom.som` — self-organizing map (torch batch SOM or minisom);
  :mod:`photozsom.embed` — image embeddings (AION-1 or the built-in encoder) and the cutout store.
- :mod:`photozsom.pdf`, :mod:`photozsom.mdn`, :mod:`photozsom.baseline`,
  :mod:`photozsom.calibrate`, :mod:`photozsom.support`, :mod:`photozsom.model` — P(z): the
  mixture, the network, the forest, recalibration, the training support, and
  :class:`~photozsom.model.PhotoZModel` (what users train and apply).
- :mod:`photozsom.evaluation` — metrics, per-cell reports, detection scores, Table 1.
- :mod:`photozsom.flags` — :class:`~photozsom.flags.SOMFlagger`, the paper's flag as an estimator.
- :mod:`photozsom.train`, :mod:`photozsom.predict`, :mod:`photozsom.cli`,
  :mod:`photozsom.explore`, :mod:`photozsom.survey`, :mod:`photozsom.rail` — entry points:
  ``photozsom train`` / ``predict`` / ``flag``, the SOM explorer, LSDB/Dask, RAIL stages.
- :mod:`photozsom.workflow` — the book: run directories and stages, the chapters' experiments.

``from photozsom import metrics`` and ``from photozsom import cells`` (the API contract's
spelling) give :mod:`photozsom.evaluation.metrics` and :mod:`photozsom.evaluation.cells`.
"""

from importlib import import_module

__version__ = "0.1.0"

from photozsom.device import default_device

__all__ = ["__version__", "default_device"]

_EVALUATION = ("metrics", "cells")


def __getattr__(name: str):
    """``photozsom.metrics`` / ``photozsom.cells``: the evaluation modules (PEP 562)."""
    if name in _EVALUATION:
        return import_module(f"photozsom.evaluation.{name}")
    raise AttributeError(f"module 'photozsom' has no attribute {name!r}")
