"""The shear-test design of a store: which rows form a galaxy's four images.

A store made with ``cosmobench simulate --shear-test G`` (:class:`cosmobench.sim.SimConfig`
``shear_test``; Pujol et al. 2019, A&A 621, A2) holds galaxy *k* as rows 4k..4k+3:
(+g, 0°), (+g, 90°), (−g, 0°), (−g, 90°), sheared on component 1 for even *k* and 2 for
odd *k*, with the same pixel noise in the ±g copies. :func:`load_design` checks that layout
from the store's columns and returns it as a :class:`ShearDesign`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosmobench.errors import CosmobenchError

__all__ = ["ShearDesign", "load_design", "SLOTS"]

#: Order of a galaxy's four rows: (sign of the shear, rotated by 90°).
SLOTS = ((1, False), (1, True), (-1, False), (-1, True))


@dataclass(frozen=True)
class ShearDesign:
    """The shear-test layout of a store, with the per-image truth and bin variables.

    Attributes:
        g: the applied |shear|.
        component: ``(G,)`` the sheared component of each galaxy (0 for g1, 1 for g2).
        truth: ``(4G, 2)`` true sheared ellipticity (``e1``, ``e2`` columns) of each row.
        snr: ``(G,)`` r-band matched-filter SNR of each galaxy (mean of its four rows).
        size: ``(G,)`` half-light radius (arcsec).
        config: the store's simulation config (dict).
    """

    g: float
    component: np.ndarray
    truth: np.ndarray = field(repr=False)
    snr: np.ndarray = field(repr=False)
    size: np.ndarray = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.component)
        if self.truth.shape != (4 * n, 2) or self.snr.shape != (n,) or self.size.shape != (n,):
            raise ValueError(f"a design of {n} galaxies needs truth (4G, 2), snr and size (G,)")

    @property
    def n_groups(self) -> int:
        """Number of galaxies (groups of four images)."""
        return len(self.component)


def load_design(ds: Any) -> ShearDesign:
    """The :class:`ShearDesign` of an opened store; a one-line error if it has none."""
    g = float((ds.config or {}).get("shear_test") or 0.0)
    needed = ("group", "sign", "ring_partner", "g1", "g2", "e1", "e2")
    if ds.kind != "simulation" or g <= 0 or any(c not in ds.columns for c in needed):
        raise CosmobenchError(
            f"{ds.path} is not a shear-test store; make one with "
            "`cosmobench simulate --n N --shear-test 0.02 --out STORE`"
        )
    n = ds.n
    group = np.asarray(ds.column("group"))
    sign = np.asarray(ds.column("sign"))
    rot = np.asarray(ds.column("rot90"), bool)
    shear = np.stack([ds.column("g1"), ds.column("g2")], 1).astype(np.float64)
    k = np.arange(n) // 4
    want_sign = np.tile([1, 1, -1, -1], n // 4)
    want_rot = np.tile([False, True, False, True], n // 4)
    comp = k % 2
    ok = (
        n % 4 == 0
        and np.array_equal(group, k)
        and np.array_equal(sign, want_sign)
        and np.array_equal(rot, want_rot)
        and np.allclose(shear[np.arange(n), comp], want_sign * g, atol=1e-6)
        and np.allclose(shear[np.arange(n), 1 - comp], 0.0)
    )
    if not ok:
        raise CosmobenchError(f"{ds.path}: its rows do not follow the shear-test design")
    snr = np.asarray(ds.column("snr"), np.float64)
    if snr.ndim == 2:
        snr = snr[:, list(ds.bands).index("r") if "r" in ds.bands else 0]
    truth = np.stack([ds.column("e1"), ds.column("e2")], 1).astype(np.float64)
    return ShearDesign(
        g=g,
        component=comp[::4].copy(),
        truth=truth,
        snr=snr.reshape(-1, 4).mean(1),
        size=np.asarray(ds.column("hlr"), np.float64)[::4].copy(),
        config=dict(ds.config),
    )
