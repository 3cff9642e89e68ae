r"""Variational (Bayesian) convolution and dense layers, written in-house.

These reproduce TensorFlow Probability's ``Convolution2DReparameterization`` /
``DenseReparameterization`` (and the ``...Flipout`` variants) as used by the Bayesian CNN of
Arcelin (2021):

* mean-field normal posterior on the kernel, :math:`q(w) = \mathcal N(\mu, \sigma^2)` with
  :math:`\sigma = \mathrm{softplus}(\rho)`; a point-estimate (non-random) bias;
* kernel mean initialised He-normal (Keras ``he_normal``: truncated normal, std
  :math:`\sqrt{2/\mathrm{fan\_in}}`), :math:`\rho \sim \mathcal N(-9, 0.1)` so that the
  posterior starts nearly deterministic (:math:`\sigma \approx 10^{-4}`); bias zero;
* prior :math:`p(w) = \mathcal N(0, 1)`; the KL divergence in closed form,
  :math:`\mathrm{KL}(q\Vert p) = \sum \log\frac{s_p}{\sigma} + \frac{\sigma^2 + \mu^2}{2 s_p^2}
  - \frac12`;
* one weight sample per forward pass with the reparameterisation trick
  :math:`w = \mu + \sigma\varepsilon` (Kingma & Welling 2014; Blundell et al. 2015), or
  Flipout (Wen et al. 2018, arXiv:1803.04386), which decorrelates the examples of a batch by
  random sign flips: :math:`y = x \star \mu + ((x \circ s_\mathrm{in}) \star \Delta w) \circ
  s_\mathrm{out}` with :math:`\Delta w = \sigma\varepsilon`.

Why in-house: the PyTorch packages that offer such layers (bayesian-torch,
torch-uncertainty) depend on torchvision, which breaks the CPU build of torch on the
machines this project targets (``docs/models.md``); the layers are ~150 lines and their KL is tested
against ``torch.distributions.kl_divergence``.

All noise is drawn with torch ops on the layer's device (``torch.randn_like``,
``torch.rand``): no Python RNG, no host synchronisation, no data-dependent branching, so a
whole training step (noise included) can be captured in a CUDA graph or ``torch.compile``'d.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cosmobench.models.layers import kernel_format, same_conv2d

__all__ = ["VariationalConv2d", "VariationalLinear", "VariationalLayer", "normal_kl"]

# Keras ``he_normal`` is a normal truncated at two standard deviations, rescaled by this
# factor so that the truncated distribution keeps the target variance.
_TRUNC_STD_CORRECTION = 0.87962566103423978


def normal_kl(mu: Tensor, sigma: Tensor, prior_std: float = 1.0) -> Tensor:
    """Sum over elements of KL(N(mu, sigma²) ‖ N(0, prior_std²)), in nats."""
    return (
        math.log(prior_std)
        - sigma.log()
        + (sigma.square() + mu.square()) / (2.0 * prior_std**2)
        - 0.5
    ).sum()


def _flat(t: Tensor) -> Tensor:
    """``t`` as a 1-d view in memory order (a copy only for a layout with gaps): a sum over
    all elements does not care about their order, and a channels-last kernel
    (:mod:`cosmobench.models.layout`) would be copied by ``flatten``."""
    if kernel_format(t) == torch.channels_last:
        return t.permute(0, 2, 3, 1).reshape(-1)
    return t.reshape(-1)


def _randn_like(t: Tensor) -> Tensor:
    """Standard normal noise shaped and laid out like ``t``: the numbers ``torch.randn_like``
    draws for a contiguous ``t``, whatever ``t``'s layout. ATen's vectorised sampler only
    fills contiguous tensors (in a profile of the BNN step, filling channels-last kernels
    element by element cost several times more per number), and drawing in one order keeps
    a channels-last kernel's noise (and so the training run) the same as an NCHW one's."""
    eps = torch.randn(t.shape, dtype=t.dtype, device=t.device)
    return eps.contiguous(memory_format=kernel_format(t))  # no-op for a contiguous kernel


class _SampleKL(torch.autograd.Function):
    r"""One weight sample and the layer's KL in one pass over ``(μ, ρ)``, with the gradients
    written out by hand.

    Forward: :math:`\sigma = \mathrm{softplus}(\rho)`, :math:`w = [\mu +]\, \sigma
    \varepsilon`, and :math:`\mathrm{KL} = n(\log s_p - \tfrac12) - \sum\log\sigma +
    (\sigma\cdot\sigma + \mu\cdot\mu) / 2s_p^2` (two dot products instead of an
    element-wise expression). Backward, for :math:`(g_w, g_\mathrm{KL})`:
    :math:`\partial\mu = [g_w +]\, g_\mathrm{KL}\,\mu/s_p^2` and
    :math:`\partial\rho = (g_w\varepsilon + g_\mathrm{KL}(\sigma/s_p^2 - 1/\sigma))\,
    \mathrm{sigmoid}(\rho)`. The same numbers as autograd through :meth:`VariationalLayer.kl`
    and :meth:`VariationalLayer.sample_weight`, in about half the kernels (a BNN step runs it
    for 9 layers of 1.2 M weights).
    """

    @staticmethod
    def forward(
        ctx: Any, mu: Tensor, rho: Tensor, eps: Tensor, prior_std: float, add_mean: bool
    ) -> tuple[Tensor, Tensor]:
        sigma = F.softplus(rho)
        w = torch.addcmul(mu, sigma, eps) if add_mean else sigma * eps
        var = 1.0 / prior_std**2
        kl = torch.dot(_flat(sigma), _flat(sigma)) + torch.dot(_flat(mu), _flat(mu))
        kl = kl * (0.5 * var) - sigma.log().sum() + mu.numel() * (math.log(prior_std) - 0.5)
        ctx.save_for_backward(mu, rho, sigma, eps)
        ctx.var, ctx.add_mean = var, add_mean
        return w, kl

    @staticmethod
    def backward(ctx: Any, grad_w: Tensor | None, grad_kl: Tensor | None) -> tuple:
        mu, rho, sigma, eps = ctx.saved_tensors
        g_mu = g_rho = None
        if grad_w is not None and grad_w.stride() != eps.stride():
            # a convolution hands back its kernel's gradient NCHW even for a channels-last
            # kernel (cosmobench.models.layout): one copy into the kernel's layout, and the
            # element-wise passes below each walk a single layout
            grad_w = torch.empty_like(eps).copy_(grad_w)
        if grad_kl is None:
            grad_kl = mu.new_zeros(())
        g_sigma = (sigma * ctx.var - sigma.reciprocal()).mul_(grad_kl)
        if grad_w is not None:
            g_sigma.addcmul_(grad_w, eps)
        if ctx.needs_input_grad[0]:
            g_mu = mu * (grad_kl * ctx.var)
            if grad_w is not None and ctx.add_mean:
                g_mu.add_(grad_w)
        if ctx.needs_input_grad[1]:
            g_rho = g_sigma.mul_(torch.sigmoid(rho))
        return g_mu, g_rho, None, None, None


def _rademacher(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Random ±1 of ``shape`` on ``like``'s device and dtype (torch RNG only)."""
    return (torch.rand(shape, device=like.device) < 0.5).to(like.dtype) * 2.0 - 1.0


class VariationalLayer(nn.Module):
    """Shared parts: the kernel posterior (``weight_mu``, ``weight_rho``), bias, KL, sampling.

    Arguments:
        weight_shape: Kernel shape (PyTorch layout).
        fan_in: Fan-in for the He-normal initialisation of the kernel mean.
        bias_size: Length of the point-estimate bias.
        prior_std: Standard deviation of the N(0, prior_std²) prior.
        rho_init: (mean, std) of the normal that initialises ρ.
        flipout: Use Flipout instead of a single shared weight sample.
    """

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        fan_in: int,
        bias_size: int,
        *,
        prior_std: float = 1.0,
        rho_init: tuple[float, float] = (-9.0, 0.1),
        flipout: bool = False,
    ) -> None:
        super().__init__()
        self.prior_std = float(prior_std)
        self.rho_init = (float(rho_init[0]), float(rho_init[1]))
        self.flipout = bool(flipout)
        self.fan_in = fan_in
        self.weight_mu = nn.Parameter(torch.empty(weight_shape))
        self.weight_rho = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.zeros(bias_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal kernel mean, ρ ~ N(rho_init), zero bias (``docs/models.md``)."""
        std = math.sqrt(2.0 / self.fan_in) / _TRUNC_STD_CORRECTION
        nn.init.trunc_normal_(self.weight_mu, 0.0, std, -2.0 * std, 2.0 * std)
        nn.init.normal_(self.weight_rho, *self.rho_init)
        nn.init.zeros_(self.bias)

    @property
    def weight_sigma(self) -> Tensor:
        """Posterior standard deviation softplus(ρ), same shape as the kernel."""
        return F.softplus(self.weight_rho)

    def kl(self) -> Tensor:
        """KL(q(w) ‖ p(w)) summed over the kernel (the bias is a point estimate).

        After a forward pass with gradients on, this is the KL computed in the same pass
        (same value, gradients into the same graph), as long as μ and ρ are unchanged."""
        cache = getattr(self, "_kl_cache", None)
        if cache is not None and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            kl, v_mu, v_rho = cache
            self._kl_cache = None  # used once: a second call recomputes
            if v_mu == self.weight_mu._version and v_rho == self.weight_rho._version:
                return kl
        return normal_kl(self.weight_mu, self.weight_sigma, self.prior_std)

    def sample_weight(self) -> Tensor:
        """One kernel sample μ + σ ε (reparameterised, differentiable in μ and ρ)."""
        return self.weight_mu + self.weight_sigma * _randn_like(self.weight_mu)

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def _sample(self, add_mean: bool) -> Tensor:
        """``μ + σε`` (or ``σε`` for Flipout). While training with gradients on, the KL of the
        same ``(μ, ρ)`` comes out of the same pass (:class:`_SampleKL`) and is kept for
        :meth:`kl` until the parameters change."""
        mu, rho = self.weight_mu, self.weight_rho
        eps = _randn_like(mu)
        if torch.compiler.is_compiling() or not (
            torch.is_grad_enabled() and (mu.requires_grad or rho.requires_grad)
        ):  # no gradient (prediction), or a compiler that fuses the plain expression itself
            self._kl_cache = None
            sigma = F.softplus(rho)
            return torch.addcmul(mu, sigma, eps) if add_mean else sigma * eps
        w, kl = _SampleKL.apply(mu, rho, eps, self.prior_std, add_mean)
        self._kl_cache = (kl, mu._version, rho._version)
        return w

    def forward(self, x: Tensor) -> Tensor:
        if not self.flipout:
            return self._op(x, self._sample(True), self.bias)
        delta = self._sample(False)  # ΔW = w − μ = σε
        mean = self._op(x, self.weight_mu, self.bias)
        s_in = _rademacher((x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2), x)  # (B, C_in, 1, 1)
        s_out = _rademacher((mean.shape[0], mean.shape[1]) + (1,) * (mean.dim() - 2), mean)
        return mean + self._op(x * s_in, delta, None) * s_out

    def __getstate__(self) -> dict:
        """Copies and pickles leave the KL of the last forward pass (a graph node) behind."""
        return {**self.__dict__, "_kl_cache": None}

    def extra_repr(self) -> str:
        mode = "flipout" if self.flipout else "reparameterization"
        return f"{mode}, prior=N(0, {self.prior_std:g}²), rho_init=N{self.rho_init}"


class VariationalConv2d(VariationalLayer):
    """Bayesian ``Conv2D(padding='same')`` (TFP ``Convolution2DReparameterization``/``Flipout``).

    Arguments:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Stride, with TensorFlow's 'same' padding.
        **kwargs: ``prior_std``, ``rho_init``, ``flipout`` (see :class:`VariationalLayer`).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, **kwargs
    ) -> None:
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        super().__init__(shape, in_channels * kernel_size**2, out_channels, **kwargs)

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return same_conv2d(x, weight, bias, self.stride)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, " + super().extra_repr()
        )


class VariationalLinear(VariationalLayer):
    """Bayesian ``Dense`` (TFP ``DenseReparameterization``/``DenseFlipout``).

    Arguments:
        in_features: Input features.
        out_features: Output features.
        **kwargs: ``prior_std``, ``rho_init``, ``flipout`` (see :class:`VariationalLayer`).
    """

    def __init__(self, in_features: int, out_features: int, **kwargs) -> None:
        self.in_features, self.out_features = in_features, out_features
        super().__init__((out_features, in_features), in_features, out_features, **kwargs)

    def _op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, " + super().extra_repr()
