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

from cosmobench.train.config import TrainConfig
from cosmobench.train.loop import fit
from cosmobench.train.runs import load_run, vae_fingerprint
from cosmobench.train.step import make_optimizer, make_train_step, model_loss
from cosmobench.train.tasks import make_task

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
