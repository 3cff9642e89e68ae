"""build_model / model_kind / count_parameters."""

from __future__ import annotations

import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.models import (
    VAE,
    LatentFlow,
    ShapeNet,
    build_model,
    count_parameters,
    model_kind,
)


@pytest.mark.parametrize(
    ("kind", "cls"), [("cnn", ShapeNet), ("bnn", ShapeNet), ("vae", VAE), ("flow", LatentFlow)]
)
def test_build_each_kind(kind, cls):
    model = build_model(kind, None)
    assert isinstance(model, cls) and model_kind(model) == kind
    assert build_model(kind, model.config.to_dict()).config == model.config


def test_errors():
    with pytest.raises(CosmobenchError, match="model kind must be one of cnn, bnn, vae, flow"):
        build_model("gan", {})
    with pytest.raises(CosmobenchError, match="bayesian=False"):
        build_model("cnn", {"bayesian": True})
    with pytest.raises(CosmobenchError, match="no field"):
        build_model("vae", {"latent_dim": 16})
    with pytest.raises(TypeError):
        model_kind(torch.nn.Linear(2, 2))


def test_count_parameters_counts_batchnorm_stats_like_keras():
    m = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Linear(2, 2))
    assert count_parameters(m, keras=False) == 6 + 6
    assert count_parameters(m) == 6 + 6 + 6
