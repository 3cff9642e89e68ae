"""LatentFlow: orders, invertibility, change of variables, sampling consistent with density."""

from __future__ import annotations

import math

import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.models import FlowConfig, LatentFlow


def test_orders_reverse_between_transforms():
    orders = LatentFlow().orders()
    asc = list(range(32))
    assert len(orders) == 8
    assert orders == [asc if i % 2 == 0 else asc[::-1] for i in range(8)]


def test_inverse_of_forward_is_identity(device):
    flow = LatentFlow(FlowConfig(features=32, transforms=8, hidden=(64, 64))).to(device)
    z = torch.randn(16, 32, device=device)
    with torch.no_grad():
        u = flow.to_latent_noise(z)
        torch.testing.assert_close(flow.from_latent_noise(u), z, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(u, z, atol=1e-2)  # a non-trivial map


def test_log_prob_is_change_of_variables():
    flow = LatentFlow(FlowConfig(features=4, transforms=3, hidden=(16,))).double()
    z = torch.randn(5, 4, dtype=torch.float64)
    f = flow.to_latent_noise
    for i in range(5):
        jac = torch.autograd.functional.jacobian(f, z[i : i + 1]).reshape(4, 4)
        u = f(z[i : i + 1])[0]
        expected = -0.5 * (u.square().sum() + 4 * math.log(2 * math.pi)) + torch.logdet(jac)
        torch.testing.assert_close(flow.log_prob(z[i : i + 1])[0], expected)


def test_sampling_consistent_with_log_prob():
    """Mass of boxes from 40k samples equals the integral of exp(log_prob) over them."""
    torch.manual_seed(0)
    flow = LatentFlow(FlowConfig(features=2, transforms=3, hidden=(32, 32)))
    with torch.no_grad():
        for p in flow.flow.parameters():
            p.mul_(2.0)  # make the density clearly non-Gaussian
        z = flow.sample(40_000)
        lo, hi = z.quantile(0.001, 0).tolist(), z.quantile(0.999, 0).tolist()
        n = 300
        gx = torch.linspace(lo[0] - 1, hi[0] + 1, n)
        gy = torch.linspace(lo[1] - 1, hi[1] + 1, n)
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="ij"), -1).reshape(-1, 2)
        dens = flow.log_prob(grid).exp().reshape(n, n)
        cell = (gx[1] - gx[0]) * (gy[1] - gy[0])
        assert (dens.sum() * cell).item() == pytest.approx(1.0, abs=0.02)
        mx, my = z.median(0).values.tolist()
        for sx in (-1, 1):
            for sy in (-1, 1):
                box = ((gx - mx) * sx > 0)[:, None] & ((gy - my) * sy > 0)[None, :]
                mass = (dens * box).sum() * cell
                frac = (((z[:, 0] - mx) * sx > 0) & ((z[:, 1] - my) * sy > 0)).float().mean()
                assert frac.item() == pytest.approx(mass.item(), abs=0.015)


def test_loss_and_sample_shapes():
    flow = LatentFlow(FlowConfig(features=3, transforms=2, hidden=(8,)))
    z = flow.sample(7)
    assert z.shape == (7, 3)
    torch.testing.assert_close(flow.loss(z, None, 10), -flow.log_prob(z).mean())


@pytest.mark.parametrize(
    ("change", "match"),
    [({"features": 1}, "features"), ({"transforms": 0}, "transforms"), ({"hidden": ()}, "hidden")],
)
def test_config_errors(change, match):
    with pytest.raises(CosmobenchError, match=match):
        FlowConfig(**change)
