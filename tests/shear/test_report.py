"""The shear figure: a metacalibrated panel only when something was metacalibrated."""

import struct

from cosmobench.shear.report import plot_shear


def _width(png) -> int:
    return struct.unpack(">I", png.read_bytes()[16:20])[0]  # IHDR width


def _result(metacal: bool) -> dict:
    bins = {"bins": [{"min": 5.0, "max": 20.0, "m": 0.01, "m_err": 0.002},
                     {"min": 20.0, "max": 80.0, "m": -0.02, "m_err": 0.001}]}  # fmt: skip
    est = {"snr_bins": bins, "metacal": {"snr_bins": bins} if metacal else None}
    return {"estimators": {"ksb": est}, "n_galaxies": 100, "g": 0.02}


def test_one_panel_without_metacalibration(tmp_path):
    one = _width(plot_shear(_result(False), tmp_path / "raw.png"))
    two = _width(plot_shear(_result(True), tmp_path / "both.png"))
    assert two == 2 * one
