"""FastMAF computes zuko's MAF sampling function exactly (to float tolerance), faster."""

from __future__ import annotations

import pytest
import torch
import zuko
from tests.generate.conftest import perturb

from cosmobench.errors import CosmobenchError
from cosmobench.generate.maf import FastMAF


def _reference(flow: zuko.flows.MAF, eps: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        dist = flow()
        return dist.transform.inv(dist.base.mean + dist.base.stddev * eps)


@pytest.fixture(scope="module")
def paper_maf() -> zuko.flows.MAF:
    """The paper's flow: 32 features, 8 transforms, hidden (256, 256), orders reversed."""
    torch.manual_seed(0)
    return perturb(zuko.flows.MAF(32, transforms=8, hidden_features=(256, 256)))


@pytest.mark.parametrize("n", [1, 7, 300])
def test_equals_zuko_rsample_for_the_same_noise(paper_maf, n):
    torch.manual_seed(n)
    ref = paper_maf().rsample((n,)).detach()  # zuko draws its base noise with torch.randn
    torch.manual_seed(n)
    eps = torch.randn(n, 32)
    out = FastMAF(paper_maf)(eps)
    assert out.shape == (n, 32)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_inverse_of_the_forward_transform(paper_maf):
    eps = torch.randn(64, 32)
    z = FastMAF(paper_maf)(eps)
    with torch.no_grad():
        back = paper_maf().transform(z)  # one MADE pass per transform: the density direction
    torch.testing.assert_close(back, eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden_features": (16,)},
        {"hidden_features": (32, 24, 16)},
        {"hidden_features": (64, 64), "passes": 2},  # several features per pass (coupling)
        {"hidden_features": (64, 64), "passes": 3},  # uneven blocks
        {"hidden_features": (64, 64), "randperm": True},
    ],
)
def test_general_maf_structures(kwargs):
    torch.manual_seed(1)
    flow = perturb(zuko.flows.MAF(7, transforms=3, **kwargs), scale=0.1)
    eps = torch.randn(20, 7)
    torch.testing.assert_close(FastMAF(flow)(eps), _reference(flow, eps), rtol=1e-4, atol=1e-5)


def test_base_location_and_scale_are_applied():
    torch.manual_seed(2)
    flow = perturb(zuko.flows.MAF(5, transforms=2, hidden_features=(32, 32)))
    flow.base.loc = torch.linspace(-1, 1, 5)  # zuko registers them as buffers
    flow.base.scale = torch.linspace(0.5, 2, 5)
    eps = torch.randn(10, 5)
    torch.testing.assert_close(FastMAF(flow)(eps), _reference(flow, eps), rtol=1e-4, atol=1e-5)


def test_buffers_are_reused_but_results_are_not_aliased(paper_maf):
    fast = FastMAF(paper_maf)
    e1, e2 = torch.randn(4, 32), torch.randn(4, 32)
    a = fast(e1)
    b = fast(e2)  # same batch size: same workspace
    assert fast.workspace(4) is fast.workspace(4)
    torch.testing.assert_close(a, fast(e1))  # the first result was not overwritten
    assert not torch.allclose(a, b)


def test_one_pass_per_feature_and_prefix_widths(paper_maf):
    fast = FastMAF(paper_maf)
    assert len(fast.layers) == 8
    for layer in fast.layers:
        assert len(layer.passes) == 32
        widths = [p.widths for p in layer.passes]
        assert widths[0][-1] == 0  # the first feature depends on nothing
        assert widths[-1] == (256, 256)  # the last needs (almost) the whole network
        assert all(a <= b for w1, w2 in zip(widths, widths[1:], strict=False)
                   for a, b in zip(w1, w2, strict=True))


def test_unsupported_flows_are_refused():
    with pytest.raises(CosmobenchError, match="MonotonicAffineTransform"):
        FastMAF(zuko.flows.NSF(4, transforms=1))
    with pytest.raises(CosmobenchError, match="zuko MAF"):
        FastMAF(torch.nn.Linear(2, 2))
    with pytest.raises(CosmobenchError, match="unconditional"):
        FastMAF(zuko.flows.MAF(3, context=2, transforms=1))
    with pytest.raises(CosmobenchError, match="shape"):
        FastMAF(zuko.flows.MAF(3, transforms=1))(torch.randn(2, 4))


def test_on_device(paper_maf, device):
    eps = torch.randn(16, 32)
    out = FastMAF(paper_maf, device)(eps.to(device))
    assert out.device.type == torch.device(device).type
    torch.testing.assert_close(out.cpu(), _reference(paper_maf, eps), rtol=1e-3, atol=1e-4)
