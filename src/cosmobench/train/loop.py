"""The one training loop: epochs, progress, metrics, atomic checkpoints, resume, DDP.

:func:`fit` trains any :class:`~cosmobench.train.tasks.Task` with the step of
:func:`~cosmobench.train.step.make_train_step`. It is deterministic by construction: the
weights are initialised from ``seed``; epoch ``e`` shuffles with a generator seeded by
``(seed, e)`` and reseeds the global RNG (the BNN's weight noise) from
``(seed, e, rank)``; so a run killed at any point and resumed from its last checkpoint ends
bit-identical (on CPU) to one never interrupted. Every epoch ends with one atomic
``checkpoint.pt`` and a rewritten ``metrics.jsonl``; ``model.pt`` (best-validation weights)
is written when training ends. Under ``torchrun`` each rank trains on its shard of every
epoch and rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cosmobench.errors import CosmobenchError
from cosmobench.files import atomic_write, load_checkpoint, save_checkpoint, write_json
from cosmobench.train.bookkeeping import EpochBar, get_rng, quiet_compiler, set_rng, split_id
from cosmobench.train.config import RESUMABLE_CHANGES, TrainConfig, split_legacy
from cosmobench.train.data import Split, check_batch_size, derive_seed
from cosmobench.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast,
    init_distributed,
    shutdown,
    wrap_ddp,
)
from cosmobench.train.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RUN_FORMAT,
    RUN_VERSION,
    run_kind,
)
from cosmobench.train.step import (
    LossModule,
    autocast,
    compile_options,
    make_optimizer,
    make_train_step,
    model_loss,
)
from cosmobench.train.stream import auto_loader_workers
from cosmobench.train.tasks import Task

__all__ = ["fit", "TrainState", "Progress"]

_INIT, _EPOCH, _VAL, _VAL0 = 0xC0FFEE, 0xB17, 0x7A1, 0x7A0  # stream tags of derive_seed


def fit(
    task: Task,
    data: str | Path | None,
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Train ``task``'s model on ``data`` and write the run folder ``out``.

    Arguments:
        task: what is trained (:func:`cosmobench.train.make_task`).
        data: the training store (overrides ``cfg.data`` when given).
        cfg: the training configuration.
        out: the run folder; it must not exist (or be empty) unless ``resume``.
        resume: continue the run in ``out`` from its last checkpoint (training options
            other than ``epochs``, ``patience``, ``device`` and ``time_limit`` must be
            unchanged).
        progress: show a progress bar with the running loss.

    Returns:
        The run folder, holding ``model.pt`` (on rank 0).
    """
    if data is not None:
        cfg = cfg.replace(data=str(data))
    if not cfg.data:
        raise CosmobenchError("no training data given (--data DATA)")
    info = init_distributed(cfg.device)
    if cfg.loader_workers < 0:  # chosen here, and recorded, for this machine
        cfg = cfg.replace(loader_workers=auto_loader_workers(info.device))
    threads = torch.get_num_threads()  # the run may set its own; restored after it
    try:
        return _Trainer(task, cfg, Path(out), info, progress=progress and info.is_main
                        ).run(resume)
    finally:
        torch.set_num_threads(threads)
        shutdown(info)


@dataclasses.dataclass
class Progress:
    """How far a run is: what ``checkpoint.pt`` keeps besides weights and optimiser."""

    epoch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    best_val: float | None = None
    best_epoch: int = 0
    best_state_dict: dict[str, Tensor] | None = None
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (checkpoint keys)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Progress:
        """The progress stored in ``ckpt``."""
        return cls(**{f.name: ckpt[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass
class TrainState:
    """Everything an epoch works on: model, optimiser, schedule, step, the splits (in
    memory or streamed), the run's record and its :class:`Progress`."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    step: Any
    train: Split
    val: Split
    record: dict[str, Any]
    progress: Progress


class _Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, out: Path, info: DistInfo, *,
                 progress: bool) -> None:
        self.task, self.cfg, self.out, self.info = task, cfg, out, info
        self.progress = progress
        self.threads_probe: dict[str, Any] | None = None  # set by _set_threads when measured
        from rich.console import Console

        self.console = Console(stderr=True, quiet=not info.is_main, soft_wrap=True)

    # ----------------------------------------------------------------- the run folder
    def _existing(self, resume: bool) -> dict[str, Any] | None:
        """Check the run folder before anything is loaded or written; the checkpoint to
        resume from, or ``None`` for a new run."""
        out, kind = self.out, self.task.kind
        if out.exists() and not out.is_dir():
            raise CosmobenchError(f"--out {out} exists and is not a folder")
        if out.is_dir() and any(out.iterdir()):
            other = run_kind(out)
            if other is None:
                raise CosmobenchError(f"--out {out} exists, is not empty and holds no "
                                      "cosmobench run; choose another --out")
            if other != kind:
                raise CosmobenchError(f"--out {out} holds a {other} run, not a {kind} run; "
                                      "choose another --out")
            started = (out / CHECKPOINT_FILE).exists() or (out / MODEL_FILE).exists()
            if not started:  # config.json only: it stopped before its first epoch ended
                return None
            if not resume:
                raise CosmobenchError(f"--out {out} already holds a {kind} run; pass --resume "
                                      "to continue it or choose another --out")
        elif resume:
            raise CosmobenchError(f"nothing to resume: {out} holds no run; drop --resume to "
                                  "start one")
        if not resume:
            return None
        ckpt = load_checkpoint(out / CHECKPOINT_FILE)
        if ckpt.get("format") != RUN_FORMAT or ckpt.get("kind") != kind:
            raise CosmobenchError(f"{out / CHECKPOINT_FILE} is not a {kind} checkpoint")
        self._check_same(ckpt)
        return ckpt

    def _check_same(self, ckpt: dict[str, Any]) -> None:
        old, old_options = split_legacy(self.task.kind, ckpt)
        # runs that predate the step mode: their --compile flag says which it was
        old["mode"] = TrainConfig(
            mode=old.get("mode", "eager"), compile=old.get("compile", False)
        ).mode
        new = self.cfg.to_dict()
        changed = [k for k in new if k not in RESUMABLE_CHANGES and old.get(k) != new[k]]
        if self.task.options.replace(**old_options) != self.task.options:
            changed.append("task options")
        if new.get("lr_schedule") == "cosine" and old.get("epochs") != new["epochs"]:
            changed.append("epochs (they fix the cosine schedule)")
        if ckpt["model_config"] != self.task.model_config.to_dict():
            changed.append("model configuration")
        if changed:
            raise CosmobenchError(
                f"cannot resume {self.out} with other settings ({', '.join(changed)} "
                f"differ from the run's); only {', '.join(RESUMABLE_CHANGES)} may change"
            )

    # ----------------------------------------------------------------- main
    def run(self, resume: bool) -> Path:
        cfg, info, task = self.cfg, self.info, self.task
        ckpt = self._existing(resume)
        train, val = task.prepare(cfg, info, None if ckpt is None else ckpt["task_state"])
        n_train = len(train)
        check_batch_size(cfg.batch_size, n_train, info.world)
        data_id = split_id(train, val)
        if ckpt is not None and ckpt["data_id"] != data_id:
            raise CosmobenchError(f"the data set {cfg.data} differs from the one {self.out} "
                                  "was trained on; start a new run with another --out")
        cfg = self._set_threads(train)
        torch.manual_seed(derive_seed(cfg.seed, _INIT))
        model = task.build_model().to(info.device)
        graphed = "cudagraph" in cfg.mode
        if graphed and (info.device.type != "cuda" or info.distributed):
            raise CosmobenchError("--mode cudagraph needs one CUDA device (no torchrun); "
                                  "use --mode compile or eager here")
        opt = make_optimizer(model, cfg.lr, capturable=graphed,
                             tensor_lr=cfg.lr_schedule != "constant" or cfg.lr_decay < 1)
        sched = self._scheduler(opt, train)
        progress = Progress()
        if ckpt is None:
            task.initialise(model)
        else:
            model.load_state_dict(ckpt["state_dict"])
            opt.load_state_dict(ckpt["optimizer"])
            if sched is not None:
                sched.load_state_dict(ckpt["scheduler"])
            set_rng(ckpt.get("rng"))
            progress = Progress.from_checkpoint(ckpt)
        ddp = wrap_ddp(LossModule(model, n_train), info)
        step = make_train_step(ddp if info.distributed else model, opt, n_train=n_train,
                               precision=cfg.precision)
        self.val_loss = _val_loss_fn(model, n_train, cfg.precision, info.device.type)
        if graphed:  # a graph reads the rate where it lies: on the device
            for group in opt.param_groups:
                if isinstance(group["lr"], Tensor):
                    group["lr"] = group["lr"].to(info.device)
        if cfg.mode != "eager":  # the step `cosmobench bench` times in this mode
            from cosmobench.bench.modes import mode_step

            step = mode_step(step, cfg.mode, opt)
        if cfg.compile:
            self.val_loss_compiled = torch.compile(self.val_loss, dynamic=False,
                                                   options=compile_options(model) or None)
        st = TrainState(model, opt, sched, step, train, val,
                        self._record(n_train, len(val), data_id), progress)
        self._announce(st, ckpt)
        with quiet_compiler(cfg.compile):
            if ckpt is None and len(val):  # the untrained network's validation loss: epoch 0
                v0 = self._validate(st, 0, _VAL0)
                progress.history.append({"epoch": 0, "train_loss": None, "val_loss": v0,
                                         "best": False, **_elbo_terms(model, n_train, v0)})
            if info.is_main:
                if ckpt is None:
                    write_json(self.out / CONFIG_FILE, st.record)
                self._write_metrics(progress)
            t_start, spent = time.monotonic(), []
            for epoch in range(progress.epoch, cfg.epochs):
                if progress.stopped or self._out_of_time(progress, t_start, spent):
                    break
                t0 = time.monotonic()
                self._epoch(st, epoch)
                spent.append(time.monotonic() - t0)
        barrier()
        if info.is_main:
            self._finish(st)
        barrier()
        return self.out

    def _set_threads(self, train: Split) -> TrainConfig:
        """Set torch's threads for a CPU run (``cfg.threads``); -1: time this run's eager
        step at one thread and at every usable core and take the faster, recorded in the
        config. The timing trains a copy of the model and leaves the RNG as it found it,
        so the run is the same as one given the chosen count."""
        cfg, info = self.cfg, self.info
        if cfg.threads == 0 or info.device.type != "cpu":
            return cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
            return cfg
        if info.distributed:
            raise CosmobenchError("--threads -1 times one process; under torchrun give each "
                                  "process a count (--threads N)")
        from cosmobench.train.probe import choose_threads

        rng = get_rng()
        model = self.task.build_model().to(info.device)
        step = make_train_step(model, make_optimizer(model, cfg.lr), n_train=len(train),
                               precision=cfg.precision)
        x, y = train.batch(torch.arange(min(cfg.batch_size, len(train))), info.device)
        chosen = choose_threads(lambda: step(x, y))
        set_rng(rng)
        best, rates = chosen["threads"], chosen["steps_per_s"]
        self.threads_probe = {"chosen": best, "batch": len(x), "precision": cfg.precision,
                              "steps_per_s": rates}
        rate_text = ", ".join(f"{k} thread{'s' * (k != '1')} {v:.1f}" for k, v in rates.items())
        self.console.print(f"threads: {best} (eager steps/s at batch {len(x)}: {rate_text})",
                           highlight=False)
        self.cfg = cfg.replace(threads=best)
        return self.cfg

    def _scheduler(self, opt: torch.optim.Optimizer, train: Split) -> Any:
        """The per-step learning-rate schedule (``None`` for a constant or plateau rate)."""
        if self.cfg.lr_schedule != "cosine":
            return None
        per_epoch = train.steps(self.cfg.batch_size, self.info.world, self.cfg.mode != "eager")
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.cfg.epochs * per_epoch,
                                                          eta_min=0.0)

    def _out_of_time(self, progress: Progress, t_start: float, spent: list[float]) -> bool:
        """Whether another epoch would end past ``time_limit`` (same decision on all ranks:
        rank 0's clock is broadcast)."""
        limit = self.cfg.time_limit * 60.0
        if not limit or not spent:
            return False
        late = time.monotonic() - t_start + max(spent[-3:]) > limit
        flag = torch.tensor(float(late), device=self.info.device)
        broadcast(flag)
        if bool(flag):
            self.console.print(f"time limit of {self.cfg.time_limit:g} min reached after epoch "
                               f"{progress.epoch}; resume with --resume to go on",
                               highlight=False)
        return bool(flag)

    def _epoch(self, st: TrainState, epoch: int) -> None:
        cfg, info, p = self.cfg, self.info, st.progress
        model, opt, n_train = st.model, st.opt, len(st.train)
        torch.manual_seed(derive_seed(cfg.seed, epoch, info.rank, _EPOCH))
        steps = st.train.steps(cfg.batch_size, info.world, cfg.mode != "eager")
        batches = st.train.epoch_batches(epoch, cfg.seed, cfg.batch_size, info.device,
                                         rank=info.rank, world=info.world,
                                         drop_last=cfg.mode != "eager")
        total = torch.zeros((), dtype=torch.float64, device=info.device)
        count = torch.zeros((), dtype=torch.float64, device=info.device)
        model.train()
        lr = float(opt.param_groups[0]["lr"])  # at the start of this epoch
        t0 = time.perf_counter()
        with EpochBar(self.progress, f"epoch {epoch + 1}/{cfg.epochs}", steps,
                      self.console) as bar:
            for xb, yb in batches:
                x, y = self.task.augment(xb, yb)
                loss = st.step(x, y)  # (), on the device: no host sync here
                if st.sched is not None:
                    st.sched.step()
                total += loss.double() * len(x)
                count += len(x)
                bar.advance(total, count)
        all_reduce_sum(total)
        all_reduce_sum(count)
        train_loss = float(total / count)
        seconds = time.perf_counter() - t0
        val_loss = self._validate(st, epoch)
        better = val_loss is not None and (p.best_val is None or val_loss < p.best_val)
        if val_loss is None or better:
            p.best_val, p.best_epoch = val_loss, epoch + 1
            p.best_state_dict = {k: v.detach().to("cpu", copy=True)
                                 for k, v in model.state_dict().items()}
        since = epoch + 1 - p.best_epoch  # epochs without a better validation loss
        if cfg.patience and since >= cfg.patience:
            p.stopped = True
        if cfg.lr_decay < 1 and since and since % cfg.lr_patience == 0:
            for group in opt.param_groups:  # in place: a compiled step reads the tensor
                group["lr"].mul_(cfg.lr_decay)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
               "best": bool(val_loss is None or better), "images": int(count),
               "seconds": round(seconds, 3), "images_per_s": round(int(count) / seconds, 2),
               "lr": lr}
        row.update(_elbo_terms(model, n_train, val_loss))
        p.history.append(row)
        p.epoch = epoch + 1
        if info.is_main:
            self._checkpoint(st)
            self._write_metrics(p)
        val_txt = "" if val_loss is None else f"  val {val_loss:.4f}"
        stop_txt = (f"  (no better validation for {cfg.patience} epochs: stopping)"
                    if p.stopped else "")
        self.console.print(f"epoch {epoch + 1}/{cfg.epochs}  train {train_loss:.4f}{val_txt}"
                           f"  {seconds:.1f} s{'  *best*' if better else ''}{stop_txt}",
                           highlight=False)

    @torch.no_grad()
    def _validate(self, st: TrainState, epoch: int, tag: int = _VAL) -> float | None:
        """Mean validation loss (the same loss as training, eval mode), over all ranks."""
        cfg, info, model = self.cfg, self.info, st.model
        if len(st.val) == 0:
            return None
        torch.manual_seed(derive_seed(cfg.seed, epoch, info.rank, tag))
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=info.device)
        count = torch.zeros((), dtype=torch.float64, device=info.device)
        for x, y in st.val.ordered_batches(cfg.batch_size, info.device, rank=info.rank,
                                           world=info.world):
            full = cfg.compile and len(x) == cfg.batch_size  # one shape: one compilation
            loss = (self.val_loss_compiled if full else self.val_loss)(x, y)
            total += loss.double() * len(x)
            count += len(x)
        model.train()
        all_reduce_sum(total)
        all_reduce_sum(count)
        return float(total / count)

    # ----------------------------------------------------------------- writing
    def _record(self, n_train: int, n_val: int, data_id: str) -> dict[str, Any]:
        from cosmobench import __version__

        return {
            "format": RUN_FORMAT, "version": RUN_VERSION, "kind": self.task.kind,
            "train_config": self.cfg.to_dict(),
            "task_options": self.task.options.to_dict(),
            "model_config": self.task.model_config.to_dict(),
            "data": {"path": str(Path(self.cfg.data).resolve()), "n_train": n_train,
                     "n_val": n_val, "id": data_id, **self.task.report},
            "world_size": self.info.world,
            "threads": {"count": torch.get_num_threads(), "probe": self.threads_probe},
            "versions": {"cosmobench": __version__, "torch": torch.__version__},
            "command": " ".join(sys.argv),
        }

    def _checkpoint(self, st: TrainState) -> None:
        model, opt, sched = st.model, st.opt, st.sched
        state = st.progress.to_dict()
        state.update({
            "format": RUN_FORMAT, "version": RUN_VERSION, "kind": self.task.kind,
            "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": None if sched is None else sched.state_dict(),
            "rng": get_rng(), "train_config": self.cfg.to_dict(),
            "task_options": self.task.options.to_dict(),
            "model_config": self.task.model_config.to_dict(),
            "task_state": self.task.state(), "data_id": st.record["data"]["id"],
        })
        save_checkpoint(self.out / CHECKPOINT_FILE, state)

    def _write_metrics(self, progress: Progress) -> None:
        text = "".join(json.dumps(r) + "\n" for r in progress.history).encode()
        atomic_write(self.out / METRICS_FILE, lambda f: f.write(text))

    def _finish(self, state: TrainState) -> None:
        from cosmobench.train.figures import loss_curve

        st, model, record = state.progress, state.model, state.record
        weights = st.best_state_dict or model.state_dict()
        final = {
            "format": RUN_FORMAT, "version": RUN_VERSION, "kind": self.task.kind,
            "model_config": self.task.model_config.to_dict(), "state_dict": weights,
            "train_config": self.cfg.to_dict(), "epoch": st.best_epoch,
            "epochs_trained": st.epoch, "val_loss": st.best_val,
            "data": record["data"], **self.task.state(),
        }
        save_checkpoint(self.out / MODEL_FILE, final)
        if st.history:
            loss_curve(st.history, self.out / "loss.png", f"{self.task.kind} training")
        # figures of the kept (best) weights
        model.load_state_dict(weights)
        self.task.finish(model, self.out, state.val)
        which = "best validation" if st.best_val is not None else "last"
        self.console.print(f"{self.task.kind} model ({which} weights, epoch "
                           f"{st.best_epoch}) written to {self.out / MODEL_FILE}",
                           highlight=False)

    def _announce(self, st: TrainState, ckpt: dict | None) -> None:
        cfg, info = self.cfg, self.info
        n_train, n_val = len(st.train), len(st.val)
        procs = f" x {info.world} processes" if info.distributed else ""
        start = f", resuming after epoch {st.progress.epoch}" if ckpt is not None else ""
        streamed = (f", streamed (window {cfg.shuffle_buffer}, {cfg.loader_workers} loader "
                    "workers)" if self.task.report.get("data_mode") == "stream" else "")
        if self.task.report.get("dropped_nonfinite"):
            d = self.task.report["dropped_nonfinite"]
            self.console.print(f"[yellow]left out {d['galaxies']} of {d['of']} galaxies with "
                               "NaN or infinite values[/]")
        self.console.print(
            f"training {self.task.kind} on {n_train} galaxies ({n_val} for validation), "
            f"{cfg.epochs} epochs, batch {cfg.batch_size}{procs}, {info.device}, "
            f"{cfg.precision}{streamed}{start}", highlight=False)
        if cfg.compile:
            self.console.print("compiling the training step (a minute or so, once) ...",
                               highlight=False)


@torch.no_grad()
def _elbo_terms(model: nn.Module, n_train: int, val_loss: float | None) -> dict[str, float]:
    """For a Bayesian network, the loss split into its ELBO terms: the KL divergence per
    training example and the validation NLL (the loss minus that KL); ``{}`` otherwise."""
    if not getattr(getattr(model, "config", None), "bayesian", False):
        return {}
    kl = float(model.kl()) / n_train
    out = {"kl_per_example": kl}
    if val_loss is not None:
        out["val_nll"] = val_loss - kl
    return out


def _val_loss_fn(model: nn.Module, n_train: int, precision: str, device_type: str) -> Any:
    """The validation loss of a batch: :func:`model_loss` under the training precision."""

    def val_loss(x: Tensor, y: Tensor | None) -> Tensor:
        with autocast(device_type, precision):
            return model_loss(model, x, y, n_train)

    return val_loss
