"""Build any model from its kind and config dict (what checkpoints store), and count parameters.

A run folder's ``model.pt`` stores ``kind`` (``cnn``, ``bnn``, ``vae``, ``flow``) and
``model_config`` (the model's ``config.to_dict()``); :func:`build_model` rebuilds the network
before its ``state_dict`` is loaded, and :func:`model_kind` gives the kind of a live model.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from cosmobench.errors import CosmobenchError, check_choice
from cosmobench.models.flow import FlowConfig, LatentFlow
from cosmobench.models.shape import ShapeConfig, ShapeNet
from cosmobench.models.vae import VAE, VAEConfig

__all__ = [
    "MODEL_KINDS",
    "SHAPE_KINDS",
    "build_model",
    "count_parameters",
    "is_bayesian",
    "model_kind",
    "shape_config",
]

#: Every model kind a run folder can hold.
MODEL_KINDS = ("cnn", "bnn", "vae", "flow")
#: The shape networks: the deterministic CNN and its Bayesian twin.
SHAPE_KINDS = ("cnn", "bnn")


def is_bayesian(kind: str) -> bool:
    """Whether a shape-network kind is the Bayesian one (``bnn``); the one rule tying a
    kind to ``ShapeConfig.bayesian``.

    Example:
        >>> is_bayesian("bnn"), is_bayesian("cnn")
        (True, False)
    """
    return kind == "bnn"


def shape_config(kind: str, data: dict[str, Any] | ShapeConfig | None = None) -> ShapeConfig:
    """The :class:`ShapeConfig` of a ``cnn`` or ``bnn`` from a (partial) dict or config;
    ``bayesian`` follows the kind, and a dict or config saying otherwise is an error."""
    if isinstance(data, ShapeConfig):
        data = data.to_dict()
    data = dict(data or {})
    bayesian = is_bayesian(kind)
    if data.get("bayesian", bayesian) != bayesian:
        raise CosmobenchError(
            f"a {kind} model config must have bayesian={bayesian}; got {data['bayesian']}"
        )
    data["bayesian"] = bayesian
    return ShapeConfig.from_dict(data)


def build_model(kind: str, config_dict: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialised model of ``kind`` from a config dict (defaults where absent).

    Arguments:
        kind: ``cnn`` (deterministic shape CNN), ``bnn`` (Bayesian shape CNN), ``vae`` or
            ``flow``.
        config_dict: Output of ``model.config.to_dict()``, or a partial dict; for ``cnn`` and
            ``bnn`` the kind sets ``bayesian`` (a contradicting value is an error).

    Example:
        >>> build_model("bnn", {"targets": ["e1", "e2"]}).config.bayesian
        True
    """
    check_choice("model kind", kind, MODEL_KINDS)
    data = dict(config_dict or {})
    if kind in SHAPE_KINDS:
        return ShapeNet(shape_config(kind, data))
    if kind == "vae":
        return VAE(VAEConfig.from_dict(data))
    return LatentFlow(FlowConfig.from_dict(data))


def model_kind(model: nn.Module) -> str:
    """The registry kind of a model built here (``cnn``, ``bnn``, ``vae`` or ``flow``)."""
    if isinstance(model, ShapeNet):
        return SHAPE_KINDS[bool(model.config.bayesian)]
    if isinstance(model, VAE):
        return "vae"
    if isinstance(model, LatentFlow):
        return "flow"
    raise TypeError(f"not a cosmobench model: {type(model).__name__}")


def count_parameters(model: nn.Module, keras: bool = True) -> int:
    """Number of parameters; with ``keras=True`` BatchNorm's running mean and variance count too.

    Keras's ``model.count_params()`` includes BatchNormalization's moving mean and variance
    (non-trainable weights), which is how the paper quotes 1.5 M and 2.7 M parameters.
    """
    n = sum(p.numel() for p in model.parameters())
    if keras:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                n += m.running_mean.numel() + m.running_var.numel()
    return n
