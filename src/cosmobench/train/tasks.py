"""Tasks: how each model turns a data set into batches and a loss, and what its run keeps.

One training loop (:func:`cosmobench.train.fit`) serves every model; a task supplies the
rest:

- ``cnn`` / ``bnn`` — the shape networks of Arcelin (2021): noisy images (counts, stretched
  by :class:`~cosmobench.train.scaling.ArcsinhScaler` fitted on the training split) →
  targets ``e1, e2, z`` (columns ``e1``, ``e2``, ``redshift``); loss = negative ELBO.
- ``vae`` — noisy → noiseless images, both through the per-band ``BandNormalizer``
  ``tanh(asinh(x / (I_b / 2.5)))`` whose ``I_b`` is fitted on the training split and stored.
- ``flow`` — the masked autoregressive flow, by maximum likelihood on the VAE encoder means
  of the training split (computed once, batched, in inference mode); the run stores the
  VAE's fingerprint so that a flow is never paired with another VAE.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cosmobench import memory
from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_choice
from cosmobench.models.registry import MODEL_KINDS, SHAPE_KINDS
from cosmobench.store import require
from cosmobench.train.config import (
    TASK_OPTIONS,
    FlowOptions,
    ShapeOptions,
    TaskOptions,
    TrainConfig,
)
from cosmobench.train.data import Split, TensorSplit, nonfinite_rows, place
from cosmobench.train.distributed import DistInfo
from cosmobench.train.scaling import ArcsinhScaler, scaler_from_dict
from cosmobench.train.sources import (
    apply_inplace,
    finite_filter,
    open_store,
    split_positions,
    store_index,
)

__all__ = ["Task", "ShapeTask", "VAETask", "FlowTask", "make_task", "TASK_KINDS"]

#: The kinds a task trains: every model kind (:data:`cosmobench.models.MODEL_KINDS`).
TASK_KINDS = MODEL_KINDS


class Task(abc.ABC):
    """What a training loop needs to know about one kind of model.

    Arguments:
        model_config: the model's configuration (``ShapeConfig``, ``VAEConfig``,
            ``FlowConfig``).
        options: the task's own options (:data:`~cosmobench.train.config.TASK_OPTIONS`).
    """

    kind: str

    def __init__(self, model_config: Config, options: TaskOptions | None = None) -> None:
        self.model_config = model_config
        self.options = options if options is not None else TaskOptions()
        self.cfg = TrainConfig()  # set by prepare()
        self.report: dict[str, Any] = {}  # what data preparation found (dropped galaxies ...)

    def build_model(self) -> nn.Module:
        """A freshly initialised model (the caller seeds the RNG first)."""
        from cosmobench.models import build_model

        return build_model(self.kind, self.model_config.to_dict())

    def prepare(self, cfg: TrainConfig, info: DistInfo, state: dict[str, Any] | None = None
                ) -> tuple[Split, Split]:
        """Load and check the data; return the (train, validation) splits, in memory
        (:class:`~cosmobench.train.data.TensorSplit`) or streamed
        (:class:`~cosmobench.train.stream.StreamSplit`) as ``cfg.data_mode`` says.

        Arguments:
            cfg: the training configuration (``cfg.data`` is the store).
            info: rank and device of this process.
            state: the task state of the checkpoint being resumed (fitted scales are
                reused, not refitted), or ``None`` for a new run.
        """
        self.cfg = cfg
        self.report = {}
        return self._prepare(info, state)

    def augment(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """A training batch as the model sees it (unchanged unless the task augments)."""
        return x, y

    def _data_mode(self, ds: Any, names: tuple[str, ...], state: dict[str, Any] | None
                   ) -> str:
        """``memory`` or ``stream`` (``cfg.data_mode``; a resumed run keeps its mode)."""
        from cosmobench.train.stream import choose_data_mode, image_bytes

        if state is not None and state.get("data_mode") in ("memory", "stream"):
            mode = state["data_mode"]
        else:
            mode = choose_data_mode(self.cfg.data_mode, image_bytes(ds, names))
        free = memory.available_bytes()
        need = image_bytes(ds, names)
        if mode == "memory" and free is not None and need > 0.8 * free:
            raise CosmobenchError(f"the images of {ds.path} take {need / 2**30:.1f} GiB, "
                                  f"{free / 2**30:.1f} GiB is available: train with "
                                  "--data-mode stream (or auto)")
        self.report["data_mode"] = mode
        return mode

    def _streams(self, ds: Any, pos: tuple[np.ndarray, np.ndarray], index: np.ndarray,
                 y: Tensor | None, transforms: dict[str, Any], y_name: str | None = None
                 ) -> tuple[Any, Any]:
        """The (train, validation) :class:`~cosmobench.train.stream.StreamSplit` of ``ds``."""
        from cosmobench.train.stream import StreamSplit

        cfg = self.cfg
        return tuple(StreamSplit(
            str(ds.path), p, index[p], int(ds.chunk_size), "noisy",
            None if y is None else y[torch.from_numpy(p)], y_name, transforms,
            cfg.shuffle_buffer, cfg.loader_workers) for p in pos)

    @abc.abstractmethod
    def _prepare(self, info: DistInfo, state: dict[str, Any] | None) -> tuple[Split, Split]:
        """Task-specific part of :meth:`prepare` (``self.cfg`` is set)."""

    def state(self) -> dict[str, Any]:
        """What ``checkpoint.pt`` and ``model.pt`` keep besides weights (plain data),
        with how the data was read (``data_mode``)."""
        return {**self._state(), "data_mode": self.report.get("data_mode", "memory")}

    @abc.abstractmethod
    def _state(self) -> dict[str, Any]:
        """Task-specific part of :meth:`state`."""

    def finish(self, model: nn.Module, out: Path, val: Split) -> list[Path]:
        """Write figures of the trained model into the run folder (rank 0); paths written."""
        return []

    def initialise(self, model: nn.Module) -> None:
        """Start a new run's freshly built model (from another run's weights, where the task
        has such an option); the random initialisation stays otherwise."""
        return


# -------------------------------------------------------------------------------- data


def _model_shape(model_config: Config) -> dict[str, int]:
    """The bands and stamp size a model takes, as :func:`cosmobench.store.require` asks."""
    return {"bands": int(model_config.in_channels), "stamp_size": int(model_config.image_size)}


def _take(t: Tensor, pos: np.ndarray) -> Tensor:
    return t.index_select(0, torch.from_numpy(pos))


# -------------------------------------------------------------------------------- shapes


class ShapeTask(Task):
    """The shape CNN (``kind="cnn"``) or BNN (``kind="bnn"``): noisy images → targets."""

    options: ShapeOptions

    def __init__(self, model_config: Config, options: ShapeOptions | None = None) -> None:
        super().__init__(model_config, options if options is not None else ShapeOptions())
        self.kind = SHAPE_KINDS[bool(model_config.bayesian)]
        self.scaler: ArcsinhScaler | None = None
        self._source: dict[str, Any] | None = None

    def _prepare(self, info: DistInfo, state: dict[str, Any] | None) -> tuple[Split, Split]:
        from cosmobench.train.scaling import ArcsinhScaler
        from cosmobench.train.sources import (
            SCALER_SAMPLE,
            load_shape_data,
            stream_positions,
            target_array,
        )
        from cosmobench.train.stream import read_rows, sample_positions

        path, cfg, tc = self.cfg.data, self.model_config, self.cfg
        ds = open_store(path)
        columns = cfg.columns
        targets = {c: f"target {t}" for t, c in zip(cfg.targets, columns, strict=True)}
        require(ds, images=("noisy",), **_model_shape(cfg))  # images first, then targets
        require(ds, columns=targets)
        self._source = None
        if state is None and self.options.init_from:
            self._source = self._load_source()
        given: Any = self.options.input_scaling  # "arcsinh" (fit it) or "none"
        if state is not None:
            given = scaler_from_dict(state.get("input_scaling"))
        elif self._source is not None:
            given = scaler_from_dict(self._source.get("input_scaling"))
        if self._data_mode(ds, ("noisy",), state) == "memory":
            d = load_shape_data(path, columns, val_fraction=tc.val_fraction,
                                drop_nonfinite=tc.drop_nonfinite, scaling=given)
            self.report.update(d.report)
            self.scaler = d.scaler
            return d.train.to(info.device), d.val.to(info.device)
        y = target_array(ds, columns)  # (N, T), small: kept in memory
        train_pos, val_pos, index = stream_positions(
            path, ds, ("noisy",), y, columns, val_fraction=tc.val_fraction,
            drop_nonfinite=tc.drop_nonfinite, workers=tc.loader_workers, report=self.report)
        self.scaler = None if isinstance(given, str) and given == "none" else given
        if isinstance(given, str) and given == "arcsinh":  # from a sample of the training split
            rows = sample_positions(train_pos, ds.chunk_size, SCALER_SAMPLE, tc.seed)
            self.scaler = ArcsinhScaler.fit(torch.from_numpy(read_rows(ds, "noisy", rows)))
        return self._streams(ds, (train_pos, val_pos), index, y, {"noisy": self.scaler})

    def augment(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """With ``options.augment``, each galaxy under a random symmetry of its stamp."""
        if not self.options.augment or y is None:
            return x, y
        from cosmobench.train.augment import dihedral

        return dihedral(x, y, self.model_config.targets)

    def _load_source(self) -> dict[str, Any]:
        """The ``model.pt`` of ``options.init_from``, checked to fit this run."""
        from cosmobench.files import load_checkpoint
        from cosmobench.train.runs import MODEL_FILE

        path = Path(self.options.init_from)
        src = load_checkpoint(path / MODEL_FILE if path.is_dir() else path)
        kind = src.get("kind")
        if kind not in SHAPE_KINDS:
            raise CosmobenchError(f"--init-from {path} holds a {kind} run; give a cnn or bnn run")
        mine = self.model_config.to_dict()
        theirs = src["model_config"]
        keys = ("targets", "prelu", "in_channels", "image_size", "filters")
        differ = [k for k in keys if mine.get(k) != theirs.get(k)]
        if differ:
            raise CosmobenchError(f"--init-from {path}: its {', '.join(differ)} differ from "
                                  "this run's; the weights cannot start it")
        scaling = (src.get("input_scaling") or {"kind": "none"})["kind"]
        if scaling != self.options.input_scaling:
            raise CosmobenchError(f"--init-from {path} was trained with input scaling "
                                  f"{scaling}; use --input-scaling {scaling}")
        return src

    def initialise(self, model: nn.Module) -> None:
        """Copy the source run's weights: same names, and a CNN kernel ``w`` into a BNN's
        posterior mean ``w_mu`` (its ``w_rho`` keeps the paper's initialisation)."""
        if self._source is None:
            return
        source = self._source["state_dict"]
        own = model.state_dict()
        for name in own:
            src_name = name if name in source else (
                name[: -len("_mu")] if name.endswith("weight_mu") else None)
            if src_name in source:
                own[name] = source[src_name].to(own[name].dtype)
        model.load_state_dict(own)

    def _state(self) -> dict[str, Any]:
        scaling = self.scaler.to_dict() if self.scaler is not None else {"kind": "none"}
        return {"targets": list(self.model_config.targets), "input_scaling": scaling}


# -------------------------------------------------------------------------------- VAE


class VAETask(Task):
    """The VAE: normalised noisy images → normalised noiseless images."""

    kind = "vae"

    def __init__(self, model_config: Config, options: TaskOptions | None = None) -> None:
        super().__init__(model_config, options)
        self.normalizer: nn.Module | None = None

    def _prepare(self, info: DistInfo, state: dict[str, Any] | None) -> tuple[Split, Split]:
        from cosmobench.models import BandNormalizer
        from cosmobench.train.sources import SCALER_SAMPLE, stream_positions
        from cosmobench.train.stream import read_rows, sample_positions

        path, tc = self.cfg.data, self.cfg
        ds = open_store(path)
        names = ("noisy", "noiseless")
        require(ds, images=names, **_model_shape(self.model_config))
        if self._data_mode(ds, names, state) == "stream":
            train_pos, val_pos, index = stream_positions(
                path, ds, names, None, (), val_fraction=tc.val_fraction,
                drop_nonfinite=tc.drop_nonfinite, workers=tc.loader_workers,
                report=self.report)
            if state is not None:
                self.normalizer = BandNormalizer.from_dict(state["normalizer"])
            else:  # I_b from a sample of the training split
                rows = sample_positions(train_pos, ds.chunk_size, SCALER_SAMPLE, tc.seed)
                self.normalizer = BandNormalizer.fit(
                    torch.from_numpy(read_rows(ds, "noiseless", rows)))
            fns = {n: self.normalizer for n in names}
            return self._streams(ds, (train_pos, val_pos), index, None, fns, "noiseless")
        x, y = ds.tensor("noisy"), ds.tensor("noiseless")  # (N, 6, 64, 64) counts each
        keep = finite_filter(path, {"noisy": nonfinite_rows(x).numpy(),
                                    "noiseless": nonfinite_rows(y).numpy()},
                             tc.drop_nonfinite, self.report)
        index = store_index(ds)
        train_pos, val_pos = split_positions(path, index, keep, tc.val_fraction)
        xt, yt, xv, yv = (_take(x, train_pos), _take(y, train_pos), _take(x, val_pos),
                          _take(y, val_pos))
        del x, y
        if state is not None:
            self.normalizer = BandNormalizer.from_dict(state["normalizer"])
        else:
            self.normalizer = BandNormalizer.fit(yt)
        for t in (xt, yt, xv, yv):
            apply_inplace(self.normalizer, t)
        train = TensorSplit(xt, yt, index[train_pos])
        val = TensorSplit(xv, yv, index[val_pos])
        return train.to(info.device), val.to(info.device)

    def _state(self) -> dict[str, Any]:
        assert self.normalizer is not None
        return {"normalizer": self.normalizer.to_dict()}

    def finish(self, model: nn.Module, out: Path, val: Split) -> list[Path]:
        from cosmobench.train.figures import reconstruction_grid

        return [reconstruction_grid(model, val, out / "reconstructions.png")]


# -------------------------------------------------------------------------------- flow


class FlowTask(Task):
    """The latent flow: maximum likelihood on the VAE encoder means of the data set."""

    kind = "flow"
    options: FlowOptions

    def __init__(self, model_config: Config, options: FlowOptions | None = None) -> None:
        super().__init__(model_config, options if options is not None else FlowOptions())
        self.fingerprint = ""

    def _prepare(self, info: DistInfo, state: dict[str, Any] | None
                 ) -> tuple[TensorSplit, TensorSplit]:
        from cosmobench.train.runs import load_run, vae_fingerprint

        vae_run = self.options.vae_run
        if not vae_run:
            raise CosmobenchError("training a flow needs the VAE run it models (--vae RUN)")

        vae, vinfo = load_run(vae_run, expect_kind="vae")
        normalizer = vinfo["normalizer"]
        self.fingerprint = vae_fingerprint(vae, normalizer)
        if state is not None and state.get("vae_fingerprint") != self.fingerprint:
            raise CosmobenchError(
                f"VAE run {vae_run} changed since this flow run started "
                "(fingerprint differs); start a new flow run with another --out"
            )
        latent = int(vae.config.latent)
        if int(self.model_config.features) != latent:
            raise CosmobenchError(f"the flow models {self.model_config.features} features but "
                                  f"the VAE's latent space has {latent}")
        path, tc = self.cfg.data, self.cfg
        ds = open_store(path)
        require(ds, images=("noisy",), **_model_shape(vae.config))
        vae, norm = vae.to(info.device), normalizer.to(info.device)
        if self._data_mode(ds, ("noisy",), state) == "stream":  # encode chunk by chunk
            from cosmobench.train.stream import read_chunks

            bad, zs = [], []
            for _, chunk in read_chunks(ds, "noisy", tc.loader_workers):
                xc = torch.from_numpy(chunk)
                bad.append(nonfinite_rows(xc).numpy())
                zs.append(encode_means(vae, norm, xc, info.device, tc.precision))
            bad_rows, z = np.concatenate(bad), torch.cat(zs)
        else:
            x = ds.tensor("noisy")
            bad_rows = nonfinite_rows(x).numpy()
            z = encode_means(vae, norm, x, info.device, tc.precision)
            del x
        keep = finite_filter(path, {"noisy": bad_rows}, tc.drop_nonfinite, self.report)
        index = store_index(ds)
        train_pos, val_pos = split_positions(path, index, keep, tc.val_fraction)
        train = TensorSplit(_take(z, train_pos), None, index[train_pos])
        val = TensorSplit(_take(z, val_pos), None, index[val_pos])
        return train.to(info.device), val.to(info.device)

    def _state(self) -> dict[str, Any]:
        return {"vae_run": str(Path(self.options.vae_run).resolve()),
                "vae_fingerprint": self.fingerprint}


@torch.inference_mode()
def encode_means(vae: nn.Module, normalizer: nn.Module, x: Tensor, device: torch.device,
                 precision: str = "fp32", batch: int = 256) -> Tensor:
    """Encoder means ``(N, latent)`` (fp32, on the host) of counts ``x`` ``(N, 6, 64, 64)``,
    batched, in inference mode, the VAE in eval mode (BatchNorm running statistics)."""
    from cosmobench.train.step import autocast

    was_training = vae.training
    vae.eval()
    out = []
    for s in range(0, len(x), batch):
        xb = normalizer(place(x[s:s + batch], device).to(device))
        with autocast(device.type, precision):
            mu, _sigma = vae.encode(xb)
        out.append(mu.float().cpu())
    vae.train(was_training)
    return torch.cat(out)


def make_task(kind: str, model_config: Config | dict[str, Any] | None = None,
              options: TaskOptions | dict[str, Any] | None = None) -> Task:
    """The task for model ``kind`` (cnn, bnn, vae, flow).

    Arguments:
        kind: one of :data:`TASK_KINDS`.
        model_config: a config, a dict of fields, or ``None`` for the paper's defaults.
        options: the task's options (:class:`~cosmobench.train.config.ShapeOptions`,
            :class:`~cosmobench.train.config.FlowOptions`, none for the VAE), as a config or
            a dict; an option of another task is a one-line error.

    Example:
        >>> make_task("cnn", {"targets": ["e1", "e2"]}, {"augment": True}).options.augment
        True
    """
    from cosmobench.models import FlowConfig, VAEConfig, shape_config

    check_choice("model kind", kind, TASK_KINDS)
    option_class = TASK_OPTIONS[kind]
    if not isinstance(options, Config):
        fields = dict(options or {})
        foreign = sorted(set(fields) - {f.name for f in dataclasses.fields(option_class)})
        if foreign:
            raise CosmobenchError(f"a {kind} run takes no option {', '.join(foreign)}")
        options = option_class.from_dict(fields)
    if kind in SHAPE_KINDS:
        return ShapeTask(shape_config(kind, model_config), options)
    classes = {"vae": (VAEConfig, VAETask), "flow": (FlowConfig, FlowTask)}
    config_class, task_class = classes[kind]
    if not isinstance(model_config, Config):
        model_config = config_class.from_dict(dict(model_config or {}))
    return task_class(model_config, options)
