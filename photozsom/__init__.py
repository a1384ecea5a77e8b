"""photozsom: photometric redshifts for DESI Legacy Survey galaxies with SOM coverage flags.

Modules, one per stage of the pipeline:

- :mod:`photozsom.datasets` — catalogue schema, spectroscopic compilation, cross-match,
  cutouts, and the simulated default sky (:func:`photozsom.datasets.simulate`).
- :mod:`photozsom.features` — fluxes to extinction-corrected asinh magnitudes and colours.
- :mod:`photozsom.som` — self-organizing map (torch batch SOM or minisom).
- :mod:`photozsom.embed` — image embeddings (AION-1 or the built-in encoder).
- :mod:`photozsom.pdf`, :mod:`photozsom.mdn`, :mod:`photozsom.baseline` — P(z) models.
- :mod:`photozsom.metrics`, :mod:`photozsom.cells`, :mod:`photozsom.flags` — evaluation and flags.
"""

__version__ = "0.1.0"

from photozsom.device import default_device

__all__ = ["__version__", "default_device"]
