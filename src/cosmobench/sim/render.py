"""Drawing one galaxy in six bands: lensing shear, PSF, pixels, Poisson noise, SNR.

Each component (unit flux) is sheared by the weak-lensing shear, convolved with the PSF and
drawn once per distinct PSF (GalSim's ``drawImage``, pixel response included); the band
images are flux-weighted sums of those drawings, in electrons. Noise is Poisson of source
plus sky on the background-subtracted image, as in the paper's ``PoissonNoise(sky_level)``,
drawn with numpy from the galaxy's own stream.
"""

from __future__ import annotations

import galsim
import numpy as np

from cosmobench.sim.population import Galaxy

__all__ = ["render", "add_poisson_noise", "matched_filter_snr", "lensed_ellipticity"]


def render(
    galaxy: Galaxy,
    flux: np.ndarray,
    psfs: list[galsim.GSObject | None],
    shear: tuple[float, float],
    *,
    stamp_size: int,
    pixel_scale: float,
) -> np.ndarray:
    """The noiseless stamp (6, S, S) float32, electrons per pixel.

    Arguments:
        galaxy: the galaxy (components of unit flux).
        flux: electrons per component and band, shape (n_components, 6).
        psfs: one PSF per band (equal objects are drawn once); ``None``: no PSF and no
            pixel response, the surface brightness sampled at pixel centres (for tests of
            the intrinsic shapes; an FFT of a bare de Vaucouleurs cusp would be huge).
        shear: weak-lensing reduced shear (g1, g2), applied after the intrinsic shape.
        stamp_size: pixels per side; the galaxy sits at the stamp centre.
        pixel_scale: arcsec per pixel.
    """
    lensed = [
        c.profile.shear(g1=shear[0], g2=shear[1]) if any(shear) else c.profile
        for c in galaxy.components
    ]
    out = np.zeros((len(psfs), stamp_size, stamp_size), np.float64)
    drawn: dict[int, list[np.ndarray]] = {}
    for b, psf in enumerate(psfs):
        key = id(psf)
        if key not in drawn:
            drawn[key] = [
                prof.drawImage(
                    nx=stamp_size, ny=stamp_size, scale=pixel_scale, method="no_pixel"
                ).array
                if psf is None
                else galsim.Convolve(prof, psf)
                .drawImage(nx=stamp_size, ny=stamp_size, scale=pixel_scale)
                .array
                for prof in lensed
            ]
        for c, img in enumerate(drawn[key]):
            out[b] += flux[c, b] * img
    return out.astype(np.float32)


def add_poisson_noise(
    noiseless: np.ndarray, sky: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Background-subtracted Poisson noise of source + sky: ``Poisson(s + B) − B``.

    Arguments:
        noiseless: (6, S, S) electrons.
        sky: sky level per pixel per band (6,), electrons.
        rng: the galaxy's noise stream.
    """
    sky = np.asarray(sky, dtype=np.float64)[:, None, None]
    lam = np.clip(noiseless.astype(np.float64), 0.0, None) + sky
    return (rng.poisson(lam) - sky).astype(np.float32)


def matched_filter_snr(noiseless: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Optimal (matched-filter) SNR per band: sqrt(Σ_p s_p² / (s_p + B)).

    The SNR of the flux estimated with the noiseless profile as the weight, for Poisson
    noise of source plus sky (variance s_p + B per pixel): the largest SNR any linear flux
    estimator reaches (e.g. Bosch et al. 2018, PASJ 70, S5, eq. 11, sky-only variant).
    """
    s = np.clip(noiseless.astype(np.float64), 0.0, None)
    var = s + np.asarray(sky, dtype=np.float64)[:, None, None]
    return np.sqrt((s * s / var).sum(axis=(1, 2)))


def lensed_ellipticity(
    e_int: tuple[float, float], shear: tuple[float, float]
) -> tuple[float, float]:
    """Ellipticity (shear convention) of a shape ``e_int`` after a reduced shear ``shear``.

    The composition of two shears (GalSim's ``Shear`` addition, lensing applied second);
    equals e_int + g to first order.
    """
    if not any(shear):
        return float(e_int[0]), float(e_int[1])
    s = galsim.Shear(g1=shear[0], g2=shear[1]) + galsim.Shear(g1=e_int[0], g2=e_int[1])
    return float(s.g1), float(s.g2)
