r"""The latent-space normalizing flow of Arcelin (2021): a masked autoregressive flow (zuko).

A MAF (Papamakarios et al. 2017, arXiv:1705.07057) of 8 MADE transforms (Germain et al. 2015,
arXiv:1502.03509), each an affine autoregressive map with a masked MLP of hidden layers
(256, 256), the variable order reversed between consecutive transforms, and a standard
normal base, fitted by maximum likelihood to the VAE encoder means (32-d):

.. math:: \log p(z) = \log \mathcal N(f(z); 0, I) + \log\lvert\det J_f(z)\rvert.

Density evaluation is one pass per transform; sampling inverts each transform with 32
sequential passes (the slow part of generation). :class:`LatentFlow` is a thin wrapper: the
zuko module is ``.flow`` (``flow.flow()`` gives the ``torch.distributions`` object), so a
faster sampler can work on it directly (``cosmobench.generate.sampler``).
"""

from __future__ import annotations

from dataclasses import dataclass

import zuko
from torch import Tensor, nn

from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_positive

__all__ = ["FlowConfig", "LatentFlow"]


@dataclass(frozen=True)
class FlowConfig(Config):
    """Configuration of :class:`LatentFlow` (defaults: the paper's).

    Attributes:
        features: Dimension of the latent space (the VAE's ``latent``, 32).
        transforms: Number of MADE transforms (8).
        hidden: Hidden layer widths of each MADE (256, 256).
    """

    features: int = 32
    transforms: int = 8
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        if self.features < 2:
            raise CosmobenchError(
                f"features must be >= 2 for an autoregressive flow; got {self.features}"
            )
        check_positive("transforms", self.transforms)
        if not self.hidden or any(h <= 0 for h in self.hidden):
            raise CosmobenchError(f"hidden must be positive integers; got {self.hidden}")


class LatentFlow(nn.Module):
    """MAF over the VAE latent space.

    Arguments:
        config: A :class:`FlowConfig`; ``FlowConfig()`` is the paper's flow.

    Example:
        >>> flow = LatentFlow(FlowConfig(features=4, transforms=2, hidden=(16,)))
        >>> z = flow.sample(3)
        >>> tuple(z.shape), tuple(flow.log_prob(z).shape)
        ((3, 4), (3,))
    """

    def __init__(self, config: FlowConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else FlowConfig()
        self.config = cfg
        # randperm=False: zuko orders transform i ascending for even i, descending for odd i,
        # i.e. the order is reversed between consecutive transforms (as the paper's flow).
        self.flow = zuko.flows.MAF(
            cfg.features,
            transforms=cfg.transforms,
            hidden_features=tuple(cfg.hidden),
            randperm=False,
        )

    def log_prob(self, z: Tensor) -> Tensor:
        """``(B,)`` log-density of latents ``z (B, features)``."""
        return self.flow().log_prob(z)

    def forward(self, z: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(z)

    def sample(self, n: int) -> Tensor:
        """``(n, features)`` latents drawn from the flow (standard zuko sampling)."""
        return self.flow().sample((int(n),))

    def loss(self, z: Tensor, y: Tensor | None = None, n_train: int | None = None) -> Tensor:
        """Mean negative log-likelihood of ``z``; ``y`` and ``n_train`` are ignored.

        The uniform ``loss(x, y, n_train)`` signature lets the one training step serve all
        models (``step(z, None)``).
        """
        return -self.log_prob(z).mean()

    def orders(self) -> list[list[int]]:
        """The variable order of each transform (for checks; reversed between transforms)."""
        return [t.order.tolist() for t in self.flow.transform.transforms]

    def to_latent_noise(self, z: Tensor) -> Tensor:
        """Forward transform f(z): latents → base-space noise (fast, one pass per transform)."""
        return self.flow().transform(z)

    def from_latent_noise(self, u: Tensor) -> Tensor:
        """Inverse transform f⁻¹(u): base-space noise → latents (sequential, slow)."""
        return self.flow().transform.inv(u)

    def extra_repr(self) -> str:
        c = self.config
        return f"features={c.features}, transforms={c.transforms}, hidden={tuple(c.hidden)}"
