"""Training data held in memory: the validation split, sanity checks, per-epoch shards.

The paper trained from one in-memory array (Keras ``fit``); so do we: the whole split is one
tensor, on the device when it fits there, and a batch is an index gather. The validation
split is fixed by galaxy index (a hash of the store's ``index`` column), so every model
trained on a store holds out the same galaxies, whatever the seed. Each epoch's order comes
from a ``torch.Generator`` seeded by ``(seed, epoch)``, so a resumed run replays exactly the
batches the uninterrupted run would have seen; under DDP rank ``r`` of ``W`` takes every
``W``-th galaxy of that order, so the ranks' shards partition the epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cosmobench.errors import CosmobenchError

__all__ = [
    "Split",
    "TensorSplit",
    "split_by_index",
    "nonfinite_rows",
    "derive_seed",
    "epoch_order",
    "iter_batches",
    "place",
    "check_batch_size",
]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014): a fixed, well-mixed hash of uint64."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def split_by_index(index: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training and validation galaxies, fixed by galaxy index.

    A galaxy goes to validation when a hash of its index, mapped to [0, 1), is below
    ``val_fraction``: its membership depends on its index alone (not on the seed, the
    order of the store or its size), so a larger store of the same simulation keeps the
    same validation galaxies. At least one galaxy is held out when ``val_fraction > 0``.

    Arguments:
        index: the key of each row, shape ``(N,)``: the store's ``index`` column, or a key
            shared by the images of one galaxy (``index // 2`` for ring pairs, the
            ``group`` of a shear-test store) so that they land on the same side.
        val_fraction: share of galaxies to hold out, in [0, 1).

    Returns:
        ``(train_positions, val_positions)``, sorted int64 arrays partitioning ``range(N)``.
    """
    index = np.asarray(index, dtype=np.int64)
    u = (_splitmix64(index) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    val = u < val_fraction
    if val_fraction > 0 and not val.any() and len(index) > 1:
        val[np.argmin(u)] = True
    pos = np.arange(len(index), dtype=np.int64)
    return pos[~val], pos[val]


def nonfinite_rows(t: Tensor) -> Tensor:
    """Boolean mask ``(N,)`` of rows of ``t`` holding any NaN or infinite value."""
    bad = ~torch.isfinite(t)
    return bad.reshape(len(t), -1).any(dim=1)


def derive_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys through ``numpy.random.SeedSequence``."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def epoch_order(n: int, seed: int, epoch: int, *, rank: int = 0, world: int = 1) -> Tensor:
    """This rank's shuffled positions ``0..n-1`` for one epoch.

    The permutation depends on ``(seed, epoch)`` only; it is cut to a multiple of ``world``
    and rank ``rank`` takes elements ``rank, rank + world, ...``: the shards are disjoint,
    equal in size (so every rank runs the same number of steps) and together cover the
    epoch. With ``world`` ranks of batch ``b``, global step ``k`` sees exactly the galaxies
    of positions ``k*world*b .. (k+1)*world*b`` of the permutation — what one process of
    batch ``world * b`` would see.
    """
    gen = torch.Generator().manual_seed(derive_seed(seed, epoch, 0x5EED))
    perm = torch.randperm(n, generator=gen)
    usable = (n // world) * world
    return perm[:usable][rank::world]


def iter_batches(order: Tensor, batch_size: int, *, drop_last: bool = False) -> Iterator[Tensor]:
    """Consecutive batches of ``order``; a last batch of a single galaxy is left out
    (BatchNorm cannot normalise one sample), any other partial batch is kept unless
    ``drop_last``."""
    n = len(order)
    for start in range(0, n, batch_size):
        chunk = order[start : start + batch_size]
        if (len(chunk) < 2 and n > 1) or (drop_last and len(chunk) < batch_size):
            return
        yield chunk


def place(t: Tensor, device: torch.device) -> Tensor:
    """Move a whole data tensor to ``device`` if it fits in free memory, else keep it on
    the host (pinned, so per-batch copies overlap); CPU tensors stay where they are."""
    if device.type == "cpu" or t.device == device:
        return t
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        if t.numel() * t.element_size() > 0.5 * free:
            return t.pin_memory()
    return t.to(device)


@dataclasses.dataclass
class TensorSplit:
    """One split of a training set, in memory.

    Attributes:
        x: inputs ``(N, ...)`` (images or latents), on the device when they fit there.
        y: targets ``(N, ...)`` or ``None`` (flow).
        index: the galaxies' store indices ``(N,)`` (numpy), for the record.
    """

    x: Tensor
    y: Tensor | None
    index: np.ndarray

    def __post_init__(self) -> None:
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")
        if len(self.index) != len(self.x):
            raise ValueError(f"x has {len(self.x)} rows but index has {len(self.index)}")

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        y = None if self.y is None else tuple(self.y.shape)
        return f"TensorSplit(x={tuple(self.x.shape)}, y={y}, device={self.x.device})"

    def batch(self, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """Gather rows ``idx`` and move them to ``device`` (a no-op when already there)."""
        idx = idx.to(self.x.device)
        x = self.x[idx].to(device, non_blocking=True)
        y = None if self.y is None else self.y[idx].to(device, non_blocking=True)
        return x, y

    def steps(self, batch_size: int, world: int, drop_last: bool) -> int:
        """Steps of one epoch on each rank (the same every epoch)."""
        order = torch.arange(len(self) // world)
        return sum(1 for _ in iter_batches(order, batch_size, drop_last=drop_last))

    def epoch_batches(self, epoch: int, seed: int, batch_size: int, device: torch.device, *,
                      rank: int = 0, world: int = 1, drop_last: bool = False
                      ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """This rank's shuffled batches ``(x, y)`` of one epoch (:func:`epoch_order`)."""
        order = epoch_order(len(self), seed, epoch, rank=rank, world=world)
        for idx in iter_batches(order, batch_size, drop_last=drop_last):
            yield self.batch(idx, device)

    def ordered_batches(self, batch_size: int, device: torch.device, *, rank: int = 0,
                        world: int = 1) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Rank ``rank`` takes every ``world``-th galaxy, in order (validation)."""
        mine = torch.arange(len(self))[rank::world]
        for start in range(0, len(mine), batch_size):
            yield self.batch(mine[start:start + batch_size], device)

    def to(self, device: torch.device) -> TensorSplit:
        """This split with its tensors placed on ``device`` (see :func:`place`)."""
        y = None if self.y is None else place(self.y, device)
        return TensorSplit(place(self.x, device), y, self.index)


#: A split the training loop reads: in memory, or streamed from the store
#: (:class:`cosmobench.train.stream.StreamSplit`); both have ``index``, ``steps``,
#: ``epoch_batches``, ``ordered_batches`` and ``batch``.
Split = Any


def check_batch_size(batch_size: int, n_train: int, world: int) -> None:
    """Refuse a batch larger than one rank's share of the training split."""
    per_rank = n_train // world
    if batch_size > per_rank:
        where = f" per process ({world} processes)" if world > 1 else ""
        raise CosmobenchError(
            f"batch size {batch_size} is larger than the {per_rank} training galaxies"
            f"{where}; use --batch-size <= {per_rank} or more data"
        )
