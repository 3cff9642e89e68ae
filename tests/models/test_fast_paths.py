"""The fast paths of a training step against the textbook ones they replace: the per-element
PReLU's fused kernel and hand-written backward, the variational layers' fused sample + KL,
and fused Adam. Same initial weights, batch and seeds -> the same loss and updated weights to
floating-point tolerance."""

from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn.functional as F

from cosmobench.models import ShapeConfig, ShapeNet
from cosmobench.models.layers import ElementPReLU, element_prelu, element_prelu_reference
from cosmobench.models.variational import VariationalLayer, _SampleKL, normal_kl
from cosmobench.train import make_optimizer, make_train_step


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("shape", [(3, 4, 4), (7,)])
def test_element_prelu_matches_where_and_its_gradients(batch, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=g, dtype=torch.float64)
    w = torch.rand(shape, generator=g, dtype=torch.float64) - 0.3
    grad = torch.randn(batch, *shape, generator=g, dtype=torch.float64)
    outs = []
    for fn in (element_prelu, element_prelu_reference):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = fn(xi, wi)
        y.backward(grad)
        outs.append((y.detach(), xi.grad, wi.grad))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(element_prelu, (x[:1].requires_grad_(), w.requires_grad_()))


def test_element_prelu_only_computes_the_gradients_asked_for():
    x = torch.randn(2, 3, requires_grad=True)
    w = torch.rand(3)  # frozen slopes: no weight gradient
    element_prelu(x, w).sum().backward()
    torch.testing.assert_close(x.grad, torch.where(x > 0, 1.0, w).expand(2, 3).detach())


def test_element_prelu_keeps_bf16_activations_bf16():
    act = ElementPReLU((4,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = act(torch.randn(2, 4, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


@pytest.mark.parametrize("add_mean", [True, False])
@pytest.mark.parametrize("prior_std", [1.0, 0.5])
def test_fused_sample_and_kl_match_autograd(add_mean, prior_std):
    g = torch.Generator().manual_seed(0)
    mu0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    rho0 = torch.randn(5, 3, generator=g, dtype=torch.float64) - 3
    eps = torch.randn(5, 3, generator=g, dtype=torch.float64)
    gw = torch.randn(5, 3, generator=g, dtype=torch.float64)
    res = []
    for fused in (True, False):
        mu, rho = mu0.clone().requires_grad_(), rho0.clone().requires_grad_()
        if fused:
            w, kl = _SampleKL.apply(mu, rho, eps, prior_std, add_mean)
        else:
            sigma = F.softplus(rho)
            w = (mu + sigma * eps) if add_mean else sigma * eps
            kl = normal_kl(mu, sigma, prior_std)
        ((w * gw).sum() + 0.7 * kl).backward()
        res.append((w.detach(), kl.detach(), mu.grad, rho.grad))
    for a, b in zip(*res, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_kl_after_forward_is_the_same_pass_and_refreshes_when_weights_change():
    torch.manual_seed(0)
    net = ShapeNet(ShapeConfig(bayesian=True, image_size=16, filters=(4, 8)))
    plain = lambda: sum(  # noqa: E731
        normal_kl(m.weight_mu, m.weight_sigma, m.prior_std) for m in net._variational
    )
    net(torch.randn(2, 6, 16, 16))
    torch.testing.assert_close(net.kl(), plain(), rtol=1e-6, atol=0)
    net(torch.randn(2, 6, 16, 16))
    with torch.no_grad():
        for m in net._variational:
            m.weight_mu.add_(0.5)  # the parameters change after the forward pass
    torch.testing.assert_close(net.kl(), plain(), rtol=1e-6, atol=0)
    copy.deepcopy(net)  # a forward pass's graph does not stop a copy


def _plain(model: ShapeNet) -> ShapeNet:
    """The same network running the textbook expressions (the paper-faithful reference)."""

    def prelu(self, x):
        return F.relu(x) - self.weight.to(x.dtype) * F.relu(-x)

    def sample(self, add_mean):
        sigma = F.softplus(self.weight_rho)
        eps = torch.randn_like(self.weight_mu)
        return self.weight_mu + sigma * eps if add_mean else sigma * eps

    def kl(self):
        return normal_kl(self.weight_mu, self.weight_sigma, self.prior_std)

    for m in model.modules():
        if isinstance(m, ElementPReLU):
            m.forward = types.MethodType(prelu, m)
        if isinstance(m, VariationalLayer):
            m._sample = types.MethodType(sample, m)
            m.kl = types.MethodType(kl, m)
    return model


@pytest.mark.parametrize("config", [{}, {"bayesian": True}, {"bayesian": True, "flipout": True}])
def test_paper_network_step_equals_the_plain_step(config):
    torch.manual_seed(0)
    fast = ShapeNet(ShapeConfig(**config)).train()
    plain = _plain(copy.deepcopy(fast))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 6, 64, 64, generator=g), 0.3 * torch.randn(2, 3, generator=g)
    step = make_train_step(fast, make_optimizer(fast), n_train=1000)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3, foreach=False, fused=False)
    torch.manual_seed(5)
    loss = step(x, y)
    torch.manual_seed(5)
    ref = plain.loss(x, y, 1000)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-5, atol=0)
    grads = {}
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        grads[name] = (q.grad.clone(), float(q.grad.abs().max()))
        # summation order differs: rounding relative to the largest term
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * grads[name][1], msg=name)
    plain_opt.step()
    # Adam moves each weight by ~lr · g / |g|: where g is rounding noise (some of the BNN's
    # near-zero slope gradients) so is the step; elsewhere the weights agree
    for (name, p), q in zip(fast.named_parameters(), plain.parameters(), strict=True):
        g, scale = grads[name]
        real = g.abs() > 1e-4 * scale
        assert real.float().mean() > 0.5, name
        torch.testing.assert_close(p[real], q[real], rtol=1e-5, atol=1e-6, msg=name)
    # a second step from the first's weights and Adam moments: the same loss
    torch.manual_seed(6)
    loss = step(x, y)
    torch.manual_seed(6)
    plain_opt.zero_grad()
    ref = plain.loss(x, y, 1000)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-4, atol=0)


def test_element_prelu_on_channels_last_activations():
    torch.manual_seed(0)
    act = ElementPReLU((3, 4, 5))
    with torch.no_grad():
        act.weight.uniform_(-0.5, 0.5)
    x = torch.randn(2, 3, 4, 5)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    y, yc = act(x), act(xc)
    torch.testing.assert_close(yc, y, rtol=0, atol=0)
    assert yc.is_contiguous(memory_format=torch.channels_last)
    yc.sum().backward()
    assert act.weight.grad.shape == (3, 4, 5) and act.weight.grad.is_contiguous()
    torch.testing.assert_close(act.weight.grad, torch.where(x > 0, 0.0, x).sum(0))
