"""The training configuration, stored in every checkpoint and run: how any network is
trained (:class:`TrainConfig`), and the options of one task (:class:`ShapeOptions` for the
shape networks, :class:`FlowOptions` for the flow; the VAE has none).

Defaults follow Arcelin (2021, arXiv:2106.02465): Adam with learning rate 1e-3 for every
network. The rest are choices a science run needs and the paper leaves open (validation
split, early stopping, precision); each default says why.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cosmobench.config import Config
from cosmobench.devices import PRECISIONS
from cosmobench.errors import CosmobenchError, check_choice, check_positive

__all__ = [
    "TrainConfig",
    "TaskOptions",
    "ShapeOptions",
    "FlowOptions",
    "TASK_OPTIONS",
    "PRECISIONS",
    "SCALINGS",
    "LR_SCHEDULES",
    "RESUMABLE_CHANGES",
    "STEP_MODES",
    "DATA_MODES",
    "split_legacy",
]

#: ``data_mode`` choices (see :mod:`cosmobench.train.stream`).
DATA_MODES = ("auto", "memory", "stream")

#: Input scalings for the shape networks (see :mod:`cosmobench.train.scaling`).
SCALINGS = ("arcsinh", "none")
#: Learning-rate schedules: the paper's constant rate, or cosine annealing to zero.
LR_SCHEDULES = ("constant", "cosine")
#: How the step runs (``cosmobench.bench.modes.mode_step``, what the benchmark times).
STEP_MODES = ("eager", "compile", "cudagraph", "compile+cudagraph")
#: Fields that may change when a run is resumed; any other change is refused.
RESUMABLE_CHANGES = ("epochs", "patience", "device", "time_limit", "loader_workers",
                     "threads")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """How a network is trained (the model's own settings live in its model config).

    Arguments:
        data: path of the training store (``DATA.zarr``), as given.
        epochs: passes over the training split.
        batch_size: images per optimisation step *per process*; under ``torchrun`` with
            W processes each step sees ``W * batch_size`` images.
        lr: Adam learning rate (the paper's 1e-3).
        seed: seeds the weights, the shuffle of every epoch and the BNN weight noise.
        val_fraction: share of galaxies held out for validation, chosen by galaxy index
            (the same galaxies for every model trained on a store).
        precision: ``fp32`` or ``bf16`` (autocast of the forward pass and loss).
        device: torch device; ``cuda`` under ``torchrun`` means ``cuda:LOCAL_RANK``.
        patience: early stopping: stop after this many epochs without a better validation
            loss (0 = train every epoch). The best-validation weights are kept either way.
        lr_decay: multiply the learning rate by this factor whenever the validation loss
            has not improved for ``lr_patience`` epochs (reduce-on-plateau; 1 = constant, as
            the paper). Adam at a constant 1e-3 ends with a validation loss that jumps from
            epoch to epoch; a smaller step lets it settle.
        lr_patience: epochs without a better validation loss before each decay.
        lr_schedule: ``constant`` (the paper; with ``lr_decay`` < 1, reduce-on-plateau) or
            ``cosine``: the rate falls from ``lr`` to zero along half a cosine over all the
            steps of ``epochs`` epochs, updated every step (Loshchilov & Hutter 2017,
            arXiv:1608.03983, without restarts). A network trained by likelihood then ends
            at a settled point instead of wherever the last constant-rate step left it,
            which is what its predicted covariances need to be calibrated. The schedule is
            fixed by ``epochs``: a cosine run cannot be resumed with other epochs, and a
            ``time_limit`` that stops it early leaves the rate partly annealed.
        drop_nonfinite: leave out galaxies with NaN/inf pixels or labels (they are counted
            and reported) instead of refusing the data set.
        compile: ``torch.compile`` the training step and the validation forward pass (the
            same computation, fused: several times faster on CPUs, where the element-wise
            PReLU dominates eager time); the last partial batch of an epoch is then left
            out so every step has the same shape (a new shape would recompile).
        mode: how the step runs, exactly as ``cosmobench bench`` times it
            (:func:`cosmobench.bench.modes.mode_step`): ``eager``, ``compile`` (same as
            ``compile=True``), ``cudagraph`` (the whole step -- forward, backward, Adam --
            replayed from a CUDA graph; CUDA only, one process) or ``compile+cudagraph``.
            Every mode but eager drops each epoch's last partial batch (one shape).
        time_limit: minutes of training this invocation may spend (0 = no limit): no epoch
            starts that would end past it, judging by the epochs timed so far. The run stays
            resumable; ``model.pt`` holds the best weights so far.
        data_mode: ``memory`` (the split in one tensor, the paper's Keras ``fit``; the
            fastest), ``stream`` (read window by window while training: a store larger
            than memory; :mod:`cosmobench.train.stream`) or ``auto`` (stream when the
            images would take more than 40 % of the available memory). A resumed run
            keeps the mode it started with.
        shuffle_buffer: streaming: galaxies shuffled together (a window); the chunk order
            is shuffled too. Larger is closer to a full shuffle and costs
            ``(loader_workers + 2) x shuffle_buffer x 98 KB`` of memory per image array.
        loader_workers: streaming: background processes reading and decoding windows
            ahead of training (0 = read in the training process); -1 (the default) picks
            one: 0 on a CPU run whose torch threads take every core (a loader process
            would preempt an OpenMP thread and stall the step's barriers), else 1
            (:func:`cosmobench.train.stream.auto_loader_workers`).
        threads: torch's threads for a CPU run: 0 (the default) keeps torch's own count
            (one per core), N sets N, and -1 chooses: a few steps of this run's own eager
            step (a copy of its model, on its first batch) are timed at one thread and at
            every core this process may use, interleaved
            (:func:`cosmobench.train.probe.time_threads`), and the run trains with the
            faster. At the paper's batches of 2–14 one thread can beat two when another job
            shares the cores, since the threads of an oversubscribed pool wait on each
            other. The count chosen is recorded (``config.json``, with the rates) and kept
            on ``--resume``; a different count changes the last bits of the results.
    """

    data: str = ""
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.1
    precision: str = "fp32"
    device: str = "cpu"
    patience: int = 0
    lr_decay: float = 1.0
    lr_patience: int = 2
    lr_schedule: str = "constant"
    drop_nonfinite: bool = False
    compile: bool = False
    mode: str = "eager"
    time_limit: float = 0.0
    data_mode: str = "auto"
    shuffle_buffer: int = 4096
    loader_workers: int = -1
    threads: int = 0

    def __post_init__(self) -> None:
        check_positive("epochs", self.epochs)
        check_positive("batch size", self.batch_size)
        check_positive("learning rate", self.lr)
        check_positive("patience", self.patience, strict=False)
        check_positive("time limit", self.time_limit, strict=False)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("step mode", self.mode, STEP_MODES)
        if self.compile and self.mode == "eager":  # --compile is --mode compile
            object.__setattr__(self, "mode", "compile")
        object.__setattr__(self, "compile", "compile" in self.mode)
        check_choice("data mode", self.data_mode, DATA_MODES)
        check_positive("shuffle buffer", self.shuffle_buffer)
        if self.loader_workers < -1 or int(self.loader_workers) != self.loader_workers:
            raise CosmobenchError(
                f"loader workers must be an integer >= 0, or -1 to choose; got "
                f"{self.loader_workers!r}"
            )
        if self.threads < -1 or int(self.threads) != self.threads:
            raise CosmobenchError(
                f"threads must be an integer >= 1, 0 for torch's own count or -1 to choose; "
                f"got {self.threads!r}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise CosmobenchError(
                f"validation fraction must be in [0, 1); got {self.val_fraction!r}"
            )
        if not 0.0 < self.lr_decay <= 1.0:
            raise CosmobenchError(f"learning-rate decay must be in (0, 1]; got {self.lr_decay!r}")
        check_positive("lr patience", self.lr_patience)
        check_choice("learning-rate schedule", self.lr_schedule, LR_SCHEDULES)
        if self.lr_schedule == "cosine" and self.lr_decay < 1:
            raise CosmobenchError("choose one learning-rate schedule: cosine annealing or "
                                  "a decay on plateaus (--lr-decay), not both")
        if (self.patience or self.lr_decay < 1) and self.val_fraction == 0:
            raise CosmobenchError("early stopping and learning-rate decay need a validation "
                                  "split (val fraction > 0)")
        if int(self.seed) != self.seed or self.seed < 0:
            raise CosmobenchError(f"seed must be an integer >= 0; got {self.seed!r}")


@dataclasses.dataclass(frozen=True)
class TaskOptions(Config):
    """Options of one kind of task; the VAE's task has none."""


@dataclasses.dataclass(frozen=True)
class ShapeOptions(TaskOptions):
    """Options of the shape networks (``cnn``, ``bnn``).

    Arguments:
        augment: show each training galaxy under a random symmetry of its square stamp
            (transpose, flips), its ellipticity transformed to match
            (:mod:`cosmobench.train.augment`): eight times the distinct training images,
            exact for the round PSFs and white noise the simulator draws. Off by default,
            as the paper trained without it.
        input_scaling: ``arcsinh`` (per-band arcsinh at the noise level, fitted on the
            training split, stored with the model) or ``none`` (raw counts straight into the
            BatchNorm, as the paper did).
        init_from: a finished ``cnn`` or ``bnn`` run (same targets and architecture) whose
            weights start this one instead of the random initialisation; a BNN's posterior
            means start at a CNN's weights, as in MOPED (Krishnan, Subedar & Tickoo 2020,
            arXiv:1906.05323), and the input scaling is the source run's.
    """

    augment: bool = False
    input_scaling: str = "arcsinh"
    init_from: str = ""

    def __post_init__(self) -> None:
        check_choice("input scaling", self.input_scaling, SCALINGS)


@dataclasses.dataclass(frozen=True)
class FlowOptions(TaskOptions):
    """Options of the latent flow.

    Arguments:
        vae_run: the run folder of the VAE whose latent space the flow models.
    """

    vae_run: str = ""


#: The option class of each task kind.
TASK_OPTIONS: dict[str, type[TaskOptions]] = {
    "cnn": ShapeOptions, "bnn": ShapeOptions, "vae": TaskOptions, "flow": FlowOptions,
}


def split_legacy(kind: str, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(train_config, task_options)`` dicts of a stored run record (``config.json`` or a
    checkpoint). Runs written before task options had their own class kept them among the
    training fields (``augment``, ``input_scaling``, ``init_from``, ``vae_run``); they are
    moved to the task's options, and other tasks' leftovers are dropped.

    Example:
        >>> split_legacy("flow", {"train_config": {"epochs": 2, "vae_run": "v", "augment": False}})
        ({'epochs': 2}, {'vae_run': 'v'})
    """
    train = dict(record.get("train_config") or {})
    legacy = {k: train.pop(k) for k in _LEGACY if k in train}
    own = {f.name for f in dataclasses.fields(TASK_OPTIONS[kind])}
    options = record.get("task_options")
    if options is None:
        options = {k: v for k, v in legacy.items() if k in own}
    return train, dict(options)


_LEGACY = ("augment", "input_scaling", "init_from", "vae_run")
