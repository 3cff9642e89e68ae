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
# sequential passes, Jacobi sweeps in torch, Jacobi sweeps in NumPy
@pytest.mark.parametrize("jacobi_max_batch, numpy_max_batch", [(0, 0), (32, 0), (32, 32)])
def test_general_maf_structures(kwargs, jacobi_max_batch, numpy_max_batch):
    torch.manual_seed(1)
    flow = perturb(zuko.flows.MAF(7, transforms=3, **kwargs), scale=0.1)
    eps = torch.randn(20, 7)
    # D + 1 sweeps always settle (the first k features are final after sweep k)
    fast = FastMAF(flow, jacobi_max_batch=jacobi_max_batch, numpy_max_batch=numpy_max_batch,
                   max_sweeps=7 + 1)
    torch.testing.assert_close(fast(eps), _reference(flow, eps), rtol=1e-4, atol=1e-5)
    if jacobi_max_batch:
        assert len(fast.last_sweeps) == 3 and all(s > 0 for s in fast.last_sweeps)


@pytest.mark.parametrize("n", [1, 5, 32])
def test_jacobi_sweeps_settle_on_zukos_inverse(paper_maf, n):
    """Small CPU batches are solved by Jacobi sweeps that settle bit for bit, well before the
    32 sequential passes; the result is zuko's inverse and the sequential passes' to rounding."""
    eps = torch.randn(n, 32)
    fast = FastMAF(paper_maf)
    assert fast.jacobi_max_batch >= 32  # the CPU default
    out = fast(eps)
    assert len(fast.last_sweeps) == 8
    assert all(1 < s < 16 for s in fast.last_sweeps), fast.last_sweeps
    torch.testing.assert_close(out, _reference(paper_maf, eps), rtol=1e-4, atol=1e-5)
    sequential = FastMAF(paper_maf, jacobi_max_batch=0)
    torch.testing.assert_close(out, sequential(eps), rtol=1e-5, atol=1e-5)
    assert sequential.last_sweeps == []  # never swept
    with torch.no_grad():  # a settled sweep is the exact inverse: the density pass undoes it
        torch.testing.assert_close(paper_maf().transform(out), eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("numpy_max_batch", [0, 8])  # sweeps in torch, in NumPy
def test_unsettled_transforms_fall_back_to_the_sequential_passes(paper_maf, numpy_max_batch):
    eps = torch.randn(3, 32)
    # too few sweeps to settle any transform
    fast = FastMAF(paper_maf, max_sweeps=2, numpy_max_batch=numpy_max_batch)
    out = fast(eps)
    assert fast.last_sweeps == [0] * 8
    torch.testing.assert_close(out, _reference(paper_maf, eps), rtol=1e-4, atol=1e-5)
    with pytest.raises(CosmobenchError, match="max_sweeps"):
        FastMAF(paper_maf, max_sweeps=0)


@pytest.mark.parametrize("numpy_max_batch", [0, 8])  # sweeps in torch, in NumPy
def test_nan_noise_never_settles_and_propagates_like_the_passes(paper_maf, numpy_max_batch):
    eps = torch.randn(2, 32)
    eps[1, 0] = float("nan")
    fast = FastMAF(paper_maf, numpy_max_batch=numpy_max_batch)
    out = fast(eps)
    assert fast.last_sweeps == [0] * 8  # every transform fell back
    assert torch.isnan(out[1]).any()
    torch.testing.assert_close(out[0], _reference(paper_maf, eps[:1])[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [1, 8, 9])
def test_small_batches_sweep_in_numpy_to_the_torch_sweeps_result(paper_maf, n, monkeypatch):
    """Batches up to numpy_max_batch (8 on a CPU) sweep in NumPy, never through the torch
    sweeps, and settle on the torch sweeps' result to rounding; larger ones take torch."""
    from cosmobench.generate import maf

    eps = torch.randn(n, 32)
    in_torch = FastMAF(paper_maf, numpy_max_batch=0)
    expected = in_torch(eps)
    fast = FastMAF(paper_maf)
    assert fast.numpy_max_batch == 8  # the CPU default
    torch_sweeps = maf._jacobi

    def refuse(*args):
        raise AssertionError("the torch sweeps ran")

    monkeypatch.setattr(maf, "_jacobi", refuse)
    if n > fast.numpy_max_batch:
        with pytest.raises(AssertionError, match="torch sweeps"):
            fast(eps)
        monkeypatch.setattr(maf, "_jacobi", torch_sweeps)
    out = fast(eps)
    assert len(fast.last_sweeps) == 8 and all(1 < s < 16 for s in fast.last_sweeps)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, _reference(paper_maf, eps), rtol=1e-4, atol=1e-5)
    assert not torch.equal(out, fast(torch.randn(n, 32)))  # a fresh result every call
    torch.testing.assert_close(fast(eps), out, rtol=0, atol=0)  # deterministic


def test_large_batches_are_swept_in_blocks_while_the_sweeps_pay(paper_maf, monkeypatch):
    """A batch above jacobi_max_batch is swept block by block; once a block's sweeps do not
    pay (a transform fell back, or more than 10 sweeps on average), the rest takes the
    passes in one call. Either way the result is the passes' to rounding."""
    eps = torch.randn(600, 32)
    expected = FastMAF(paper_maf, jacobi_max_batch=0)(eps)
    for max_sweeps, calls in ((None, [(256, True), (256, True), (88, True)]),
                              (2, [(256, True), (344, False)])):  # 2: every transform falls back
        fast = FastMAF(paper_maf, jacobi_max_batch=256, max_sweeps=max_sweeps)
        seen = []
        run = fast.run

        def spy(buf, jacobi=False, run=run, seen=seen):
            seen.append((buf.batch, jacobi))
            return run(buf, jacobi)

        monkeypatch.setattr(fast, "run", spy)
        out = fast(eps)
        assert seen == calls
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out, _reference(paper_maf, eps), rtol=1e-4, atol=1e-5)
    assert fast.last_sweeps == [0] * 8  # the last swept block's: it fell back


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
    fast = FastMAF(paper_maf, device)
    on_cpu = torch.device(device).type == "cpu"
    assert fast.jacobi_max_batch == (256 if on_cpu else 0)
    assert fast.numpy_max_batch == (8 if on_cpu else 0)
    out = fast(eps.to(device))
    assert out.device.type == torch.device(device).type
    torch.testing.assert_close(out.cpu(), _reference(paper_maf, eps), rtol=1e-3, atol=1e-4)
