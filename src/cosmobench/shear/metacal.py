r"""Metacalibration: the shear response of any estimator, measured on each galaxy's image.

Huff & Mandelbaum (2017, arXiv:1702.02600) and Sheldon & Huff (2017, ApJ 841, 24): the
image :math:`I` of a galaxy is deconvolved by its PSF, sheared by a small
:math:`\pm\delta g` on each component, and reconvolved with the PSF dilated by
:math:`1 + 2|\delta g|` (so that the deconvolution's amplified noise stays bounded). An
estimator :math:`\hat e` measured on those images gives the response

.. math:: R_{ij} = \frac{\hat e_i(+\delta g_j) - \hat e_i(-\delta g_j)}{2\,\delta g},

and the calibrated shear is :math:`\langle \hat e \rangle / \langle R \rangle`, with
:math:`\hat e` measured on the unsheared ("noshear") image, which goes through the same
deconvolution and dilated reconvolution. The shear of the deconvolved noise would make the
noise anisotropic and bias R; the cure (Sheldon & Huff 2017, §4) adds to each image a
noise field of the same variance that went through the same operations after a 90°
rotation and was rotated back, which makes the total noise isotropic (and doubles its
variance). Here the noise variance per band is the sky level (sky-dominated regime; the
galaxy's own Poisson noise is neglected in the correction).

All image operations are GalSim's: ``InterpolatedImage`` (Lanczos-15, as ngmix), with the
store's PSF rebuilt from its config (:class:`cosmobench.sim.psf.PSFModel`, ``psf_fwhm``
column) convolved with the pixel; the dilated pixelised PSF is drawn without another pixel.
Only the diagonal responses R11, R22 are used (the off-diagonal ones are ~0 for an
isotropic population). Ribli et al. (2019, MNRAS 490, 1843) put a CNN inside this scheme.
"""

from __future__ import annotations

import functools
from typing import Any

import galsim
import numpy as np

from cosmobench.sim.psf import PSFModel
from cosmobench.survey import exposure_time, lsst, sky_per_pixel

__all__ = ["Metacal", "VARIANTS", "DELTA_G", "responses"]

DELTA_G = 0.01
#: The five metacalibration images: name -> applied shear (in units of δg).
VARIANTS = {"noshear": (0, 0), "1p": (1, 0), "1m": (-1, 0), "2p": (0, 1), "2m": (0, -1)}


class Metacal:
    """The metacalibration image operations for the stamps of one simulated store.

    Arguments:
        config: the store's simulation config (``ds.config``).
        bands: indices of the bands to process (others are returned as zeros); e.g. only
            the r band for an HSM estimator.
        delta_g: the shear step δg.
    """

    def __init__(
        self,
        config: dict[str, Any],
        bands: tuple[int, ...] = tuple(range(6)),
        delta_g: float = DELTA_G,
    ) -> None:
        self.pixel_scale = float(config.get("pixel_scale", 0.2))
        self.stamp_size = int(config.get("stamp_size", 64))
        self.psf = PSFModel(
            config.get("psf", "kolmogorov"),
            float(config.get("psf_fwhm", 0.65)),
            seeing_sigma=float(config.get("seeing_sigma", 0.2)),
            moffat_beta=float(config.get("moffat_beta", 3.5)),
        )
        consts = lsst(config.get("constants", "surveycodex"))
        visits = config.get("visits")
        exposure = exposure_time(
            consts, years=float(config.get("years", 10.0)), visits=tuple(visits) if visits else None
        )
        self.sky = np.asarray(sky_per_pixel(consts, exposure, self.pixel_scale), np.float64)
        self.bands = tuple(bands)
        self.delta_g = float(delta_g)
        self.pixel = galsim.Pixel(self.pixel_scale)

    @functools.lru_cache(maxsize=32)  # noqa: B019 - a few FWHMs per store
    def _psfs(self, fwhm: float) -> tuple[galsim.GSObject, galsim.GSObject]:
        """(the inverse of the pixelised PSF, the dilated pixelised PSF)."""
        eff = galsim.Convolve(self.psf._profile(fwhm), self.pixel)
        return galsim.Deconvolve(eff), eff.dilate(1.0 + 2.0 * self.delta_g)

    @functools.lru_cache(maxsize=32)  # noqa: B019
    def psf_image(self, fwhm: float, size: int = 32) -> galsim.Image:
        """The dilated pixelised PSF image (unit flux) of the metacal images, for HSM."""
        return self._psfs(fwhm)[1].drawImage(
            nx=size, ny=size, scale=self.pixel_scale, method="no_pixel"
        )

    def _apply(self, image: np.ndarray, fwhm: float) -> dict[str, np.ndarray]:
        """The five variants of one band image ``(S, S)`` (no noise correction)."""
        inv, dilated = self._psfs(fwhm)
        ii = galsim.InterpolatedImage(
            galsim.Image(np.ascontiguousarray(image, np.float64), scale=self.pixel_scale),
            x_interpolant="lanczos15",
            calculate_stepk=False,  # a noisy stamp (or pure noise, of any total flux):
            calculate_maxk=False,  # keep the stamp's own extent and band limit
        )
        deconv = galsim.Convolve(ii, inv)
        out = {}
        s = self.stamp_size
        for name, (a, b) in VARIANTS.items():
            obj = deconv.shear(g1=a * self.delta_g, g2=b * self.delta_g) if a or b else deconv
            out[name] = (
                galsim.Convolve(obj, dilated)
                .drawImage(nx=s, ny=s, scale=self.pixel_scale, method="no_pixel")
                .array
            )
        return out

    def images(
        self, stamp: np.ndarray, fwhm: np.ndarray, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """The five metacal images of one stamp ``(6, S, S)`` (float32, same shape).

        Arguments:
            stamp: the noisy image, electrons per pixel.
            fwhm: ``(6,)`` PSF FWHM per band (arcsec, the ``psf_fwhm`` column).
            rng: draws the unit white noise of the noise correction; give the +g and −g
                copies of a shear-test galaxy the same stream to keep them paired.
        """
        out = {k: np.zeros(stamp.shape, np.float32) for k in VARIANTS}
        unit = rng.standard_normal(stamp.shape[1:])
        noise_by_fwhm: dict[float, dict[str, np.ndarray]] = {}
        for b in self.bands:
            f = float(fwhm[b])
            if f not in noise_by_fwhm:  # the correcting noise: rotate, shear, rotate back
                rot = self._apply(np.rot90(unit, 1), f)
                noise_by_fwhm[f] = {k: np.rot90(v, -1) for k, v in rot.items()}
            sig = float(np.sqrt(self.sky[b]))
            for k, v in self._apply(stamp[b], f).items():
                out[k][b] = v + sig * noise_by_fwhm[f][k]
        return out


def responses(measured: dict[str, np.ndarray], delta_g: float = DELTA_G) -> np.ndarray:
    """Diagonal responses ``(n, 2)``: R11, R22 from the estimates ``(n, 2)`` per variant."""
    r1 = (measured["1p"][:, 0] - measured["1m"][:, 0]) / (2 * delta_g)
    r2 = (measured["2p"][:, 1] - measured["2m"][:, 1]) / (2 * delta_g)
    return np.stack([r1, r2], 1)
