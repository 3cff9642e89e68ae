"""Model cases shared by the contract tests: every network the package builds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch


@dataclass(frozen=True)
class Case:
    """One model configuration and how to feed it a batch."""

    name: str
    kind: str
    config: dict[str, Any]
    deterministic: bool = True

    def batch(self, model: torch.nn.Module, b: int, device: str) -> tuple[torch.Tensor, Any]:
        """An input batch and the second loss argument (targets, clean images or None)."""
        g = torch.Generator().manual_seed(1)
        if self.kind == "flow":
            return torch.randn(b, model.config.features, generator=g).to(device), None
        c, s = model.config.in_channels, model.config.image_size
        x = torch.randn(b, c, s, s, generator=g).to(device)
        if self.kind == "vae":
            return x.tanh(), torch.rand(b, c, s, s, generator=g).to(device)
        y = 0.3 * torch.randn(b, len(model.config.targets), generator=g)
        return x, y.to(device)


CASES = [
    Case("cnn", "cnn", {}),
    Case("cnn-2targets", "cnn", {"targets": ["e1", "e2"]}),
    Case("cnn-channel-prelu", "cnn", {"prelu": "channel"}),
    Case("bnn", "bnn", {}, deterministic=False),
    Case("bnn-flipout", "bnn", {"flipout": True}, deterministic=False),
    Case("vae", "vae", {}),
    Case("flow", "flow", {}),
]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    return request.param
