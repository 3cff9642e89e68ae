"""Input scaling of the shape networks: a per-band arcsinh stretch at the noise level.

The paper fed electron counts straight into a BatchNorm. Counts span four orders of
magnitude (sky-subtracted noise of ~30 e⁻ in u to galaxy cores of 10⁵ e⁻ in z), and a
per-channel affine BatchNorm cannot compress that range: a few bright galaxies dominate the
batch statistics and the faint ones, most of the sample, reach the first convolution as
numbers near zero. We therefore feed ``asinh(x / sigma_b)``, where ``sigma_b`` is the
background noise of band ``b`` estimated on the training split: noise is mapped linearly to
unit scale, bright cores logarithmically — the arcsinh magnitude idea of Lupton, Gunn &
Szalay (1999, AJ 118, 1406). The BatchNorm stays as the paper's first layer. The scales are
stored with the model (``model.pt["input_scaling"]``) and :func:`cosmobench.train.load_run`
returns a model that applies them, so callers always pass counts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cosmobench.errors import CosmobenchError

__all__ = ["ArcsinhScaler", "ScaledShapeNet", "scaler_from_dict"]

#: Width in pixels of the stamp border used to estimate the background noise.
BORDER = 4
#: Median absolute deviation to standard deviation for a normal distribution.
MAD_TO_SIGMA = 1.4826


class ArcsinhScaler(nn.Module):
    """``x -> asinh(x / sigma_b)`` per band; ``sigma_b`` is a buffer saved with the model.

    Arguments:
        scale: per-band softening ``sigma_b`` in electrons, shape ``(C,)``, all > 0.
    """

    def __init__(self, scale: Tensor) -> None:
        super().__init__()
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        if not bool(torch.all(torch.isfinite(scale) & (scale > 0))):
            raise CosmobenchError(f"arcsinh input scales must be finite and > 0; got "
                                  f"{scale.tolist()}")
        self.register_buffer("scale", scale)

    @classmethod
    def fit(cls, images: Tensor, *, chunk: int = 1024) -> ArcsinhScaler:
        """Estimate each band's background noise from the stamps' borders.

        ``sigma_b`` = median over images of 1.4826 × the median absolute deviation of the
        ``BORDER``-pixel frame of the stamp (mostly sky for isolated galaxies). For
        noiseless images the noise is zero; the scale then falls back to 10⁻³ of the band's
        mean peak, so the stretch stays finite.

        Arguments:
            images: ``(N, C, H, W)`` counts (the training split).
            chunk: images processed at once (bounds the temporary memory).
        """
        per_image, peaks = [], []
        for start in range(0, len(images), chunk):
            x = images[start : start + chunk].float()
            frame = torch.cat(
                [x[..., :BORDER, :].flatten(2), x[..., -BORDER:, :].flatten(2),
                 x[..., BORDER:-BORDER, :BORDER].flatten(2),
                 x[..., BORDER:-BORDER, -BORDER:].flatten(2)], dim=2)  # (n, C, P)
            med = frame.median(dim=2, keepdim=True).values
            per_image.append((frame - med).abs().median(dim=2).values * MAD_TO_SIGMA)
            peaks.append(x.flatten(2).amax(dim=2))
        sigma = torch.cat(per_image).median(dim=0).values  # (C,)
        peak = torch.cat(peaks).mean(dim=0)
        floor = torch.clamp(1e-3 * peak, min=1e-6)
        return cls(torch.where(sigma > 0, sigma, floor).cpu())

    def forward(self, x: Tensor) -> Tensor:
        """Scale counts ``(B, C, H, W)`` -> stretched images of the same shape."""
        return torch.asinh(x / self.scale.view(1, -1, 1, 1))

    def to_dict(self) -> dict[str, Any]:
        """What ``model.pt`` stores: ``{"kind": "arcsinh", "scale": [...]}``."""
        return {"kind": "arcsinh", "scale": [float(s) for s in self.scale]}


def scaler_from_dict(d: dict[str, Any] | None) -> ArcsinhScaler | None:
    """Rebuild the scaler stored in ``model.pt`` (``None`` or ``{"kind": "none"}`` -> None)."""
    if d is None or d.get("kind") == "none":
        return None
    if d.get("kind") != "arcsinh":
        raise CosmobenchError(f"input scaling must be one of arcsinh, none; got {d.get('kind')!r}")
    return ArcsinhScaler(torch.tensor(d["scale"], dtype=torch.float32))


class ScaledShapeNet(nn.Module):
    """A trained shape network that takes counts: the scaler, then the network.

    ``forward``, ``loss`` and ``predict`` scale their image argument first; everything else
    (``config``, ``kl``, ``targets`` ...) is the wrapped network's.

    Arguments:
        net: a ``cosmobench.models.ShapeNet``.
        scaler: the input scaler it was trained with.
    """

    def __init__(self, net: nn.Module, scaler: ArcsinhScaler) -> None:
        super().__init__()
        self.net = net
        self.scaler = scaler

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)

    def forward(self, x: Tensor) -> Any:
        """The network's output for counts ``x`` ``(B, C, H, W)``."""
        return self.net(self.scaler(x))

    def loss(self, x: Tensor, y: Tensor, n_train: int) -> Tensor:
        """The network's loss for counts ``x``."""
        return self.net.loss(self.scaler(x), y, n_train)

    def predict(self, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        """The network's prediction for counts ``x``."""
        return self.net.predict(self.scaler(x), *args, **kwargs)
