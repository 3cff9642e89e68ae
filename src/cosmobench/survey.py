"""LSST photometric constants, depth and sky level: the survey at the boundary with surveycodex.

The six LSST bands *ugrizy* are described by zero points (the AB magnitude giving
1 e⁻/s), sky brightness (mag/arcsec²), a typical PSF FWHM and the number of visits of the
10-year survey. Two sets of constants exist:

- ``"surveycodex"`` (default): the current LSST values carried by the ``surveycodex``
  package (Rubin throughputs via ``speclite``), 30 s per visit (2 × 15 s snaps), so the
  10-year exposure per band is surveycodex's ``full_exposure_time``;
- ``"arcelin2021"``: the constants of the paper's image generator (Arcelin 2021,
  arXiv:2106.02465, and its public GalSim code), which counts **15 s per visit**. This
  reproduces the sky levels of ``docs/physics.md`` (884; 12,746; 65,329; 93,565; 126,597;
  145,354 e⁻/pixel) exactly.

Everything else converts with two formulas (units in the names):

.. math::

    F_b\\,[e^-] = 10^{0.4 (zp_b - m_b)}\\; t_b, \\qquad
    B_b\\,[e^-/\\mathrm{px}] = 10^{0.4 (zp_b - \\mu_b)}\\; t_b\\; s^2

with :math:`t_b` the exposure (s), :math:`\\mu_b` the sky brightness and :math:`s` the pixel
scale (arcsec).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from cosmobench.errors import CosmobenchError, check_choice

__all__ = [
    "BANDS",
    "CONSTANTS",
    "SurveyConstants",
    "lsst",
    "exposure_time",
    "sky_per_pixel",
    "mag_to_electrons",
    "electrons_to_mag",
]

BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
CONSTANTS: tuple[str, ...] = ("surveycodex", "arcelin2021")

#: LSST standard visit: two 15 s snaps (Ivezić et al. 2019, ApJ 873, 111, §3.1).
LSST_VISIT_TIME_S = 30.0
#: Visits per band over the 10-year survey (Ivezić et al. 2019, table 1; the paper's code).
LSST_VISITS_10YR = (56, 80, 184, 184, 160, 160)


@dataclasses.dataclass(frozen=True)
class SurveyConstants:
    """Per-band photometric constants of one survey description (arrays over :data:`BANDS`).

    Attributes:
        name: ``"surveycodex"`` or ``"arcelin2021"``.
        zeropoint: AB magnitude giving 1 e⁻/s, per band.
        sky_brightness: sky surface brightness, mag/arcsec², per band.
        psf_fwhm: typical (median) PSF FWHM in arcsec, per band.
        visits_10yr: number of visits per band in the 10-year survey.
        visit_time: seconds of exposure counted per visit.
        pixel_scale: arcsec per pixel.
    """

    name: str
    zeropoint: tuple[float, ...]
    sky_brightness: tuple[float, ...]
    psf_fwhm: tuple[float, ...]
    visits_10yr: tuple[int, ...]
    visit_time: float
    pixel_scale: float

    def __post_init__(self) -> None:
        for field in ("zeropoint", "sky_brightness", "psf_fwhm", "visits_10yr"):
            if len(getattr(self, field)) != len(BANDS):
                raise ValueError(f"{field} needs {len(BANDS)} values (one per band)")


@functools.cache
def lsst(constants: str = "surveycodex") -> SurveyConstants:
    """The LSST constants: ``"surveycodex"`` (current values) or ``"arcelin2021"`` (the paper's).

    surveycodex is imported here and nowhere else; its astropy quantities become floats.
    """
    check_choice("constants", constants, CONSTANTS)
    if constants == "arcelin2021":
        # The paper's generator: zero points and sky of the LSST Science Book era, Kolmogorov
        # PSF of 0.65" in every band, exposure counted as visits x 15 s.
        return SurveyConstants(
            name="arcelin2021",
            zeropoint=(26.50, 28.30, 28.13, 27.79, 27.40, 26.58),
            sky_brightness=(22.95, 22.24, 21.20, 20.47, 19.60, 18.63),
            psf_fwhm=(0.65,) * 6,
            visits_10yr=LSST_VISITS_10YR,
            visit_time=15.0,
            pixel_scale=0.2,
        )
    import surveycodex

    survey = surveycodex.get_survey("LSST")
    filters = [survey.get_filter(b) for b in BANDS]
    full = [float(f.full_exposure_time.to_value("s")) for f in filters]
    return SurveyConstants(
        name="surveycodex",
        zeropoint=tuple(float(f.zeropoint.value) for f in filters),
        sky_brightness=tuple(float(f.sky_brightness.value) for f in filters),
        psf_fwhm=tuple(float(f.psf_fwhm.to_value("arcsec")) for f in filters),
        visits_10yr=tuple(round(t / LSST_VISIT_TIME_S) for t in full),
        visit_time=LSST_VISIT_TIME_S,
        pixel_scale=float(survey.pixel_scale.to_value("arcsec")),
    )


def exposure_time(
    const: SurveyConstants,
    *,
    years: float | None = 10.0,
    visits: tuple[int, ...] | None = None,
    visit_time: float | None = None,
) -> np.ndarray:
    """Exposure time per band (s, shape (6,)): ``visits`` × ``visit_time``.

    Arguments:
        const: the survey constants.
        years: survey duration; the 10-year visit counts are scaled by ``years / 10``.
        visits: explicit visits per band (six integers); overrides ``years``.
        visit_time: seconds per visit; default ``const.visit_time``.
    """
    t_visit = const.visit_time if visit_time is None else float(visit_time)
    if visits is not None:
        if len(visits) != len(BANDS) or any(v <= 0 for v in visits):
            raise CosmobenchError(
                f"visits must be six positive integers (u,g,r,i,z,y); got {list(visits)}"
            )
        n_visits = np.asarray(visits, dtype=np.float64)
    else:
        if years is None or years <= 0:
            raise CosmobenchError(f"years must be > 0; got {years!r}")
        n_visits = np.asarray(const.visits_10yr, dtype=np.float64) * (years / 10.0)
    return n_visits * t_visit


def sky_per_pixel(
    const: SurveyConstants, exposure: np.ndarray, pixel_scale: float | None = None
) -> np.ndarray:
    """Mean sky level per pixel (e⁻, shape (6,)) for the given exposure per band (s)."""
    scale = const.pixel_scale if pixel_scale is None else pixel_scale
    zp = np.asarray(const.zeropoint)
    mu = np.asarray(const.sky_brightness)
    return 10.0 ** (0.4 * (zp - mu)) * np.asarray(exposure) * scale**2


def mag_to_electrons(mag: np.ndarray, const: SurveyConstants, exposure: np.ndarray) -> np.ndarray:
    """Electrons collected from AB magnitudes ``mag`` (..., 6) in exposures ``exposure`` (6,)."""
    return 10.0 ** (0.4 * (np.asarray(const.zeropoint) - np.asarray(mag))) * np.asarray(exposure)


def electrons_to_mag(
    electrons: np.ndarray, const: SurveyConstants, exposure: np.ndarray
) -> np.ndarray:
    """AB magnitudes from electrons (..., 6); the inverse of :func:`mag_to_electrons`."""
    rate = np.asarray(electrons, dtype=np.float64) / np.asarray(exposure)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(const.zeropoint) - 2.5 * np.log10(rate)
