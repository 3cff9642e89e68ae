"""The symmetry of a galaxy stamp, used to augment the shape networks' training set.

A stamp drawn with a round PSF, white noise and the galaxy at its centre has the symmetry
of the square: its transpose and its flips are stamps the simulator could have drawn. The
ellipticity is a spin-2 quantity, so each of the eight elements of that (dihedral) group
acts on the labels by a sign: the transpose swaps the axes, ``e1 -> -e1``; a flip of either
axis mirrors the position angle, ``e2 -> -e2``; redshift (and every other scalar label) is
unchanged. Dieleman, Willett & Dambre (2015, MNRAS 450, 1441) used the same symmetry for
galaxy morphology. The paper (Arcelin 2021) trained without it, so it is an option
(``--augment``), not the default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["dihedral"]


def dihedral(x: Tensor, y: Tensor, targets: Sequence[str],
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Each galaxy of a batch under its own random element of the dihedral group D4.

    Arguments:
        x: stamps ``(B, C, H, H)`` (square, centred).
        y: labels ``(B, T)``, column ``i`` being ``targets[i]``.
        targets: the label names; ``e1`` and ``e2`` change sign as described above.
        generator: random source (default: torch's global one, which the training loop
            seeds per epoch, so an augmented run stays bit-identical when resumed).

    Returns:
        The transformed ``(x, y)``, new tensors (the inputs are left as they were).
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"stamps must be square to transpose; got {tuple(x.shape[-2:])}")
    b = x.shape[0]
    bits = torch.randint(0, 2, (3, b), generator=generator, device="cpu").to(x.device)
    transpose, flip_x, flip_y = bits.bool()

    def per_image(k: Tensor) -> Tensor:
        return k.view(b, *([1] * (x.dim() - 1)))

    x = torch.where(per_image(transpose), x.transpose(-1, -2), x)
    x = torch.where(per_image(flip_x), x.flip(-1), x)
    x = torch.where(per_image(flip_y), x.flip(-2), x)
    sign = torch.ones_like(y)
    if "e1" in targets:
        sign[:, list(targets).index("e1")] = 1 - 2 * transpose.to(y.dtype)
    if "e2" in targets:
        sign[:, list(targets).index("e2")] = 1 - 2 * (flip_x ^ flip_y).to(y.dtype)
    return x, y * sign
