"""Run folders: what a training run leaves behind, and how other stages load it.

``RUN/`` holds ``config.json`` (kind and resolved configs, written when the run starts),
``metrics.jsonl`` (one JSON line per epoch), ``checkpoint.pt`` (atomic, every epoch:
weights, optimiser, RNG states, best-validation weights, history, configs) and, once
training ends, ``model.pt``::

    {"format": "cosmobench.run", "version": 1, "kind": "cnn"|"bnn"|"vae"|"flow",
     "model_config": dict, "state_dict": ..., "train_config": dict,
     "task_options": dict, "epoch": int,
     "val_loss": float|None, "targets": [...], "input_scaling": {...},    # cnn, bnn
     "normalizer": {...},                                                 # vae (I_b)
     "vae_run": str, "vae_fingerprint": str}                              # flow

``model.pt`` holds the best-validation weights (the last epoch's when there is no
validation split). Everything loads with ``weights_only=True``: a run folder is data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cosmobench.errors import CosmobenchError
from cosmobench.files import load_checkpoint, read_json
from cosmobench.models.registry import SHAPE_KINDS

__all__ = [
    "RUN_FORMAT",
    "RUN_VERSION",
    "CONFIG_FILE",
    "METRICS_FILE",
    "CHECKPOINT_FILE",
    "MODEL_FILE",
    "load_run",
    "fingerprint",
    "vae_fingerprint",
    "run_kind",
    "run_latent",
]

RUN_FORMAT = "cosmobench.run"
RUN_VERSION = 1
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"


def run_kind(folder: Path) -> str | None:
    """The model kind of an existing run folder (from ``config.json``), or ``None``."""
    cfg = folder / CONFIG_FILE
    if not cfg.is_file():
        return None
    data = read_json(cfg, "run config")
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        raise CosmobenchError(f"{cfg} is not a cosmobench run config")
    return str(data.get("kind"))


def run_latent(folder: str | Path) -> int | None:
    """The latent size of a VAE run, read from its ``config.json`` (or, in a folder holding
    only ``model.pt``, from that checkpoint's config); ``None`` when the folder holds no VAE
    run (loading it then says why)."""
    folder = Path(folder)
    cfg, model = folder / CONFIG_FILE, folder / MODEL_FILE
    if cfg.is_file():
        data = read_json(cfg, "run config")
    elif model.is_file():  # a run folder holding only its model.pt
        try:
            data = load_checkpoint(model)
        except CosmobenchError:
            return None  # loading the run later says what is wrong with it
    else:
        return None
    if not isinstance(data, dict) or data.get("kind") != "vae":
        return None
    return int((data.get("model_config") or {}).get("latent", 32))


def _kinds(expect_kind: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if expect_kind is None:
        return None
    return (expect_kind,) if isinstance(expect_kind, str) else tuple(expect_kind)


def load_run(
    path: str | Path,
    expect_kind: str | Iterable[str] | None = None,
    *,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a trained model from a run folder (or its ``model.pt``), in eval mode.

    Shape networks come back wrapped with their input scaling
    (:class:`~cosmobench.train.scaling.ScaledShapeNet`): pass images in counts. A VAE's
    ``info["normalizer"]`` is its fitted ``BandNormalizer`` module.

    Arguments:
        path: the run folder given to ``--out`` (or the path of its ``model.pt``).
        expect_kind: the kind(s) the caller can use (``"vae"``, ``("cnn", "bnn")``, ...);
            a run of another kind is a one-line error.
        device: where to put the model.

    Returns:
        ``(model, info)``: ``info`` holds everything ``model.pt`` stores except the weights,
        plus ``"path"`` (the run folder) and, for a VAE, the ``"normalizer"`` module.
    """
    path = Path(path)
    if not path.exists():
        raise CosmobenchError(
            f"no trained model in {path}: the run folder does not exist; give the --out of a "
            "train run"
        )
    file = path / MODEL_FILE if path.is_dir() else path
    folder = file.parent
    if not file.is_file():
        hint = (" (training has not finished; resume it with --resume)"
                if (folder / CHECKPOINT_FILE).is_file() else "")
        raise CosmobenchError(f"no trained model in {path}: {file.name} is missing{hint}")
    state = load_checkpoint(file)
    if state.get("format") != RUN_FORMAT or "kind" not in state or "state_dict" not in state:
        raise CosmobenchError(f"{file} is not a cosmobench model file")
    if state.get("version", 0) > RUN_VERSION:
        raise CosmobenchError(f"{file} was written by a newer cosmobench (run format "
                              f"{state['version']} > {RUN_VERSION}); upgrade cosmobench")
    kind = state["kind"]
    kinds = _kinds(expect_kind)
    if kinds is not None and kind not in kinds:
        raise CosmobenchError(f"{folder} holds a {kind} run; expected a "
                              f"{' or '.join(kinds)} run")
    from cosmobench.models import build_model

    model = build_model(kind, state["model_config"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CosmobenchError(f"{file}: weights do not fit a {kind} model ({first})") from None
    info = {k: v for k, v in state.items() if k != "state_dict"}
    info["path"] = str(folder)
    if kind in SHAPE_KINDS:
        from cosmobench.train.scaling import ScaledShapeNet, scaler_from_dict

        scaler = scaler_from_dict(state.get("input_scaling"))
        if scaler is not None:
            model = ScaledShapeNet(model, scaler)
    elif kind == "vae":
        from cosmobench.models import BandNormalizer

        info["normalizer"] = BandNormalizer.from_dict(state["normalizer"]).to(device).eval()
    return model.to(device).eval(), info


def fingerprint(config: Any, *modules: nn.Module) -> str:
    """SHA-256 (16 hex characters) of a config and the state of ``modules``, in order.

    Every tensor of every module's ``state_dict`` counts by name, dtype, shape and bytes,
    so another training, size or normalisation gives another fingerprint.

    Example:
        >>> from cosmobench.models import FlowConfig, LatentFlow
        >>> flow = LatentFlow(FlowConfig(features=4))
        >>> fingerprint(flow.config, flow) == fingerprint(flow.config, flow)
        True
    """
    h = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for module in modules:
        for name, t in sorted(module.state_dict().items()):
            t = t.detach().to("cpu").contiguous()
            h.update(f"{name}{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def vae_fingerprint(vae: nn.Module, normalizer: nn.Module) -> str:
    """The :func:`fingerprint` of a VAE's config, its normaliser and its weights.

    A flow stores the fingerprint of the VAE it was trained on; a generator compares it
    with the VAE it is given, so a flow is never decoded through another VAE (another
    training, latent size or normalisation).
    """
    return fingerprint(vae.config, normalizer, vae)
