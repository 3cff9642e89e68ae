r"""The shape-estimation networks of Arcelin (2021): the deterministic CNN and its Bayesian twin.

Architecture (Arcelin 2021, §3; ``docs/models.md``), input ``(B, 6, 64, 64)``::

    BatchNorm(6)
    for f in 32, 64, 128, 256:
        Conv 3×3 'same' (f) → PReLU ; Conv 3×3 'same' stride 2 (f) → PReLU
    Flatten (256·4·4 = 4096) → Dense(4096 → T + T(T+1)/2)
    → multivariate normal over the T targets (TFP MultivariateNormalTriL)

1,517,217 parameters for T = 3 (e1, e2, z) counting BatchNorm's running mean and variance as
Keras does (1,500,829 for T = 2). The Bayesian network is the *same* network with every
convolution and the dense layer swapped for a variational layer
(:mod:`cosmobench.models.variational`): 2,726,241 parameters.

Loss: :math:`\mathcal L = -\frac1B\sum_b \log p(y_b\mid x_b) + \mathrm{KL}(q\Vert p)/N`
(N the training-set size), the negative ELBO per training example (Blundell et al. 2015,
arXiv:1505.05424). Note: the paper's public code computed the KL term but, by accident, did
not add it to the loss on GPU and weighted it 0.5 on IPU (its eq. 2 writes the plain sum);
we use the real ELBO.

Prediction mixes S weight samples (for the deterministic CNN, S = 1): the mixture mean, and
its covariance = mean of the per-sample covariances (aleatoric) + covariance of the
per-sample means (epistemic).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_choice, check_positive
from cosmobench.models.layers import SameConv2d, halve, keras_batchnorm, keras_linear, make_prelu
from cosmobench.models.mvn import MVNTriLHead, mvn_params_size, mvn_tril_log_prob
from cosmobench.models.variational import VariationalConv2d, VariationalLayer, VariationalLinear

__all__ = ["ShapeConfig", "ShapeNet", "ShapePrediction", "TARGET_COLUMNS", "conv_trunk"]

#: Target names the shape networks accept, and the data-set column each one reads.
TARGET_COLUMNS: dict[str, str] = {"e1": "e1", "e2": "e2", "z": "redshift"}
PRELU_KINDS = ("element", "channel")


@dataclass(frozen=True)
class ShapeConfig(Config):
    """Configuration of :class:`ShapeNet` (defaults: the paper's deterministic CNN).

    Attributes:
        targets: Predicted quantities, a subset of ``e1, e2, z`` (z = redshift), in order.
        bayesian: Variational convolutions and dense layer (the paper's BNN).
        prelu: ``"element"`` (Keras default, one slope per element) or ``"channel"``.
        flipout: Flipout estimator in the variational layers instead of one shared sample.
        in_channels: Input bands (6: LSST ugrizy).
        image_size: Input stamp size in pixels (64); must survive the stride-2 halvings.
        filters: Filters of the four conv blocks (two convolutions each).
        prior_std: Standard deviation of the N(0, prior_std²) weight prior (BNN).
        rho_init: (mean, std) of the normal initialising ρ, σ = softplus(ρ) (BNN).
    """

    targets: tuple[str, ...] = ("e1", "e2", "z")
    bayesian: bool = False
    prelu: str = "element"
    flipout: bool = False
    in_channels: int = 6
    image_size: int = 64
    filters: tuple[int, ...] = (32, 64, 128, 256)
    prior_std: float = 1.0
    rho_init: tuple[float, float] = (-9.0, 0.1)

    def __post_init__(self) -> None:
        if not self.targets:
            raise CosmobenchError(
                f"targets must be a non-empty subset of {', '.join(TARGET_COLUMNS)}"
            )
        for t in self.targets:
            check_choice("target", t, TARGET_COLUMNS)
        if len(set(self.targets)) != len(self.targets):
            raise CosmobenchError(f"targets must not repeat; got {', '.join(self.targets)}")
        check_choice("prelu", self.prelu, PRELU_KINDS)
        check_positive("in_channels", self.in_channels)
        check_positive("image_size", self.image_size)
        if not self.filters or any(f <= 0 for f in self.filters):
            raise CosmobenchError(f"filters must be positive integers; got {self.filters}")
        check_positive("prior_std", self.prior_std)
        if len(self.rho_init) != 2 or self.rho_init[1] < 0:
            raise CosmobenchError(f"rho_init must be (mean, std >= 0); got {self.rho_init}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Data-set columns holding the targets (``z`` is the ``redshift`` column)."""
        return tuple(TARGET_COLUMNS[t] for t in self.targets)


@dataclass
class ShapePrediction:
    """Predictive normal of a shape network over its targets, for a batch of B galaxies.

    Attributes:
        mean: ``(B, T)`` mixture mean.
        cov: ``(B, T, T)`` total covariance = aleatoric + epistemic.
        aleatoric: ``(B, T, T)`` mean over weight samples of the predicted covariances.
        epistemic: ``(B, T, T)`` covariance over weight samples of the predicted means
            (zero for the deterministic network).
    """

    mean: Tensor
    cov: Tensor
    aleatoric: Tensor
    epistemic: Tensor

    def __post_init__(self) -> None:
        b, t = self.mean.shape
        for name in ("cov", "aleatoric", "epistemic"):
            if tuple(getattr(self, name).shape) != (b, t, t):
                raise ValueError(f"ShapePrediction.{name} must have shape {(b, t, t)}")

    @property
    def std(self) -> Tensor:
        """``(B, T)`` marginal standard deviations."""
        return torch.diagonal(self.cov, dim1=-2, dim2=-1).sqrt()

    def to(self, *args, **kwargs) -> ShapePrediction:
        """Move every tensor (e.g. ``.to("cpu")``)."""
        return ShapePrediction(
            *(getattr(self, f.name).to(*args, **kwargs) for f in dataclasses.fields(self))
        )


def conv_trunk(
    in_channels: int,
    image_size: int,
    filters: tuple[int, ...],
    prelu: str,
    conv: Callable[[int, int, int], nn.Module],
) -> tuple[nn.Sequential, int]:
    """The paper's BatchNorm + 8-convolution PReLU stack, shared by the CNN, BNN and VAE.

    Arguments:
        in_channels: Input bands.
        image_size: Input stamp size (pixels).
        filters: Filters per block; each block is a 'same' conv then a stride-2 'same' conv.
        prelu: PReLU kind (see :func:`~cosmobench.models.layers.make_prelu`).
        conv: Factory ``conv(c_in, c_out, stride)``: a deterministic or variational layer.

    Returns:
        The stack and its flattened output size (4096 for the paper's settings).
    """
    layers: list[nn.Module] = [keras_batchnorm(in_channels)]
    c, size = in_channels, image_size
    for f in filters:
        layers += [conv(c, f, 1), make_prelu(prelu, f, size)]  # (B, f, size, size)
        size = halve(size)
        layers += [conv(f, f, 2), make_prelu(prelu, f, size)]  # (B, f, size/2, size/2)
        c = f
    return nn.Sequential(*layers), c * size * size


class ShapeNet(nn.Module):
    """The shape CNN (``bayesian=False``) or BNN (``bayesian=True``) of Arcelin (2021).

    Arguments:
        config: A :class:`ShapeConfig`; ``ShapeConfig()`` is the paper's CNN over (e1, e2, z).

    Example:
        >>> net = ShapeNet(ShapeConfig(targets=("e1", "e2")))
        >>> loc, scale_tril = net(torch.zeros(4, 6, 64, 64))
        >>> tuple(loc.shape), tuple(scale_tril.shape)
        ((4, 2), (4, 2, 2))
    """

    def __init__(self, config: ShapeConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else ShapeConfig()
        self.config = cfg
        t = len(cfg.targets)
        if cfg.bayesian:
            kw = {"prior_std": cfg.prior_std, "rho_init": cfg.rho_init, "flipout": cfg.flipout}
            conv = lambda ci, co, s: VariationalConv2d(ci, co, 3, s, **kw)  # noqa: E731
            dense = lambda fi, fo: VariationalLinear(fi, fo, **kw)  # noqa: E731
        else:
            conv = lambda ci, co, s: SameConv2d(ci, co, 3, s)  # noqa: E731
            dense = keras_linear
        self.features, flat = conv_trunk(
            cfg.in_channels, cfg.image_size, cfg.filters, cfg.prelu, conv
        )
        self.dense = dense(flat, mvn_params_size(t))
        self.head = MVNTriLHead(t)
        # the variational layers, found once (static: no module walk in the hot path)
        self._variational = [m for m in self.modules() if isinstance(m, VariationalLayer)]

    @property
    def targets(self) -> tuple[str, ...]:
        return self.config.targets

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, C, H, W)`` → ``(loc (B, T), scale_tril (B, T, T))``; one weight sample (BNN)."""
        h = self.features(x).flatten(1)  # (B, 4096)
        return self.head(self.dense(h))

    def log_prob(self, x: Tensor, y: Tensor) -> Tensor:
        """``(B,)`` log-density of targets ``y (B, T)`` under the predicted normal."""
        loc, scale_tril = self(x)
        # the head's few numbers in float32 even under bf16 autocast (cheap; keeps the NLL exact)
        return mvn_tril_log_prob(y.float(), loc.float(), scale_tril.float())

    def kl(self) -> Tensor:
        """KL(q ‖ p) summed over all variational layers (a zero tensor for the CNN)."""
        if not self._variational:
            return self.dense.weight.new_zeros(())
        return torch.stack([m.kl() for m in self._variational]).sum()

    def loss(self, x: Tensor, y: Tensor, n_train: int | None = None) -> Tensor:
        """Mean negative log-likelihood, plus KL / n_train for the BNN (the negative ELBO).

        Arguments:
            x: Images ``(B, C, H, W)``.
            y: Targets ``(B, T)`` in the order of ``config.targets``.
            n_train: Training-set size (required for the BNN; ignored by the CNN).
        """
        nll = -self.log_prob(x, y).mean()
        if not self.config.bayesian:
            return nll
        if n_train is None or n_train <= 0:
            raise ValueError(
                "the Bayesian network's loss needs n_train > 0 (the training-set size)"
            )
        return nll + self.kl() / n_train

    @torch.no_grad()
    def predict(self, x: Tensor, samples: int = 1) -> ShapePrediction:
        """Predictive mixture over ``samples`` weight samples (1 for the deterministic CNN).

        Mixture of S equal-weight normals: mean :math:`\\bar\\mu = \\frac1S\\sum_s \\mu_s`,
        covariance :math:`\\frac1S\\sum_s \\Sigma_s` (aleatoric) +
        :math:`\\frac1S\\sum_s (\\mu_s - \\bar\\mu)(\\mu_s - \\bar\\mu)^\\top` (epistemic).

        Arguments:
            x: Images ``(B, C, H, W)``.
            samples: Number of weight samples S (ignored, i.e. 1, for the CNN).
        """
        s = max(int(samples), 1) if self.config.bayesian else 1
        locs, covs = [], []
        for _ in range(s):  # one weight sample per pass: passes cannot share a batch
            loc, tril = self(x)
            locs.append(loc.float())
            covs.append((tril @ tril.transpose(-1, -2)).float())
        mu = torch.stack(locs)  # (S, B, T)
        mean = mu.mean(0)
        aleatoric = torch.stack(covs).mean(0)
        d = mu - mean
        epistemic = torch.einsum("sbi,sbj->bij", d, d) / s
        return ShapePrediction(mean, aleatoric + epistemic, aleatoric, epistemic)
