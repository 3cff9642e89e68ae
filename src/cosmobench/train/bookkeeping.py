"""The training loop's bookkeeping: what it records and restores besides the weights
(RNG states, the id of the data split), what it shows (the epoch progress bar) and what it
keeps quiet (torch's notices while compiling)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cosmobench.train.data import TensorSplit

__all__ = ["EpochBar", "split_id", "get_rng", "set_rng", "quiet_compiler"]


@contextlib.contextmanager
def quiet_compiler(active: bool) -> Iterator[None]:
    """Silence torch's own notices while it compiles (deprecations inside inductor, the
    optimiser's profiler marks being skipped): they say nothing about the user's run."""
    if not active:
        yield
        return
    logger = logging.getLogger("torch._dynamo.variables.ctx_manager")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=r"torch\.")
            yield
    finally:
        logger.setLevel(level)


def split_id(train: TensorSplit, val: TensorSplit) -> str:
    """A short hash of which galaxies are in each split (resuming on other data fails)."""
    h = hashlib.sha256()
    for s in (train, val):
        h.update(np.ascontiguousarray(s.index, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def get_rng() -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng(rng: dict[str, Any] | None) -> None:
    if not rng:
        return
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


class EpochBar:
    """A rich progress bar over an epoch's steps showing the running mean loss; the loss
    is read back from the device at most twice a second (each read is a host sync)."""

    def __init__(self, enabled: bool, label: str, total: int, console: Any) -> None:
        self.enabled = enabled and console.is_terminal
        self.label, self.total, self.console = label, total, console
        self.last = 0.0

    def __enter__(self) -> EpochBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                                TimeElapsedColumn(), TimeRemainingColumn(),
                                console=self.console, transient=True)
            self.bar.__enter__()
            self.tid = self.bar.add_task(self.label, total=self.total, loss="…")
        return self

    def advance(self, total: Tensor, count: Tensor) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last > 0.5:
            self.last = now
            self.bar.update(self.tid, advance=1, loss=f"{float(total / count):.4f}")
        else:
            self.bar.update(self.tid, advance=1)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
