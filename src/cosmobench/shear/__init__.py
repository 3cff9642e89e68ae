"""Weak-lensing shear bias of shape estimators on a shear-test store.

``cosmobench simulate --shear-test G`` makes the data (Pujol et al. 2019, A&A 621, A2);
:func:`measure_shear` measures every estimator on it, raw and with metacalibration
(Huff & Mandelbaum 2017; Sheldon & Huff 2017), and :func:`write_shear_report` writes
``shear.json``, ``shear.md`` and ``shear.png``. Modules: :mod:`~cosmobench.shear.design`
(the store's layout), :mod:`~cosmobench.shear.estimators`, :mod:`~cosmobench.shear.metacal`,
:mod:`~cosmobench.shear.bias` (paired m, c with bootstrap/jackknife errors),
:mod:`~cosmobench.shear.run`, :mod:`~cosmobench.shear.report`.
"""

from cosmobench.shear.bias import binned_bias, group_sums, shear_bias
from cosmobench.shear.design import ShearDesign, load_design
from cosmobench.shear.estimators import EstimatorSpec, parse_estimators
from cosmobench.shear.metacal import Metacal, responses
from cosmobench.shear.report import write_shear_report
from cosmobench.shear.run import ShearConfig, measure_shear

__all__ = [
    "EstimatorSpec",
    "Metacal",
    "ShearConfig",
    "ShearDesign",
    "binned_bias",
    "group_sums",
    "load_design",
    "measure_shear",
    "parse_estimators",
    "responses",
    "shear_bias",
    "write_shear_report",
]
