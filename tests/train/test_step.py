"""The shared training step: one exact Adam step for every model, fp32 and bf16."""

from __future__ import annotations

import copy

import pytest
import torch

from cosmobench.models import build_model
from cosmobench.models.variational import VariationalConv2d
from cosmobench.train import make_optimizer, make_train_step, model_loss
from cosmobench.train.step import LossModule

SMALL = {
    "cnn": {"image_size": 16, "filters": [4, 8]},
    "bnn": {"image_size": 16, "filters": [4, 8]},
    "vae": {"image_size": 16, "filters": [4, 8], "hidden": 16, "latent": 4},
    "flow": {"features": 4, "transforms": 2, "hidden": [16]},
}


def _batch(kind: str, device: str, b: int = 4):
    g = torch.Generator().manual_seed(1)
    if kind == "flow":
        return torch.randn(b, 4, generator=g).to(device), None
    x = torch.rand(b, 6, 16, 16, generator=g).to(device)
    if kind == "vae":
        return x, torch.rand(b, 6, 16, 16, generator=g).to(device)
    return x, (0.3 * torch.randn(b, 3, generator=g)).to(device)


@pytest.mark.parametrize("kind", ["cnn", "bnn", "vae", "flow"])
def test_step_is_one_adam_step_on_the_models_loss(kind, device):
    torch.manual_seed(0)
    model = build_model(kind, SMALL[kind]).to(device)
    ref, start = copy.deepcopy(model), copy.deepcopy(model)
    x, y = _batch(kind, device)
    opt = make_optimizer(model, lr=1e-3)
    # the CPU's default mixed layout against a plain NCHW model (and plain Adam)
    step = make_train_step(model, opt, n_train=100)

    torch.manual_seed(5)  # the same BNN / VAE noise for both
    loss = step(x, y)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    torch.manual_seed(5)
    ref_loss = ref.loss(x, y, 100)
    ref_loss.backward()
    ref_opt.step()

    assert loss.shape == () and not loss.requires_grad and loss.device.type == x.device.type
    # the step's fused Adam and fused layers round differently from the textbook ones (~1e-10)
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-5, atol=1e-7)
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)
    moved = [
        not torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters(), strict=True)
    ]
    assert all(moved)  # Adam's first step moves every parameter (by ~lr)
    # a second step starts from cleared gradients (zero_grad(set_to_none=True)): what it
    # leaves in .grad is the second step's gradient alone, not the sum of both steps'
    before = copy.deepcopy(model)
    torch.manual_seed(6)
    step(x, y)
    torch.manual_seed(6)
    before.loss(x, y, 100).backward()
    for (name, p), q in zip(model.named_parameters(), before.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize(
    ("kind", "layout"),
    [("cnn", "channels_last"), ("vae", "channels_last"),
     ("cnn", "mixed"), ("bnn", "mixed"), ("vae", "mixed")],
)  # fmt: skip
def test_cpu_layouts_compute_the_nchw_gradients(kind, layout):
    """Channels-last (``channels_last=True``) and the CPU default (mixed layout: small kernels
    channels-last) against all-NCHW: the same loss and gradients to rounding, the BNN's
    weight noise included (drawn in the same order)."""
    torch.manual_seed(0)
    model = build_model(kind, SMALL[kind])
    ref = copy.deepcopy(model)
    x, y = _batch(kind, "cpu")
    options = {"channels_last": True} if layout == "channels_last" else {}
    losses = []
    for net, kw in ((model, options), (ref, {"mixed_layout": False})):
        torch.manual_seed(5)  # the same BNN / VAE noise
        # lr 0: the gradients are compared, not Adam's first step (which turns rounding
        # differences of near-zero gradients into ±lr)
        losses.append(make_train_step(net, make_optimizer(net, lr=0.0), n_train=100,
                                      **kw)(x, y))  # fmt: skip
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d | VariationalConv2d))
    kernel = first.weight if isinstance(first, torch.nn.Conv2d) else first.weight_mu
    assert kernel.is_contiguous(memory_format=torch.channels_last) and not kernel.is_contiguous()
    assert all(p.is_contiguous() for p in ref.parameters())  # mixed_layout=False: untouched
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-7)
    for (name, p), q in zip(model.named_parameters(), ref.parameters(), strict=True):
        assert p.grad.stride() == p.stride(), name  # fused Adam needs matching layouts
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_autocasts_the_forward_but_keeps_fp32_weights():
    torch.manual_seed(0)
    model = build_model("cnn", SMALL["cnn"])
    x, y = _batch("cnn", "cpu")
    ref = copy.deepcopy(model)
    lo = make_train_step(model, make_optimizer(model), n_train=10, precision="bf16")(x, y)
    hi = make_train_step(ref, make_optimizer(ref), n_train=10, precision="fp32")(x, y)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert lo != hi  # computed in another precision ...
    assert abs(float(lo) - float(hi)) < 0.05 * abs(float(hi)) + 0.05  # ... of the same loss


def test_loss_module_is_the_models_loss():
    torch.manual_seed(0)
    model = build_model("flow", SMALL["flow"])
    z, _ = _batch("flow", "cpu")
    assert torch.equal(LossModule(model, 7)(z, None), model_loss(model, z, None, 7))


def test_unknown_precision_is_refused():
    from cosmobench.errors import CosmobenchError

    model = build_model("flow", SMALL["flow"])
    with pytest.raises(CosmobenchError, match="precision must be one of fp32, bf16"):
        make_train_step(model, make_optimizer(model), n_train=1, precision="fp16")


@pytest.mark.cuda
def test_whole_step_captures_in_a_cuda_graph(device):
    if not device.startswith("cuda"):
        pytest.skip("needs --device cuda")
    torch.manual_seed(0)
    model = build_model("bnn", SMALL["bnn"]).to(device)
    opt = make_optimizer(model, capturable=True)
    step = make_train_step(model, opt, n_train=100)
    x, y = _batch("bnn", device)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm up (Adam state, cuDNN plans) outside the graph
        for _ in range(3):
            step(x, y)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step(x, y)
    before = [p.detach().clone() for p in model.parameters()]
    graph.replay()
    torch.cuda.synchronize()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
