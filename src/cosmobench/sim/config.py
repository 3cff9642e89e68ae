"""``SimConfig``: every setting of a simulated data set, and the ``arcelin2021`` preset.

A data set is a pure function of its config: galaxy *i* of ``SimConfig(seed=s, ...)`` is the
same image whatever the workers, chunking or interruptions (see :mod:`cosmobench.sim.run`).
The resolved ``to_dict()`` is stored in the data set's attributes, and rerunning
``simulate`` on an existing output resumes only when the configs are equal.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_choice, check_positive
from cosmobench.survey import CONSTANTS

__all__ = ["SimConfig", "PRESETS", "PSF_KINDS", "POPULATIONS", "parse_population"]

PSF_KINDS: tuple[str, ...] = ("kolmogorov", "lsst", "seeing", "moffat")
POPULATIONS: tuple[str, ...] = ("builtin", "cosmos:DIR")

#: Bright end of the builtin population's i-band magnitudes (the number counts of the LSST
#: Science Book §3.7.2 hold for roughly 20.5 < i < 25.5; brighter galaxies are rare).
MAG_BRIGHT = 18.0


@dataclasses.dataclass(frozen=True)
class SimConfig(Config):
    """Settings of one simulated data set (units in the comments).

    Attributes:
        n: number of galaxies.
        seed: master seed; galaxy *i* uses ``SeedSequence(seed, spawn_key=(i,))``.
        population: ``"builtin"`` (analytic LSST-like population, no download) or
            ``"cosmos:DIR"`` (GalSim's COSMOS parametric fits, the paper's galaxies).
        mag_limit: keep galaxies with i < ``mag_limit`` (25.3: the LSST gold sample,
            LSST Science Book §3.7.2).
        psf: ``kolmogorov`` (fixed, ``psf_fwhm``, all bands: the paper's), ``lsst``
            (Kolmogorov with surveycodex's FWHM per band), ``seeing`` (Kolmogorov with a
            log-normal FWHM drawn per galaxy, median ``psf_fwhm``, sigma ``seeing_sigma``),
            ``moffat`` (``psf_fwhm``, ``moffat_beta``).
        psf_fwhm: arcsec.
        seeing_sigma: log-normal width of the per-galaxy seeing (natural log).
        moffat_beta: Moffat index.
        constants: ``surveycodex`` (current LSST values, 30 s per visit) or
            ``arcelin2021`` (the paper's zero points and sky, 15 s per visit).
        years: survey duration (the 10-year visit counts scaled); ignored if ``visits``.
        visits: visits per band (u, g, r, i, z, y); overrides ``years``.
        shear: constant weak-lensing shear (g1, g2) applied to every galaxy.
        shear_sigma: if > 0, a shear drawn per galaxy, N(0, shear_sigma) per component
            (replaces ``shear``).
        ring: 90°-rotated pairs (galaxy 2k+1 is galaxy 2k rotated by 90°, same shear and
            PSF, independent noise), so that shape noise cancels in shear-bias tests.
        shear_test: if > 0, the shear-test design of Pujol et al. (2019, A&A 621, A2):
            each of the ``n`` galaxies is drawn four times (store rows 4k..4k+3: +g, +g
            rotated by 90°, −g, −g rotated by 90°) with a shear of ±``shear_test`` on one
            component, g1 for even k and g2 for odd k, and the same pixel noise for the +g
            and −g copies. The store holds ``4 n`` images (see :attr:`n_images`).
        measure: run the HSM KSB / REGAUSS measurements (NaN columns when off).
        chunk_size: images per stored chunk (layout only; does not change any galaxy).
        pixel_scale: arcsec per pixel.
        stamp_size: pixels per side.
        preset: the preset this config started from, if any (recorded only).
    """

    n: int = 1000
    seed: int = 0
    population: str = "builtin"
    mag_limit: float = 25.3
    psf: str = "kolmogorov"
    psf_fwhm: float = 0.65
    seeing_sigma: float = 0.2
    moffat_beta: float = 3.5
    constants: str = "surveycodex"
    years: float = 10.0
    visits: tuple[int, ...] | None = None
    shear: tuple[float, float] = (0.0, 0.0)
    shear_sigma: float = 0.0
    ring: bool = False
    shear_test: float = 0.0
    measure: bool = True
    chunk_size: int = 256
    pixel_scale: float = 0.2
    stamp_size: int = 64
    preset: str | None = None

    def __post_init__(self) -> None:
        _check_int("n", self.n, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_int("chunk_size", self.chunk_size, minimum=1)
        _check_int("stamp_size", self.stamp_size, minimum=16)
        object.__setattr__(self, "population", _normalise_population(self.population))
        if not MAG_BRIGHT + 1.0 <= self.mag_limit <= 30.0:
            raise CosmobenchError(
                f"mag_limit must be between {MAG_BRIGHT + 1.0} and 30; got {self.mag_limit!r}"
            )
        check_choice("psf", self.psf, PSF_KINDS)
        check_choice("constants", self.constants, CONSTANTS)
        check_positive("psf_fwhm", self.psf_fwhm)
        check_positive("seeing_sigma", self.seeing_sigma, strict=False)
        if self.moffat_beta <= 1.1:
            raise CosmobenchError(f"moffat_beta must be > 1.1; got {self.moffat_beta!r}")
        check_positive("pixel_scale", self.pixel_scale)
        check_positive("years", self.years)
        if self.visits is not None:
            visits = tuple(self.visits)
            if len(visits) != 6 or any(not _is_int(v) or v <= 0 for v in visits):
                raise CosmobenchError(
                    f"visits must be six positive integers (u,g,r,i,z,y); got {list(visits)}"
                )
            object.__setattr__(self, "visits", tuple(int(v) for v in visits))
        shear = tuple(float(g) for g in self.shear)
        if len(shear) != 2 or math.hypot(*shear) >= 1.0:
            raise CosmobenchError(f"shear must be two numbers g1,g2 with |g| < 1; got {shear}")
        object.__setattr__(self, "shear", shear)
        if not 0.0 <= self.shear_sigma <= 0.2:
            raise CosmobenchError(f"shear_sigma must be between 0 and 0.2; got {self.shear_sigma}")
        if self.shear_sigma > 0 and any(shear):
            raise CosmobenchError("give either a constant shear or a random shear, not both")
        if self.ring and self.n % 2:
            raise CosmobenchError(f"ring needs an even n (pairs of galaxies); got n={self.n}")
        if not 0.0 <= self.shear_test <= 0.1:
            raise CosmobenchError(f"shear_test must be between 0 and 0.1; got {self.shear_test}")
        if self.shear_test > 0:
            if any(shear) or self.shear_sigma > 0 or self.ring:
                raise CosmobenchError(
                    "the shear test sets the shear and the ring pairs itself; give no --shear "
                    "or --ring with --shear-test"
                )
            if self.chunk_size % 4:
                raise CosmobenchError(
                    "a shear-test store keeps the 4 images of a galaxy in one chunk: "
                    f"chunk_size must be a multiple of 4; got {self.chunk_size}"
                )
        if self.preset is not None:
            check_choice("preset", self.preset, PRESETS)

    @property
    def n_images(self) -> int:
        """Rows of the store: ``4 n`` in the shear-test design, else ``n``."""
        return 4 * self.n if self.shear_test > 0 else self.n

    @classmethod
    def from_preset(cls, name: str | None, **overrides: Any) -> SimConfig:
        """A config from the named preset (or the defaults), with ``overrides`` applied."""
        base: dict[str, Any] = {}
        if name is not None:
            check_choice("preset", name, PRESETS)
            base = dict(PRESETS[name], preset=name)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    @property
    def cosmos_dir(self) -> Path | None:
        """The COSMOS catalog folder of a ``cosmos:DIR`` population, else ``None``."""
        kind, directory = parse_population(self.population)
        return directory if kind == "cosmos" else None


#: Presets: the settings they fix. ``arcelin2021`` is the paper's data (section 2.1 of
#: Arcelin et al. 2021 and its GalSim code): Kolmogorov PSF of 0.65" in all bands, 0.2"
#: pixels, 64x64 stamps, 10-year depth counted as visits x 15 s, the paper's zero points and
#: sky. Its galaxies are COSMOS parametric fits: add ``population="cosmos:DIR"`` (the paper
#: drew from the 25.2 catalog, hence ``mag_limit=25.2``).
PRESETS: dict[str, dict[str, Any]] = {
    "arcelin2021": {
        "constants": "arcelin2021",
        "psf": "kolmogorov",
        "psf_fwhm": 0.65,
        "years": 10.0,
        "pixel_scale": 0.2,
        "stamp_size": 64,
        "mag_limit": 25.2,
    },
}


def parse_population(population: str) -> tuple[str, Path | None]:
    """Split ``"builtin"`` / ``"cosmos:DIR"`` into (kind, directory)."""
    if population == "builtin":
        return "builtin", None
    if population.startswith("cosmos:") and len(population) > len("cosmos:"):
        return "cosmos", Path(population[len("cosmos:") :])
    raise CosmobenchError(f"population must be one of builtin, cosmos:DIR; got {population!r}")


def _normalise_population(population: str) -> str:
    kind, directory = parse_population(str(population))
    if kind == "cosmos":
        return f"cosmos:{directory.expanduser().resolve()}"
    return kind


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise CosmobenchError(f"{name} must be an integer >= {minimum}; got {value!r}")
