"""Galaxy populations: the analytic ``builtin`` one and GalSim's COSMOS parametric fits.

A population draws a :class:`Galaxy` from a numpy ``Generator``: one to three achromatic
GalSim profiles of unit flux (intrinsic shape applied, centred), each with its six AB
magnitudes. Colours come from SEDs through GalSim's LSST bandpasses, computed once (per
template on a redshift grid, or per COSMOS galaxy), never by chromatic drawing, which is
about 100 times slower. The renderer scales each profile by its flux in each band, so a
bulge redder than its disk gives a bulge fraction that changes with the band.

References:
    LSST Science Collaboration (2009), *LSST Science Book* v2.0, arXiv:0912.0201, §3.7.2
    (number counts and redshift distribution). Coleman, Wu & Weedman (1980), ApJS 43, 393
    (the CWW templates). Miller et al. (2013), MNRAS 429, 2858 (CFHTLenS size prior).
    Mandelbaum et al. (2014), ApJS 212, 5 (GREAT3; the COSMOS parametric fits).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import galsim
import numpy as np

from cosmobench.errors import CosmobenchError
from cosmobench.survey import BANDS

__all__ = [
    "Component",
    "Galaxy",
    "BuiltinPopulation",
    "CosmosPopulation",
    "SED_TYPES",
    "colour_table",
    "make_population",
]

#: CWW templates (GalSim share/SEDs) and the fraction of builtin galaxies of each type.
SED_TYPES: tuple[str, ...] = ("E", "Sbc", "Scd", "Im")
TYPE_FRACTIONS: tuple[float, ...] = (0.15, 0.30, 0.35, 0.20)
#: i-band bulge-to-total range per type (uniform); our choice, not a fit.
BULGE_FRACTION: tuple[tuple[float, float], ...] = ((0.6, 1.0), (0.2, 0.6), (0.0, 0.2), (0.0, 0.0))
#: Per-component rms of the intrinsic ellipticity (shear convention) and its cut-off.
SIGMA_E = 0.26
E_MAX = 0.9
#: Log-normal scatter (natural log) of the half-light radius about the size-magnitude relation.
SIGMA_LN_HLR = 0.3
HLR_RANGE = (0.05, 2.5)  # arcsec
Z_GRID = np.linspace(0.0, 6.0, 601)
I_BAND = BANDS.index("i")
R_BAND = BANDS.index("r")


@dataclasses.dataclass(frozen=True)
class Component:
    """One profile of a galaxy: unit flux, intrinsic shape applied; its AB magnitudes (6,)."""

    profile: galsim.GSObject
    mag: np.ndarray


@dataclasses.dataclass(frozen=True)
class Galaxy:
    """A drawn galaxy before lensing, PSF and noise.

    Attributes:
        components: the profiles (bulge then disk, or one Sérsic for some COSMOS fits).
        redshift: the galaxy's redshift.
        hlr: half-light radius of the circularised profile, arcsec (exact for builtin
            galaxies, whose bulge and disk share it; r-band flux-weighted for COSMOS).
        bulge_frac: i-band flux fraction of the de Vaucouleurs bulge (NaN for a one-Sérsic
            COSMOS fit).
        e_int: intrinsic ellipticity (e1, e2), shear convention |e| = (1-q)/(1+q); exact for
            builtin galaxies (bulge and disk share it), the r-band flux-weighted mean of the
            component shapes for two-component COSMOS fits.
        sed_type: index into :data:`SED_TYPES` of the disk template (-1 for COSMOS).
        cosmos_index: catalog index of a COSMOS galaxy (-1 for builtin).
    """

    components: tuple[Component, ...]
    redshift: float
    hlr: float
    bulge_frac: float
    e_int: tuple[float, float]
    sed_type: int = -1
    cosmos_index: int = -1

    @property
    def mag(self) -> np.ndarray:
        """Total AB magnitude per band (6,)."""
        flux = sum(10.0 ** (-0.4 * c.mag) for c in self.components)
        return -2.5 * np.log10(flux)

    def rotated(self, angle_deg: float) -> Galaxy:
        """The same galaxy rotated counter-clockwise by ``angle_deg`` (shapes turn by 2×)."""
        theta = angle_deg * galsim.degrees
        c2, s2 = math.cos(2 * theta.rad), math.sin(2 * theta.rad)
        e1, e2 = self.e_int
        comps = tuple(Component(c.profile.rotate(theta), c.mag) for c in self.components)
        return dataclasses.replace(
            self, components=comps, e_int=(c2 * e1 - s2 * e2, s2 * e1 + c2 * e2)
        )


@functools.cache
def _lsst_bandpasses() -> tuple[galsim.Bandpass, ...]:
    """GalSim's LSST bandpasses with AB zero points, thinned (magnitudes change < 1e-3)."""
    return tuple(
        galsim.Bandpass(f"LSST_{b}.dat", wave_type="nm").thin(rel_err=1e-4).withZeropoint("AB")
        for b in BANDS
    )


@functools.cache
def colour_table() -> np.ndarray:
    """Colours m_b − m_i of the CWW templates on :data:`Z_GRID`: shape (types, 6, nz).

    Computed once per process (~0.1 s) through GalSim's LSST bandpasses.
    """
    bandpasses = _lsst_bandpasses()
    table = np.empty((len(SED_TYPES), len(BANDS), Z_GRID.size))
    for t, name in enumerate(SED_TYPES):
        sed = galsim.SED(f"CWW_{name}_ext.sed", wave_type="Ang", flux_type="flambda")
        for k, z in enumerate(Z_GRID):
            sz = sed.atRedshift(float(z))
            mags = np.array([sz.calculateMagnitude(bp) for bp in bandpasses])
            table[t, :, k] = mags - mags[I_BAND]
    return table


class BuiltinPopulation:
    """An analytic LSST-like population needing no download.

    - i-band magnitude from the number counts N(<i) ∝ 10^(0.31 i) (Science Book eq. 3.7,
      N(<i) = 46 × 10^(0.31 (i − 25)) arcmin⁻²), between :data:`~cosmobench.sim.config.MAG_BRIGHT`
      and ``mag_limit``;
    - redshift from p(z | i) = z² exp(−z/z0) / (2 z0³), z0 = 0.0417 i − 0.744 (Science Book
      eq. 3.8): a Gamma(3, z0) law;
    - a CWW type (E, Sbc, Scd, Im with fractions :data:`TYPE_FRACTIONS`), an i-band bulge
      fraction in the type's range; the bulge has the E template, the disk the type's;
    - de Vaucouleurs bulge + exponential disk sharing one half-light radius (so the
      galaxy's is exactly that) from the CFHTLenS size prior of Miller et al. (2013),
      median disk scale length exp(−1.145 − 0.269 (i − 23)) arcsec, times 1.678 for the
      half-light radius, with log-normal scatter :data:`SIGMA_LN_HLR`;
    - one intrinsic ellipticity for bulge and disk, each component N(0, 0.26) with |e| < 0.9,
      so the label is exact.
    """

    def __init__(self, mag_limit: float, mag_bright: float = 18.0) -> None:
        self.mag_limit = float(mag_limit)
        self.mag_bright = float(mag_bright)
        self._colours = colour_table()

    def draw(self, rng: np.random.Generator) -> Galaxy:
        """Draw one galaxy; the draws happen in a fixed order (determinism)."""
        a = 0.31 * math.log(10.0)
        lo, hi = math.exp(a * (self.mag_bright - 25)), math.exp(a * (self.mag_limit - 25))
        i_mag = 25 + math.log(lo + rng.random() * (hi - lo)) / a
        z0 = 0.0417 * i_mag - 0.744
        z = float(np.clip(rng.gamma(3.0, z0), 0.005, Z_GRID[-1]))
        sed_type = int(rng.choice(len(SED_TYPES), p=TYPE_FRACTIONS))
        bt_lo, bt_hi = BULGE_FRACTION[sed_type]
        bulge_frac = float(bt_lo + (bt_hi - bt_lo) * rng.random())
        r_disk = math.exp(-1.145 - 0.269 * (i_mag - 23.0))
        hlr = float(
            np.clip(1.678 * r_disk * math.exp(SIGMA_LN_HLR * rng.standard_normal()), *HLR_RANGE)
        )
        e1, e2 = _draw_ellipticity(rng)

        colours = np.array(
            [np.interp(z, Z_GRID, self._colours[t, b]) for t in (0, sed_type) for b in range(6)]
        )
        bulge_colour, disk_colour = colours[:6], colours[6:]
        shear = galsim.Shear(g1=e1, g2=e2)
        comps = []
        if bulge_frac > 0:
            prof = galsim.DeVaucouleurs(half_light_radius=hlr).shear(shear)
            comps.append(Component(prof, i_mag - 2.5 * math.log10(bulge_frac) + bulge_colour))
        if bulge_frac < 1:
            prof = galsim.Exponential(half_light_radius=hlr).shear(shear)
            comps.append(Component(prof, i_mag - 2.5 * math.log10(1 - bulge_frac) + disk_colour))
        return Galaxy(tuple(comps), z, hlr, bulge_frac, (e1, e2), sed_type=sed_type)


def _draw_ellipticity(rng: np.random.Generator) -> tuple[float, float]:
    while True:  # rejection: P(|e| > 0.9) ~ 0.2 %
        e1, e2 = SIGMA_E * rng.standard_normal(2)
        if e1 * e1 + e2 * e2 < E_MAX * E_MAX:
            return float(e1), float(e2)


@dataclasses.dataclass(frozen=True)
class _CosmosEntry:
    profiles: tuple[galsim.GSObject, ...]
    mags: tuple[np.ndarray, ...]
    shapes: tuple[tuple[float, float], ...]
    hlrs: tuple[float, ...]
    is_bulge: tuple[bool, ...]
    redshift: float


class CosmosPopulation:
    """GalSim's COSMOS parametric fits (the paper's galaxies), drawn with replacement.

    ``DIR`` holds a ``real_galaxy_catalog_*.fits`` with its ``_fits`` and ``_selection``
    files (``galsim_download_cosmos``; GalSim's 23.5 example has 96 galaxies after the
    default selection). Each draw picks a catalog galaxy with LSST i < ``mag_limit``
    (rejection), rotates it by a random angle as the paper did, and gives its components
    as achromatic profiles with the LSST magnitudes of their SEDs. The SEDs are normalised
    to HST counts per second (GalSim's convention), hence the 2.5 log10(HST area) term.
    """

    MAX_TRIES = 1000

    def __init__(self, directory: str | Path, mag_limit: float) -> None:
        directory = Path(directory)
        names = (
            sorted(
                p.name
                for p in directory.glob("real_galaxy_catalog_*.fits")
                if not p.name.endswith(("_fits.fits", "_selection.fits"))
            )
            if directory.is_dir()
            else []
        )
        if not names:
            raise CosmobenchError(
                f"cosmos:{directory} holds no real_galaxy_catalog_*.fits; download the catalog "
                "with `galsim_download_cosmos` and pass its folder"
            )
        try:
            self.catalog = galsim.COSMOSCatalog(file_name=names[-1], dir=str(directory))
        except Exception as e:  # galsim raises OSError, GalSimError, KeyError ...
            raise CosmobenchError(f"cannot read the COSMOS catalog in {directory}: {e}") from None
        self.mag_limit = float(mag_limit)
        self._offset = 2.5 * math.log10(galsim.COSMOSCatalog.hst_eff_area)
        self._cache: dict[int, _CosmosEntry] = {}

    def _entry(self, index: int) -> _CosmosEntry:
        if index not in self._cache:
            gal = self.catalog.makeGalaxy(index, gal_type="parametric", chromatic=True)
            parts = gal.obj_list if isinstance(gal, galsim.ChromaticSum) else [gal]
            bandpasses = _lsst_bandpasses()
            profiles, mags, shapes, hlrs, bulge = [], [], [], [], []
            for part in parts:
                prof = part.original  # unit-flux, sheared GSObject
                mags.append(
                    np.array([part.sed.calculateMagnitude(bp) for bp in bandpasses]) + self._offset
                )
                jac = prof.jac
                shear = galsim.JacobianWCS(
                    jac[0, 0], jac[0, 1], jac[1, 0], jac[1, 1]
                ).getDecomposition()[1]
                shapes.append((shear.g1, shear.g2))
                base = prof.original
                hlrs.append(float(base.half_light_radius))
                bulge.append(isinstance(base, galsim.DeVaucouleurs))
                profiles.append(prof)
            self._cache[index] = _CosmosEntry(
                tuple(profiles),
                tuple(mags),
                tuple(shapes),
                tuple(hlrs),
                tuple(bulge),
                float(parts[0].sed.redshift),
            )
        return self._cache[index]

    def draw(self, rng: np.random.Generator) -> Galaxy:
        """Draw one catalog galaxy brighter than the limit, randomly rotated."""
        for _ in range(self.MAX_TRIES):
            index = int(rng.integers(self.catalog.nobjects))
            entry = self._entry(index)
            flux = np.array([10.0 ** (-0.4 * m) for m in entry.mags])  # (ncomp, 6)
            if -2.5 * math.log10(flux[:, I_BAND].sum()) < self.mag_limit:
                break
        else:
            raise CosmobenchError(
                f"no COSMOS galaxy with i < {self.mag_limit} found in {self.MAX_TRIES} draws; "
                "raise mag_limit"
            )
        w_r = flux[:, R_BAND] / flux[:, R_BAND].sum()
        w_i = flux[:, I_BAND] / flux[:, I_BAND].sum()
        e1 = float(np.dot(w_r, [s[0] for s in entry.shapes]))
        e2 = float(np.dot(w_r, [s[1] for s in entry.shapes]))
        has_bulge = len(entry.profiles) > 1
        bulge_frac = (
            float(sum(w for w, b in zip(w_i, entry.is_bulge, strict=True) if b))
            if has_bulge
            else math.nan
        )
        gal = Galaxy(
            tuple(Component(p, m) for p, m in zip(entry.profiles, entry.mags, strict=True)),
            redshift=entry.redshift,
            hlr=float(np.dot(w_r, entry.hlrs)),
            bulge_frac=bulge_frac,
            e_int=(e1, e2),
            cosmos_index=index,
        )
        return gal.rotated(float(rng.uniform(0.0, 360.0)))


def make_population(population: str, mag_limit: float) -> BuiltinPopulation | CosmosPopulation:
    """Build the population named by a :class:`~cosmobench.sim.SimConfig` ``population``."""
    from cosmobench.sim.config import parse_population

    kind, directory = parse_population(population)
    if kind == "cosmos":
        return CosmosPopulation(directory, mag_limit)
    return BuiltinPopulation(mag_limit)
