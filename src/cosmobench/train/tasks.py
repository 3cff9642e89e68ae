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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cosmobench.config import Config
from cosmobench.errors import CosmobenchError
from cosmobench.train.config import TrainConfig
from cosmobench.train.data import TensorSplit, nonfinite_rows, place, split_by_index
from cosmobench.train.distributed import DistInfo
from cosmobench.train.scaling import ArcsinhScaler, scaler_from_dict

__all__ = ["Task", "ShapeTask", "VAETask", "FlowTask", "make_task", "TASK_KINDS"]

TASK_KINDS = ("cnn", "bnn", "vae", "flow")


class Task(abc.ABC):
    """What a training loop needs to know about one kind of model.

    Arguments:
        model_config: the model's configuration (``ShapeConfig``, ``VAEConfig``,
            ``FlowConfig``).
    """

    kind: str
    #: whether :meth:`augment` can transform this task's batches (``cfg.augment``)
    augmentable: bool = False

    def __init__(self, model_config: Config) -> None:
        self.model_config = model_config
        self.cfg = TrainConfig()  # set by prepare()
        self.report: dict[str, Any] = {}  # what data preparation found (dropped galaxies ...)

    def build_model(self) -> nn.Module:
        """A freshly initialised model (the caller seeds the RNG first)."""
        from cosmobench.models import build_model

        return build_model(self.kind, self.model_config.to_dict())

    def prepare(self, cfg: TrainConfig, info: DistInfo, state: dict[str, Any] | None = None
                ) -> tuple[TensorSplit, TensorSplit]:
        """Load and check the data; return the (train, validation) splits in memory.

        Arguments:
            cfg: the training configuration (``cfg.data`` is the store).
            info: rank and device of this process.
            state: the task state of the checkpoint being resumed (fitted scales are
                reused, not refitted), or ``None`` for a new run.
        """
        self.cfg = cfg
        self.report = {}
        if cfg.augment and not self.augmentable:
            raise CosmobenchError(f"--augment applies to cnn and bnn runs, not to a {self.kind}")
        return self._prepare(info, state)

    def augment(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """A training batch as the model sees it (unchanged unless the task augments)."""
        return x, y

    @abc.abstractmethod
    def _prepare(self, info: DistInfo, state: dict[str, Any] | None
                 ) -> tuple[TensorSplit, TensorSplit]:
        """Task-specific part of :meth:`prepare` (``self.cfg`` is set)."""

    @abc.abstractmethod
    def state(self) -> dict[str, Any]:
        """What ``checkpoint.pt`` and ``model.pt`` keep besides weights (plain data)."""

    def finish(self, model: nn.Module, out: Path, val: TensorSplit) -> list[Path]:
        """Write figures of the trained model into the run folder (rank 0); paths written."""
        return []

    def initialise(self, model: nn.Module) -> None:
        """Start a new run's freshly built model from ``cfg.init_from`` (if given)."""
        if self.cfg.init_from:
            raise CosmobenchError(f"--init-from applies to cnn and bnn runs, not to a {self.kind}")


# -------------------------------------------------------------------------------- data


def _open(path: str) -> Any:
    from cosmobench.store import open_dataset

    return open_dataset(path)


def _require_columns(ds: Any, path: str, needed: dict[str, str]) -> None:
    """``needed`` maps column -> what asks for it (e.g. ``{"redshift": "target z"}``)."""
    have = set(ds.columns)
    missing = [f"{col!r} (for {why})" for col, why in needed.items() if col not in have]
    if missing:
        raise CosmobenchError(
            f"data set {path} has no column {', '.join(missing)}; it has "
            f"{', '.join(sorted(have))}"
        )


def _require_images(ds: Any, path: str, names: tuple[str, ...], model_config: Config
                    ) -> None:
    """The store has the image arrays ``names``, with the bands and stamp size the model
    takes (``in_channels``, ``image_size`` of its config)."""
    have = tuple(getattr(ds, "image_names", ()))
    missing = [n for n in names if n not in have]
    if missing:
        raise CosmobenchError(f"data set {path} has no {' or '.join(missing)} images (it has "
                              f"{', '.join(have) or 'none'}); train on a simulated store")
    bands, size = len(ds.bands), int(ds.stamp_size)
    want = (int(model_config.in_channels), int(model_config.image_size))
    if (bands, size) != want:
        raise CosmobenchError(f"data set {path} has {bands} bands of {size}x{size} pixels; the "
                              f"model takes {want[0]} bands of {want[1]}x{want[1]}")


def _index(ds: Any) -> np.ndarray:
    """The key the validation split hashes, one per row: the galaxy index, except that the
    images of one galaxy share a key so that they fall on the same side of the split —
    a ring pair (rows 2k, 2k+1) shares ``index // 2``, a shear-test galaxy its four rows'
    ``group`` (Pujol et al. 2019)."""
    if "group" in ds.columns:
        return np.asarray(ds.column("group"), dtype=np.int64)
    index = (np.asarray(ds.column("index"), dtype=np.int64) if "index" in ds.columns
             else np.arange(ds.n, dtype=np.int64))
    return index // 2 if (getattr(ds, "config", None) or {}).get("ring") else index


def _finite_filter(path: str, named: dict[str, Tensor], drop: bool, report: dict[str, Any]
                   ) -> Tensor | None:
    """Find galaxies with NaN/inf in any of ``named`` tensors ``(N, ...)``.

    Returns a keep-mask ``(N,)`` (or ``None`` when all are finite); refuses the data set,
    with counts per array, unless ``drop``.
    """
    counts, bad = {}, None
    for name, t in named.items():
        rows = nonfinite_rows(t)
        n = int(rows.sum())
        if n:
            counts[name] = n
            bad = rows if bad is None else bad | rows
    if bad is None:
        return None
    total = int(bad.sum())
    n_all = len(bad)
    detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
    if not drop:
        raise CosmobenchError(
            f"data set {path}: {total} of {n_all} galaxies have NaN or infinite values "
            f"({detail}); refusing to train on them — pass --drop-nonfinite to leave them out"
        )
    report["dropped_nonfinite"] = {"galaxies": total, "of": n_all, **counts}
    return ~bad


def _split(path: str, index: np.ndarray, keep: Tensor | None, val_fraction: float
           ) -> tuple[np.ndarray, np.ndarray]:
    train_pos, val_pos = split_by_index(index, val_fraction)
    if keep is not None:
        k = keep.numpy()
        train_pos, val_pos = train_pos[k[train_pos]], val_pos[k[val_pos]]
    if len(train_pos) < 2:
        raise CosmobenchError(f"data set {path} leaves {len(train_pos)} training galaxies "
                              "after the validation split; simulate more")
    return train_pos, val_pos


def _take(t: Tensor, pos: np.ndarray) -> Tensor:
    return t.index_select(0, torch.from_numpy(pos))


# -------------------------------------------------------------------------------- shapes


class ShapeTask(Task):
    """The shape CNN (``kind="cnn"``) or BNN (``kind="bnn"``): noisy images → targets."""

    augmentable = True

    def __init__(self, model_config: Config) -> None:
        super().__init__(model_config)
        self.kind = "bnn" if model_config.bayesian else "cnn"
        self.scaler: ArcsinhScaler | None = None
        self._source: dict[str, Any] | None = None

    def _prepare(self, info: DistInfo, state: dict[str, Any] | None
                 ) -> tuple[TensorSplit, TensorSplit]:
        path, cfg = self.cfg.data, self.model_config
        ds = _open(path)
        columns = cfg.columns
        _require_images(ds, path, ("noisy",), cfg)
        _require_columns(ds, path, {c: f"target {t}" for t, c in zip(cfg.targets, columns,
                                                                     strict=True)})
        x = ds.tensor("noisy")  # (N, 6, 64, 64) counts
        y = torch.from_numpy(np.stack([np.asarray(ds.column(c), dtype=np.float32)
                                       for c in columns], axis=1))  # (N, T)
        keep = _finite_filter(path, {"noisy": x, **{c: y[:, i:i + 1] for i, c in
                                                    enumerate(columns)}},
                              self.cfg.drop_nonfinite, self.report)
        index = _index(ds)
        train_pos, val_pos = _split(path, index, keep, self.cfg.val_fraction)
        x_train, x_val = _take(x, train_pos), _take(x, val_pos)
        del x
        self._source = None
        if state is None and self.cfg.init_from:
            self._source = self._load_source()
        if state is not None:
            self.scaler = scaler_from_dict(state.get("input_scaling"))
        elif self._source is not None:
            self.scaler = scaler_from_dict(self._source.get("input_scaling"))
        elif self.cfg.input_scaling == "arcsinh":
            self.scaler = ArcsinhScaler.fit(x_train)
        if self.scaler is not None:
            _apply_inplace(self.scaler, x_train)
            _apply_inplace(self.scaler, x_val)
        train = TensorSplit(x_train, _take(y, train_pos), index[train_pos])
        val = TensorSplit(x_val, _take(y, val_pos), index[val_pos])
        return train.to(info.device), val.to(info.device)

    def augment(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """With ``cfg.augment``, each galaxy under a random symmetry of its stamp."""
        if not self.cfg.augment or y is None:
            return x, y
        from cosmobench.train.augment import dihedral

        return dihedral(x, y, self.model_config.targets)

    def _load_source(self) -> dict[str, Any]:
        """The ``model.pt`` of ``cfg.init_from``, checked to fit this run."""
        from cosmobench.files import load_checkpoint
        from cosmobench.train.runs import MODEL_FILE

        path = Path(self.cfg.init_from)
        src = load_checkpoint(path / MODEL_FILE if path.is_dir() else path)
        kind = src.get("kind")
        if kind not in ("cnn", "bnn"):
            raise CosmobenchError(f"--init-from {path} holds a {kind} run; give a cnn or bnn run")
        mine = self.model_config.to_dict()
        theirs = src["model_config"]
        keys = ("targets", "prelu", "in_channels", "image_size", "filters")
        differ = [k for k in keys if mine.get(k) != theirs.get(k)]
        if differ:
            raise CosmobenchError(f"--init-from {path}: its {', '.join(differ)} differ from "
                                  "this run's; the weights cannot start it")
        scaling = (src.get("input_scaling") or {"kind": "none"})["kind"]
        if scaling != self.cfg.input_scaling:
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

    def state(self) -> dict[str, Any]:
        scaling = self.scaler.to_dict() if self.scaler is not None else {"kind": "none"}
        return {"targets": list(self.model_config.targets), "input_scaling": scaling}


@torch.no_grad()
def _apply_inplace(fn: nn.Module, x: Tensor, chunk: int = 1024) -> None:
    for s in range(0, len(x), chunk):
        x[s:s + chunk] = fn(x[s:s + chunk])


# -------------------------------------------------------------------------------- VAE


class VAETask(Task):
    """The VAE: normalised noisy images → normalised noiseless images."""

    kind = "vae"

    def __init__(self, model_config: Config) -> None:
        super().__init__(model_config)
        self.normalizer: nn.Module | None = None

    def _prepare(self, info: DistInfo, state: dict[str, Any] | None
                 ) -> tuple[TensorSplit, TensorSplit]:
        from cosmobench.models import BandNormalizer

        path = self.cfg.data
        ds = _open(path)
        _require_images(ds, path, ("noisy", "noiseless"), self.model_config)
        x, y = ds.tensor("noisy"), ds.tensor("noiseless")  # (N, 6, 64, 64) counts each
        keep = _finite_filter(path, {"noisy": x, "noiseless": y}, self.cfg.drop_nonfinite,
                              self.report)
        index = _index(ds)
        train_pos, val_pos = _split(path, index, keep, self.cfg.val_fraction)
        xt, yt, xv, yv = (_take(x, train_pos), _take(y, train_pos), _take(x, val_pos),
                          _take(y, val_pos))
        del x, y
        if state is not None:
            self.normalizer = BandNormalizer.from_dict(state["normalizer"])
        else:
            self.normalizer = BandNormalizer.fit(yt)
        for t in (xt, yt, xv, yv):
            _apply_inplace(self.normalizer, t)
        train = TensorSplit(xt, yt, index[train_pos])
        val = TensorSplit(xv, yv, index[val_pos])
        return train.to(info.device), val.to(info.device)

    def state(self) -> dict[str, Any]:
        assert self.normalizer is not None
        return {"normalizer": self.normalizer.to_dict()}

    def finish(self, model: nn.Module, out: Path, val: TensorSplit) -> list[Path]:
        from cosmobench.train.figures import reconstruction_grid

        return [reconstruction_grid(model, val, out / "reconstructions.png")]


# -------------------------------------------------------------------------------- flow


class FlowTask(Task):
    """The latent flow: maximum likelihood on the VAE encoder means of the data set."""

    kind = "flow"

    def __init__(self, model_config: Config) -> None:
        super().__init__(model_config)
        self.fingerprint = ""

    def _prepare(self, info: DistInfo, state: dict[str, Any] | None
                 ) -> tuple[TensorSplit, TensorSplit]:
        from cosmobench.train.runs import load_run, vae_fingerprint

        if not self.cfg.vae_run:
            raise CosmobenchError("training a flow needs the VAE run it models (--vae RUN)")

        vae, vinfo = load_run(self.cfg.vae_run, expect_kind="vae")
        normalizer = vinfo["normalizer"]
        self.fingerprint = vae_fingerprint(vae, normalizer)
        if state is not None and state.get("vae_fingerprint") != self.fingerprint:
            raise CosmobenchError(
                f"VAE run {self.cfg.vae_run} changed since this flow run started "
                "(fingerprint differs); start a new flow run with another --out"
            )
        latent = int(vae.config.latent)
        if int(self.model_config.features) != latent:
            raise CosmobenchError(f"the flow models {self.model_config.features} features but "
                                  f"the VAE's latent space has {latent}")
        path = self.cfg.data
        ds = _open(path)
        _require_images(ds, path, ("noisy",), vae.config)
        x = ds.tensor("noisy")
        keep = _finite_filter(path, {"noisy": x}, self.cfg.drop_nonfinite, self.report)
        index = _index(ds)
        train_pos, val_pos = _split(path, index, keep, self.cfg.val_fraction)
        vae = vae.to(info.device)
        z = encode_means(vae, normalizer.to(info.device), x, info.device, self.cfg.precision)
        del x
        train = TensorSplit(_take(z, train_pos), None, index[train_pos])
        val = TensorSplit(_take(z, val_pos), None, index[val_pos])
        return train.to(info.device), val.to(info.device)

    def state(self) -> dict[str, Any]:
        return {"vae_run": str(Path(self.cfg.vae_run).resolve()),
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


def make_task(kind: str, model_config: Config | dict[str, Any] | None = None) -> Task:
    """The task for model ``kind`` (cnn, bnn, vae, flow) with its model configuration
    (a config, a dict of fields, or ``None`` for the paper's defaults)."""
    from cosmobench.models import FlowConfig, ShapeConfig, VAEConfig

    classes = {"cnn": ShapeConfig, "bnn": ShapeConfig, "vae": VAEConfig, "flow": FlowConfig}
    if kind not in classes:
        raise CosmobenchError(f"model kind must be one of {', '.join(TASK_KINDS)}; "
                              f"got {kind!r}")
    if not isinstance(model_config, Config):
        fields = dict(model_config or {})
        if kind in ("cnn", "bnn"):
            fields.setdefault("bayesian", kind == "bnn")
        model_config = classes[kind].from_dict(fields)
    if kind in ("cnn", "bnn"):
        if bool(model_config.bayesian) != (kind == "bnn"):
            raise CosmobenchError(f"a {kind} needs bayesian={kind == 'bnn'} in its config")
        return ShapeTask(model_config)
    if kind == "vae":
        return VAETask(model_config)
    return FlowTask(model_config)
    raise CosmobenchError(f"model kind must be one of {', '.join(TASK_KINDS)}; got {kind!r}")
