"""SimConfig validation: every bad setting is a one-line error naming what is allowed."""

import pytest

from cosmobench.errors import CosmobenchError
from cosmobench.sim import PRESETS, SimConfig


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": -5}, "n must be an integer >= 1"),
        ({"n": 0}, "n must be"),
        ({"seed": -1}, "seed must be"),
        ({"psf": "gauss"}, "psf must be one of kolmogorov, lsst, seeing, moffat"),
        ({"population": "hst"}, "population must be one of builtin, cosmos:DIR"),
        ({"constants": "des"}, "constants must be one of surveycodex, arcelin2021"),
        ({"psf_fwhm": 0}, "psf_fwhm must be > 0"),
        ({"years": -1.0}, "years must be > 0"),
        ({"visits": (1, 2, 3)}, "six positive integers"),
        ({"shear": (0.8, 0.8)}, r"\|g\| < 1"),
        ({"shear_sigma": 0.5}, "shear_sigma must be between 0 and 0.2"),
        ({"shear": (0.01, 0.0), "shear_sigma": 0.01}, "not both"),
        ({"ring": True, "n": 5}, "even n"),
        ({"mag_limit": 40.0}, "mag_limit must be between"),
        ({"chunk_size": 0}, "chunk_size must be"),
        ({"preset": "dc2"}, "preset must be one of arcelin2021"),
    ],
)
def test_bad_settings_are_one_line_errors(kwargs, match):
    with pytest.raises(CosmobenchError, match=match) as info:
        SimConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_round_trip_and_preset_overrides(tmp_path):
    cfg = SimConfig.from_preset("arcelin2021", n=10, psf_fwhm=0.7, population=f"cosmos:{tmp_path}")
    assert cfg.preset == "arcelin2021" and cfg.constants == "arcelin2021" and cfg.psf_fwhm == 0.7
    assert cfg.cosmos_dir == tmp_path.resolve()
    assert SimConfig.from_dict(cfg.to_dict()) == cfg
    assert set(PRESETS["arcelin2021"]) <= set(cfg.to_dict())
    with pytest.raises(CosmobenchError, match="no field"):
        SimConfig.from_dict({**cfg.to_dict(), "colour": 1})
