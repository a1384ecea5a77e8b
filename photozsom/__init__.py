"""photozsom: photometric redshifts for DESI Legacy Survey galaxies with SOM coverage flags.

Modules, one per stage of the pipeline:

- :mod:`photozsom.schema`, :mod:`photozsom.io` — DR10 column names; reading and writing
  catalogues (FITS, Parquet, CSV, HDF5, in chunks); :mod:`photozsom.artifacts` — how every
  model is saved (arrays + versioned JSON, atomic, no pickle).
- :mod:`photozsom.datasets` — spectroscopic compilation, cross-match, sweeps, cutouts, the
  shipped real DESI EDR sample and the simulated default sky (``sim`` extra).
- :mod:`photozsom.features` — fluxes to extinction-corrected asinh magnitudes and colours.
- :mod:`photozsom.som` — self-organizing map (torch batch SOM or minisom).
- :mod:`photozsom.embed` — image embeddings (AION-1 or the built-in encoder).
- :mod:`photozsom.pdf`, :mod:`photozsom.mdn`, :mod:`photozsom.baseline` — P(z) models;
  :mod:`photozsom.model` — :class:`~photozsom.model.PhotoZModel`, what users train and apply;
  :mod:`photozsom.calibrate` — recalibration of P(z).
- :mod:`photozsom.metrics`, :mod:`photozsom.cells`, :mod:`photozsom.flags` — evaluation and flags;
  :mod:`photozsom.predict` — ``photozsom predict`` / ``flag`` over files of any size.
- :mod:`photozsom.pipeline` — one function per stage with declared run-directory files;
  :mod:`photozsom.survey` — the same over HATS catalogues with LSDB/Dask.
"""

__version__ = "0.1.0"

from photozsom.device import default_device

__all__ = ["__version__", "default_device"]
