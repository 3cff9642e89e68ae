"""Variational layers: closed-form KL, initialisation, reparameterisation and Flipout."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from cosmobench.models import ShapeConfig, ShapeNet
from cosmobench.models.layers import same_conv2d
from cosmobench.models.variational import VariationalConv2d, VariationalLinear


@pytest.mark.parametrize("prior_std", [1.0, 0.3])
def test_kl_equals_torch_kl_divergence(prior_std):
    layer = VariationalConv2d(3, 5, 3, 2, prior_std=prior_std, rho_init=(-2.0, 0.5))
    with torch.no_grad():
        layer.weight_mu.normal_(0.0, 0.7)
    q = Normal(layer.weight_mu, torch.nn.functional.softplus(layer.weight_rho))
    p = Normal(torch.zeros_like(layer.weight_mu), prior_std)
    torch.testing.assert_close(layer.kl(), kl_divergence(q, p).sum())


def test_network_kl_is_sum_over_all_variational_kernels():
    net = ShapeNet(ShapeConfig(bayesian=True, filters=(4, 4, 8, 8)))
    ref = 0.0
    for name, p in net.named_parameters():
        if name.endswith("weight_mu"):
            rho = net.get_parameter(name.replace("weight_mu", "weight_rho"))
            ref = (
                ref
                + kl_divergence(
                    Normal(p, torch.nn.functional.softplus(rho)), Normal(0.0, 1.0)
                ).sum()
            )
    assert sum(n.endswith("weight_mu") for n, _ in net.named_parameters()) == 9  # 8 convs + dense
    torch.testing.assert_close(net.kl(), ref)
    assert ShapeNet(ShapeConfig(filters=(4, 4, 8, 8))).kl() == 0.0


def test_initialisation():
    layer = VariationalConv2d(64, 128, 3, 1)
    fan_in = 64 * 9
    mu, rho = layer.weight_mu.detach(), layer.weight_rho.detach()
    assert abs(mu.mean()) < 0.01 * math.sqrt(2 / fan_in)
    assert mu.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)  # He normal (Keras)
    assert mu.abs().max() <= 2 * math.sqrt(2 / fan_in) / 0.8796 + 1e-6  # truncated at 2σ
    assert rho.mean() == pytest.approx(-9.0, abs=0.01) and rho.std() == pytest.approx(0.1, rel=0.05)
    assert (layer.bias == 0).all() and layer.bias.shape == (128,)


def _moments(layer, x, n=4000):
    with torch.no_grad():
        out = torch.stack([layer(x) for _ in range(n)])
    return out.mean(0), out.var(0), out


@pytest.mark.parametrize("flipout", [False, True])
def test_output_distribution(flipout):
    """y = Σ w x with w ~ N(μ, σ²): mean Σ μ x, variance Σ σ² x², for both estimators."""
    torch.manual_seed(0)
    layer = VariationalLinear(6, 3, rho_init=(-1.0, 0.3), flipout=flipout)
    x = torch.randn(2, 6)
    mean, var, _ = _moments(layer, x)
    sigma = layer.weight_sigma.detach()
    exp_mean = x @ layer.weight_mu.detach().T + layer.bias.detach()
    exp_var = x.square() @ sigma.square().T
    torch.testing.assert_close(
        mean, exp_mean, atol=4 * (exp_var / 4000).sqrt().max().item(), rtol=0
    )
    torch.testing.assert_close(var, exp_var, rtol=0.1, atol=0)


def test_reparameterisation_shares_one_sample_flipout_does_not():
    torch.manual_seed(0)
    x = torch.randn(1, 6).repeat(2, 1)  # two identical examples
    shared = VariationalLinear(6, 3, rho_init=(0.0, 0.1))
    flip = VariationalLinear(6, 3, rho_init=(0.0, 0.1), flipout=True)
    out = shared(x)
    assert torch.equal(out[0], out[1])
    out = flip(x)
    assert not torch.equal(out[0], out[1])


def test_conv_flipout_mean_is_mean_kernel_conv():
    torch.manual_seed(1)
    layer = VariationalConv2d(2, 3, 3, 2, rho_init=(-1.5, 0.1), flipout=True)
    x = torch.randn(1, 2, 6, 6)
    mean, var, _ = _moments(layer, x, n=1000)
    exp = same_conv2d(x, layer.weight_mu.detach(), layer.bias.detach(), 2)
    exp_var = same_conv2d(x.square(), layer.weight_sigma.detach().square(), None, 2)
    assert mean.shape == (1, 3, 3, 3)
    torch.testing.assert_close(mean, exp, atol=5 * (exp_var / 1000).sqrt().max().item(), rtol=0)
    torch.testing.assert_close(var, exp_var, rtol=0.2, atol=0)


@pytest.mark.parametrize("flipout", [False, True])
def test_gradients_reach_mean_and_scale(flipout, device):
    layer = VariationalConv2d(2, 3, 3, 1, rho_init=(-3.0, 0.1), flipout=flipout).to(device)
    (layer(torch.randn(4, 2, 5, 5, device=device)).square().sum() + layer.kl()).backward()
    for p in (layer.weight_mu, layer.weight_rho, layer.bias):
        assert p.grad is not None and p.grad.abs().sum() > 0
