"""Classical shape measurements with GalSim's HSM: KSB and re-Gaussianization.

- KSB (Kaiser, Squires & Broadhurst 1995, ApJ 449, 460) on the **noiseless** r band: the
  label of the paper's data (Arcelin 2021), kept as a column.
- REGAUSS (Hirata & Seljak 2003, MNRAS 343, 459) on the **noisy** r band: the classical
  baseline a network is compared with.

Both are PSF-corrected with the pixelised PSF image. KSB estimates a shear g; REGAUSS
gives a distortion e = (a² − b²)/(a² + b²), converted here to the shear convention
g = e / (1 + sqrt(1 − |e|²)) of the training labels. Failures give NaN.
"""

from __future__ import annotations

import math

import galsim
import numpy as np

__all__ = ["ksb", "regauss", "NAN2"]

NAN2 = (math.nan, math.nan)


def ksb(image: np.ndarray, psf_image: galsim.Image, pixel_scale: float) -> tuple[float, float]:
    """KSB shear (g1, g2) of a noiseless stamp (S, S); NaN where HSM fails."""
    res = _estimate(image, psf_image, pixel_scale, "KSB", 0.0)
    if res is None:
        return NAN2
    return float(res.corrected_g1), float(res.corrected_g2)


def regauss(
    image: np.ndarray, psf_image: galsim.Image, pixel_scale: float, sky_var: float
) -> tuple[float, float]:
    """REGAUSS ellipticity of a noisy stamp, in the shear convention; NaN where HSM fails."""
    res = _estimate(image, psf_image, pixel_scale, "REGAUSS", sky_var)
    if res is None:
        return NAN2
    e1, e2 = float(res.corrected_e1), float(res.corrected_e2)
    e2sq = e1 * e1 + e2 * e2
    if not np.isfinite(e2sq) or e2sq >= 1.0:
        return NAN2
    k = 1.0 / (1.0 + math.sqrt(1.0 - e2sq))
    return e1 * k, e2 * k


def _estimate(
    image: np.ndarray, psf_image: galsim.Image, pixel_scale: float, method: str, sky_var: float
) -> galsim.hsm.ShapeData | None:
    img = galsim.Image(np.ascontiguousarray(image, dtype=np.float64), scale=pixel_scale)
    try:
        res = galsim.hsm.EstimateShear(
            img, psf_image, shear_est=method, sky_var=sky_var, strict=False
        )
    except (galsim.GalSimError, RuntimeError, ValueError):
        return None
    return None if res.error_message else res
