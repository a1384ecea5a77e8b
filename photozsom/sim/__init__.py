"""The embedded default sky: a simulated DESI Legacy Survey footprint (the ``sim`` extra).

Built from real instrument data that registry packages ship (speclite and kcorrect filter
curves, kcorrect templates): :mod:`~photozsom.sim.population` (luminosity functions,
spectra, sizes), :mod:`~photozsom.sim.sed` (templates and filter curves),
:mod:`~photozsom.sim.photometry` (depths, noise, blends, extinction, morphology),
:mod:`~photozsom.sim.surveys` (the spectroscopic surveys), :mod:`~photozsom.sim.images`
(cutouts) and :mod:`~photozsom.sim.bands` (band names); :func:`simulate`
(:mod:`~photozsom.sim.sky`) writes the sky's files.
"""

from photozsom.sim.sky import simulate

__all__ = ["simulate"]
