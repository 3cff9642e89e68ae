"""Streamed training data: a store larger than memory, read window by window.

A survey-sized training set does not fit in memory (one 6 × 64 × 64 float32 galaxy is 98 KB;
a million galaxies are 98 GB). :class:`StreamSplit` reads the store's image chunks while
training runs, in the way ``tf.data``'s ``shuffle(buffer)`` does for Keras (Abadi et al. 2016,
arXiv:1603.04467) and WebDataset's shard shuffling does for PyTorch:

1. every epoch shuffles the order of the store's chunks;
2. the training galaxies, taken chunk after chunk in that order, are cut into one contiguous
   shard per DDP rank (so each rank reads only ~1/W of the chunks and the shards partition
   the epoch), then into *windows* of ``shuffle_buffer`` galaxies;
3. each window is read and decoded by a background worker process
   (``torch.utils.data.DataLoader``), scaled there, shuffled in full, and cut into batches;
   pinned for the GPU when the device is CUDA.

Randomness: the chunk order is a uniform permutation and a window is a uniform permutation
of its galaxies, but two galaxies of the same chunk stay within ``shuffle_buffer +
chunk_size`` places of each other. A batch therefore mixes galaxies of about
``shuffle_buffer / chunk_size`` chunks. cosmobench stores hold independently drawn galaxies
in index order (galaxy *i* depends on the seed and *i* alone), so neighbours are not
correlated and a window of a few chunks already gives batches as random as a full shuffle;
a store sorted by some property (magnitude, redshift) needs a window of many chunks.
A window as large as the split is a full shuffle.

Determinism: the epoch's plan (which galaxies, in which order, on which rank) is computed in
the main process from ``(seed, epoch, rank, world)`` alone, and the loader returns windows
in plan order, so the batches do not depend on the number of loader workers, and a run
resumed at an epoch boundary sees exactly the batches of the uninterrupted run.

Memory: about ``(loader_workers + 2) × shuffle_buffer`` galaxies of each streamed image
array (the windows being decoded, the one being trained on, its pinned copy), whatever the
store's size.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cosmobench import memory
from cosmobench.errors import CosmobenchError, check_choice
from cosmobench.train.config import DATA_MODES

__all__ = [
    "auto_loader_workers",
    "DATA_MODES",
    "StreamSplit",
    "choose_data_mode",
    "epoch_windows",
    "ordered_windows",
    "read_rows",
    "read_chunks",
    "scan_nonfinite",
    "sample_positions",
    "image_bytes",
]

#: The in-memory path holds the split and, while it is cut, a copy: stream above this share
#: of the available memory.
MEMORY_SHARE = 0.4
_ERROR = "__cosmobench_error__"  # a worker's error, passed back as data


def choose_data_mode(mode: str, need_bytes: int) -> str:
    """``memory`` or ``stream`` for ``--data-mode mode`` and a split of ``need_bytes``.

    ``auto`` streams when the arrays would take more than 40 % of the memory available
    (:func:`cosmobench.memory.available_bytes`): loading holds them and, while the splits
    are cut, a second copy.
    """
    check_choice("data mode", mode, DATA_MODES)
    if mode != "auto":
        return mode
    free = memory.available_bytes()
    return "stream" if free is not None and need_bytes > MEMORY_SHARE * free else "memory"


# ------------------------------------------------------------------------------ the plan


def _rng(*keys: int) -> np.random.Generator:
    from cosmobench.train.data import derive_seed

    return np.random.default_rng(derive_seed(*keys))


def _window_size(shuffle_buffer: int, batch_size: int) -> int:
    """Galaxies per window: the buffer rounded up to whole batches."""
    return max(1, -(-shuffle_buffer // batch_size)) * batch_size


def epoch_windows(
    positions: np.ndarray,
    chunk_size: int,
    seed: int,
    epoch: int,
    *,
    shuffle_buffer: int,
    batch_size: int,
    rank: int = 0,
    world: int = 1,
) -> list[np.ndarray]:
    """This rank's windows of one epoch: arrays of split indices (``0..len(positions)-1``),
    each already in its shuffled order.

    The chunks holding the split's galaxies are permuted (the same permutation on every
    rank, from ``(seed, epoch)``); the galaxies, chunk after chunk, are cut to a multiple of
    ``world`` and into ``world`` contiguous shards of equal size; rank ``rank`` cuts its
    shard into windows of ``shuffle_buffer`` galaxies rounded up to whole batches and
    permutes each. Only the shard's last batch can be partial, so every rank runs the
    same number of steps.

    Arguments:
        positions: sorted store rows of the split's galaxies, shape ``(N,)``.
        chunk_size: rows per store chunk.
        seed, epoch: what the order depends on.
        shuffle_buffer: galaxies shuffled together.
        batch_size: galaxies per step per rank.
        rank, world: this process and the number of processes.
    """
    positions = np.asarray(positions, dtype=np.int64)
    n = len(positions)
    chunk = positions // chunk_size
    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]]) if n else np.zeros(0, int)
    stops = np.r_[starts[1:], n]
    order = _rng(seed, epoch, 0xC4A7).permutation(len(starts))
    seq = (
        np.concatenate([np.arange(starts[k], stops[k]) for k in order])
        if n
        else np.zeros(0, np.int64)
    )
    per = n // world
    shard = seq[rank * per : (rank + 1) * per]
    w = _window_size(shuffle_buffer, batch_size)
    gen = _rng(seed, epoch, rank, 0x5B0F)
    return [gen.permutation(shard[s : s + w]) for s in range(0, len(shard), w)]


def ordered_windows(n: int, window: int, *, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """Rank ``rank``'s contiguous share of ``range(n)`` (validation: every galaxy once over
    the ranks, none dropped), in windows of ``window`` galaxies, in store order."""
    mine = np.array_split(np.arange(n, dtype=np.int64), world)[rank]
    return [mine[s : s + window] for s in range(0, len(mine), window)]


def _batches_in(
    windows: Sequence[np.ndarray], batch_size: int, drop_last: bool
) -> Iterator[tuple[int, slice]]:
    """``(window number, slice)`` of every batch; as :func:`cosmobench.train.data.iter_batches`,
    a final batch of one galaxy is left out, any other partial one kept unless ``drop_last``."""
    total = sum(len(w) for w in windows)
    for k, win in enumerate(windows):
        for s in range(0, len(win), batch_size):
            m = min(batch_size, len(win) - s)
            if (m < 2 and total > 1) or (drop_last and m < batch_size):
                continue
            yield k, slice(s, s + m)


# ------------------------------------------------------------------------------ reading


def read_rows(ds: Any, name: str, rows: np.ndarray) -> np.ndarray:
    """Images ``name`` of store rows ``rows`` (any order), float32 ``(len(rows), C, S, S)``:
    each chunk touched is read and decoded once, by contiguous slices."""
    rows = np.asarray(rows, dtype=np.int64)
    uniq, inverse = np.unique(rows, return_inverse=True)
    out = np.empty((len(uniq), len(ds.bands), ds.stamp_size, ds.stamp_size), np.float32)
    if len(uniq):
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1  # contiguous runs of rows
        for run_start, run in zip(np.r_[0, breaks], np.split(uniq, breaks), strict=True):
            out[run_start : run_start + len(run)] = ds.images(
                name, slice(int(run[0]), int(run[-1]) + 1)
            )
    return out[inverse]


class _WindowReader(torch.utils.data.Dataset):
    """Reads one window (its store rows, in order) of every streamed image array and
    applies each array's transform: what a loader worker does."""

    def __init__(self, path: str, transforms: dict[str, Callable[[Tensor], Tensor] | None]) -> None:
        self.path, self.transforms = path, transforms
        self._ds: Any = None

    def __len__(self) -> int:  # the sampler decides; never used for indexing
        return 0

    @torch.no_grad()
    def __getitem__(self, rows: np.ndarray) -> dict[str, Any]:
        try:
            if self._ds is None:  # opened in the worker process
                from cosmobench.store import open_dataset

                self._ds = open_dataset(self.path)
            out = {}
            for name, fn in self.transforms.items():
                x = torch.from_numpy(read_rows(self._ds, name, rows))  # (m, C, S, S)
                out[name] = x if fn is None else fn(x)
            return out
        except CosmobenchError as e:  # raised again, one line, in the training process
            return {_ERROR: str(e)}


def _checked(item: Any) -> Any:
    """A loader item, or the worker's :class:`CosmobenchError` raised here."""
    if isinstance(item, dict) and _ERROR in item:
        raise CosmobenchError(item[_ERROR])
    return item


def auto_loader_workers(device: torch.device) -> int:
    """The loader processes ``train --loader-workers -1`` (the default) starts: 0 on a CPU
    run whose torch threads already take every core this process may use, else 1.

    With every core running an OpenMP thread of the step, a loader process preempts one of
    them and the step's barriers wait for it. Measured on 2 cores (2 torch threads,
    ``benchmarks/results/scaling.md``, median of two interleaved rounds), streamed ÷
    in-memory CNN throughput at the paper's batch sizes was 0.93–1.13 (mean 0.99) reading in
    the training process and 0.88–0.93 (mean 0.90) with one loader process.
    """
    if device.type != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return 0 if torch.get_num_threads() >= cores else 1


def _loader(
    dataset: torch.utils.data.Dataset, descriptors: list[Any], workers: int, pin: bool
) -> torch.utils.data.DataLoader:
    """Windows in plan order; ``workers`` processes decode ahead (one window each)."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        sampler=descriptors,
        num_workers=workers,
        pin_memory=pin,
        prefetch_factor=1 if workers else None,
        generator=torch.Generator(),
    )  # its own: the global RNG (BNN noise) stays untouched


class _ChunkMask(torch.utils.data.Dataset):
    """For chunk ``k``: which of its rows hold a NaN or infinite value, per named array
    (shape ``(len(names), rows)``)."""

    def __init__(self, path: str, names: Sequence[str]) -> None:
        self.path, self.names = path, tuple(names)
        self._ds: Any = None

    def __len__(self) -> int:
        return 0

    def __getitem__(self, k: int) -> Any:
        try:
            return self._mask(k)
        except CosmobenchError as e:
            return {_ERROR: str(e)}

    def _mask(self, k: int) -> np.ndarray:
        if self._ds is None:
            from cosmobench.store import open_dataset

            self._ds = open_dataset(self.path)
        ds = self._ds
        sl = slice(k * ds.chunk_size, min(ds.n, (k + 1) * ds.chunk_size))
        m = sl.stop - sl.start
        return np.stack(
            [~np.isfinite(ds.images(name, sl)).reshape(m, -1).all(axis=1) for name in self.names]
        )


def scan_nonfinite(
    path: str, names: Sequence[str], n_chunks: int, workers: int = 0
) -> dict[str, np.ndarray]:
    """Image array name → rows ``(N,)`` of the store holding a NaN or infinite pixel: one
    streamed pass, chunk by chunk, in ``workers`` background processes."""
    loader = _loader(_ChunkMask(str(path), names), list(range(n_chunks)), workers, False)
    parts = [np.asarray(_checked(m), bool) for m in loader]
    bad = np.concatenate(parts, axis=1) if parts else np.zeros((len(names), 0), bool)
    return dict(zip(names, bad, strict=True))


def read_chunks(ds: Any, name: str = "noisy", workers: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, array)`` of every chunk of image array ``name`` in order, like
    ``Dataset.iter_chunks``, decoded ``workers`` chunks ahead in background processes
    (evaluation and the benchmark's ``--data`` read stores through it)."""
    from cosmobench.store import Dataset

    if workers == 0 or not isinstance(ds, Dataset):  # an in-memory stand-in: read it here
        yield from ds.iter_chunks(name)
        return
    n_chunks = -(-ds.n // ds.chunk_size)
    rows = [
        np.arange(k * ds.chunk_size, min(ds.n, (k + 1) * ds.chunk_size)) for k in range(n_chunks)
    ]
    loader = _loader(_WindowReader(str(ds.path), {name: None}), rows, workers, False)
    for r, block in zip(rows, loader, strict=True):
        yield int(r[0]), _checked(block)[name].numpy()


def sample_positions(positions: np.ndarray, chunk_size: int, n: int, seed: int) -> np.ndarray:
    """About ``n`` of the split's store rows, whole chunks drawn at random (seeded): a
    sample to fit input statistics on, read at the cost of ``n / chunk_size`` chunks."""
    positions = np.asarray(positions, dtype=np.int64)
    chunks = np.unique(positions // chunk_size)
    picked: list[np.ndarray] = []
    count = 0
    for k in _rng(seed, 0x5A3B).permutation(chunks):
        if count >= n:
            break
        rows = positions[positions // chunk_size == k]
        picked.append(rows)
        count += len(rows)
    return np.sort(np.concatenate(picked)) if picked else positions[:0]


# ------------------------------------------------------------------------------ the split


@dataclasses.dataclass
class StreamSplit:
    """One split of a training set, streamed from its store.

    Attributes:
        path: the store.
        positions: sorted store rows of the split's galaxies ``(N,)``.
        index: their store indices ``(N,)`` (for the record).
        chunk_size: rows per store chunk.
        x_name: the input image array (``noisy``).
        y: targets ``(N, T)`` in memory, or ``None``.
        y_name: a streamed target image array (the VAE's ``noiseless``), or ``None``.
        transforms: image array → function applied to its windows (in the workers).
        shuffle_buffer: galaxies shuffled together (see the module docstring).
        workers: loader processes decoding ahead.
    """

    path: str
    positions: np.ndarray
    index: np.ndarray
    chunk_size: int
    x_name: str = "noisy"
    y: Tensor | None = None
    y_name: str | None = None
    transforms: dict[str, Any] = dataclasses.field(default_factory=dict)
    shuffle_buffer: int = 4096
    workers: int = 1

    def __post_init__(self) -> None:
        if len(self.index) != len(self.positions):
            raise ValueError(f"{len(self.positions)} positions but {len(self.index)} indices")
        if self.y is not None and len(self.y) != len(self.positions):
            raise ValueError(f"{len(self.positions)} positions but {len(self.y)} targets")

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        return (
            f"StreamSplit({self.path!r}, n={len(self)}, window={self.shuffle_buffer}, "
            f"workers={self.workers})"
        )

    # the interface the training loop uses (as TensorSplit)
    def steps(self, batch_size: int, world: int, drop_last: bool) -> int:
        """Steps of one epoch on each rank (the same every epoch)."""
        wins = epoch_windows(
            self.positions,
            self.chunk_size,
            0,
            0,
            world=world,
            shuffle_buffer=self.shuffle_buffer,
            batch_size=batch_size,
        )
        return sum(1 for _ in _batches_in(wins, batch_size, drop_last))

    def epoch_batches(
        self,
        epoch: int,
        seed: int,
        batch_size: int,
        device: torch.device,
        *,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """This rank's shuffled batches ``(x, y)`` of one epoch, on ``device``."""
        wins = epoch_windows(
            self.positions,
            self.chunk_size,
            seed,
            epoch,
            rank=rank,
            world=world,
            shuffle_buffer=self.shuffle_buffer,
            batch_size=batch_size,
        )
        yield from self._stream(wins, batch_size, device, drop_last)

    def ordered_batches(
        self, batch_size: int, device: torch.device, *, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """This rank's share of the split in store order (validation), on ``device``."""
        w = _window_size(self.shuffle_buffer, batch_size)
        wins = ordered_windows(len(self), w, rank=rank, world=world)
        for (x, y), _win in self._windows(wins, device):
            for s in range(0, len(x), batch_size):
                yield x[s : s + batch_size], None if y is None else y[s : s + batch_size]

    def batch(self, idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """Galaxies ``idx`` of the split, read now (a few, for figures)."""
        idx = np.asarray(torch.as_tensor(idx).cpu(), dtype=np.int64)
        block = _checked(self._reader()[self.positions[idx]])
        return self._pair(block, idx, device)

    # reading
    def _reader(self) -> _WindowReader:
        names = {self.x_name: self.transforms.get(self.x_name)}
        if self.y_name is not None:
            names[self.y_name] = self.transforms.get(self.y_name)
        return _WindowReader(self.path, names)

    def _pair(
        self, block: dict[str, Tensor], idx: np.ndarray, device: torch.device
    ) -> tuple[Tensor, Tensor | None]:
        x = block[self.x_name]
        if self.y_name is not None:
            y = block[self.y_name]
        else:
            y = None if self.y is None else self.y[torch.from_numpy(idx)]
        nb = device.type == "cuda"
        return x.to(device, non_blocking=nb), None if y is None else y.to(device, non_blocking=nb)

    def _windows(
        self, wins: list[np.ndarray], device: torch.device
    ) -> Iterator[tuple[tuple[Tensor, Tensor | None], np.ndarray]]:
        rows = [self.positions[w] for w in wins]
        loader = _loader(self._reader(), rows, self.workers, device.type == "cuda")
        for win, block in zip(wins, loader, strict=True):
            yield self._pair(_checked(block), win, device), win

    def _stream(
        self, wins: list[np.ndarray], batch_size: int, device: torch.device, drop_last: bool
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        plan: dict[int, list[slice]] = {}
        for k, sl in _batches_in(wins, batch_size, drop_last):
            plan.setdefault(k, []).append(sl)
        for k, ((x, y), _win) in enumerate(self._windows(wins, device)):
            for sl in plan.get(k, []):
                yield x[sl], None if y is None else y[sl]


def image_bytes(ds: Any, names: Sequence[str], rows: int | None = None) -> int:
    """Bytes of ``names`` image arrays of ``rows`` galaxies (all by default) in memory."""
    n = ds.n if rows is None else rows
    return len(names) * n * len(ds.bands) * ds.stamp_size**2 * 4
