"""The networks of Arcelin (2021): shape CNN and BNN, galaxy VAE, latent normalizing flow.

Layers (``layers``, ``variational``, ``mvn``) are composed into named models (``shape``,
``vae``, ``flow``); ``registry.build_model(kind, config_dict)`` rebuilds any of them from a
checkpoint, and ``count_parameters`` counts as Keras does.
"""

from cosmobench.models.flow import FlowConfig, LatentFlow
from cosmobench.models.layers import ElementPReLU, SameConv2d, SameConvTranspose2d, make_prelu
from cosmobench.models.mvn import MVNTriLHead, mvn_params_size, mvn_tril_log_prob
from cosmobench.models.normalize import BandNormalizer
from cosmobench.models.registry import (
    MODEL_KINDS,
    SHAPE_KINDS,
    build_model,
    count_parameters,
    is_bayesian,
    model_kind,
    shape_config,
)
from cosmobench.models.shape import TARGET_COLUMNS, ShapeConfig, ShapeNet, ShapePrediction
from cosmobench.models.vae import VAE, VAEConfig
from cosmobench.models.variational import VariationalConv2d, VariationalLinear, normal_kl

__all__ = [
    "MODEL_KINDS",
    "SHAPE_KINDS",
    "TARGET_COLUMNS",
    "VAE",
    "BandNormalizer",
    "ElementPReLU",
    "FlowConfig",
    "LatentFlow",
    "MVNTriLHead",
    "SameConv2d",
    "SameConvTranspose2d",
    "ShapeConfig",
    "ShapeNet",
    "ShapePrediction",
    "VAEConfig",
    "VariationalConv2d",
    "VariationalLinear",
    "build_model",
    "is_bayesian",
    "shape_config",
    "count_parameters",
    "make_prelu",
    "model_kind",
    "mvn_params_size",
    "mvn_tril_log_prob",
    "normal_kl",
]
