"""Band names of the simulated sky, in one place (the sky's modules import them from here).

The SED grid (:mod:`photozsom.sim.sed`) integrates every filter of :data:`GRID_FILTERS`;
the Legacy Survey catalogue is built from :data:`LS_GRID_BANDS` and the spectroscopic
selections use the rest (:data:`SELECTION_BANDS`).
"""

from __future__ import annotations

from photozsom.sim.sed import GRID_FILTERS

__all__ = ["GRID_FILTERS", "LS_GRID_BANDS", "SELECTION_BANDS"]

#: Grid bands of the Legacy Survey photometry (both regions).
LS_GRID_BANDS: list[str] = ["G_S", "R_S", "I_S", "Z_S", "G_N", "R_N", "Z_N", "W1", "W2"]
#: Bands used only by the spectroscopic selections (true, extinction-corrected magnitudes).
SELECTION_BANDS: list[str] = [b for b in GRID_FILTERS if b not in LS_GRID_BANDS]
