"""The LSST-like galaxy image simulator (``docs/physics.md``): population → PSF → pixels → store.

``simulate(SimConfig(...), "data.zarr", workers=2)`` writes a data set readable with
:func:`cosmobench.store.open_dataset`. Modules: :mod:`~cosmobench.sim.config` (settings,
presets), :mod:`~cosmobench.sim.population` (builtin and COSMOS galaxies),
:mod:`~cosmobench.sim.psf`, :mod:`~cosmobench.sim.render` (drawing, noise, SNR),
:mod:`~cosmobench.sim.measure` (HSM KSB / REGAUSS), :mod:`~cosmobench.sim.run` (workers,
Dask, resume).
"""

from cosmobench.sim.config import PRESETS, SimConfig
from cosmobench.sim.run import COLUMNS, SHEAR_TEST_COLUMNS, Simulator, columns_of, simulate

__all__ = [
    "SimConfig",
    "PRESETS",
    "Simulator",
    "COLUMNS",
    "SHEAR_TEST_COLUMNS",
    "columns_of",
    "simulate",
]
