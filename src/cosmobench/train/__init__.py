"""Training: one loop for every model of Arcelin (2021), and the run folders it writes.

- :class:`TrainConfig` — epochs, batch size, Adam learning rate (paper: 1e-3), seed,
  validation fraction, precision, device, early stopping.
- :func:`make_optimizer`, :func:`make_train_step` — the exact step training runs and the
  benchmark times.
- :func:`make_task` + :func:`fit` — train a ``cnn``, ``bnn``, ``vae`` or ``flow`` into a run
  folder (progress bar, ``metrics.jsonl``, atomic checkpoints, resume, torchrun/DDP).
- :func:`load_run` — a trained model and what its run recorded; :func:`vae_fingerprint`.

Example:
    >>> from cosmobench.train import TrainConfig, fit, make_task
    >>> cfg = TrainConfig(epochs=20)
    >>> fit(make_task("cnn"), "data/train.zarr", cfg, "runs/cnn")  # doctest: +SKIP
"""

import importlib
from typing import Any

# Where each public name lives; loaded on first use, so that reading the configs (the
# command line does, to build its options) does not import torch.
_HOME = {
    "TrainConfig": "config",
    "fit": "loop",
    "load_run": "runs",
    "vae_fingerprint": "runs",
    "make_optimizer": "step",
    "make_train_step": "step",
    "model_loss": "step",
    "make_task": "tasks",
}

__all__ = [
    "TrainConfig",
    "fit",
    "load_run",
    "make_optimizer",
    "make_task",
    "make_train_step",
    "model_loss",
    "vae_fingerprint",
]


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"cosmobench.train.{_HOME[name]}"), name)
    raise AttributeError(f"module 'cosmobench.train' has no attribute {name!r}")
