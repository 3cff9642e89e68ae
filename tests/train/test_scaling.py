"""The shape networks' input scaling: arcsinh at the noise level, stored and applied."""

from __future__ import annotations

import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.models import build_model
from cosmobench.train.scaling import ArcsinhScaler, ScaledShapeNet, scaler_from_dict


def test_fit_recovers_each_bands_noise_level():
    g = torch.Generator().manual_seed(0)
    sigma = torch.tensor([30.0, 110.0, 255.0, 305.0, 355.0, 380.0])
    noise = torch.randn(64, 6, 32, 32, generator=g) * sigma.view(1, 6, 1, 1)
    galaxy = torch.zeros(1, 1, 32, 32)
    galaxy[..., 10:22, 10:22] = 5e4  # bright centre, away from the border
    scaler = ArcsinhScaler.fit(noise + galaxy)
    assert torch.allclose(scaler.scale, sigma, rtol=0.05)


def test_noiseless_images_fall_back_to_a_finite_scale():
    x = torch.zeros(4, 6, 16, 16)
    x[..., 6:10, 6:10] = 100.0
    scaler = ArcsinhScaler.fit(x)
    assert torch.allclose(scaler.scale, torch.full((6,), 0.1))


def test_forward_round_trip_and_errors():
    scaler = ArcsinhScaler(torch.arange(1.0, 7.0))
    x = torch.randn(2, 6, 4, 4) * 100
    assert torch.allclose(scaler(x), torch.asinh(x / torch.arange(1.0, 7.0).view(1, 6, 1, 1)))
    again = scaler_from_dict(scaler.to_dict())
    assert torch.equal(again.scale, scaler.scale)
    assert scaler_from_dict({"kind": "none"}) is None
    with pytest.raises(CosmobenchError, match="finite and > 0"):
        ArcsinhScaler(torch.tensor([1.0, 0.0]))
    with pytest.raises(CosmobenchError, match="input scaling must be one of arcsinh, none"):
        scaler_from_dict({"kind": "log"})


def test_scaled_network_takes_counts():
    torch.manual_seed(0)
    net = build_model("bnn", {"image_size": 16, "filters": [4, 8]})
    scaler = ArcsinhScaler(torch.full((6,), 50.0))
    wrapped = ScaledShapeNet(net, scaler).eval()
    x, y = torch.rand(3, 6, 16, 16) * 1e4, torch.zeros(3, 3)
    torch.manual_seed(1)
    a = wrapped.predict(x, samples=4)
    torch.manual_seed(1)
    b = net.predict(scaler(x), samples=4)
    assert torch.equal(a.mean, b.mean) and torch.equal(a.cov, b.cov)
    torch.manual_seed(2)
    la = wrapped.loss(x, y, 10)
    torch.manual_seed(2)
    assert torch.equal(la, net.loss(scaler(x), y, 10))
    assert wrapped.config is net.config and wrapped.targets == ("e1", "e2", "z")
    assert torch.equal(wrapped.kl(), net.kl())
