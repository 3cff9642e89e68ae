"""One contract over every model (STYLE.md, after zuko's tests): shapes, gradients, counts,
eval-mode stability, save/load, repr, and a loss that traces into a single graph."""

from __future__ import annotations

import pytest
import torch

from cosmobench.files import load_checkpoint, save_checkpoint
from cosmobench.models import build_model, count_parameters, model_kind


def _conv(ci: int, co: int) -> int:  # 3×3 kernel + bias
    return 9 * ci * co + co


def _dense(fi: int, fo: int) -> int:
    return fi * fo + fo


# The paper's numbers (docs/models.md), independent of the code:
PAPER_COUNTS = {
    "cnn": 1_517_217,
    "cnn-2targets": 1_500_829,
    "bnn": 2_726_241,
    "bnn-flipout": 2_726_241,
}
# element PReLU slopes of the trunk (C·H·W after each conv) and their per-channel replacement
_TRUNK_PRELU = sum(
    f * s * s + f * (s // 2) ** 2 for f, s in [(32, 64), (64, 32), (128, 16), (256, 8)]
)
_TRUNK = 24 + sum(_conv(a, b) + _conv(b, b) for a, b in [(6, 32), (32, 64), (64, 128), (128, 256)])
_TRUNK += _TRUNK_PRELU  # BatchNorm(6) has 4 × 6 numbers as Keras counts
_DECODER = _dense(32, 256) + 256 + _dense(256, 4096) + 4096
for _f_in, _f, _s in [(256, 256, 8), (256, 128, 16), (128, 64, 32), (64, 32, 64)]:
    _DECODER += _conv(_f_in, _f) + _conv(_f, _f) + 2 * _f * _s * _s
_DECODER += _conv(32, 6)
DERIVED_COUNTS = {
    "cnn-channel-prelu": PAPER_COUNTS["cnn"] - _TRUNK_PRELU + 2 * (32 + 64 + 128 + 256),
    "vae": _TRUNK + _dense(4096, 256) + 256 + 2 * _dense(256, 32) + _DECODER,
    # 8 MADEs 32 → 256 → 256 → 2·32 (shift and log-scale per feature)
    "flow": 8 * (_dense(32, 256) + _dense(256, 256) + _dense(256, 64)),
}


def _outputs(case, model, x) -> tuple[torch.Tensor, ...]:
    if case.kind in ("cnn", "bnn"):
        return model(x)
    if case.kind == "vae":
        mu, sigma = model.encode(x)
        return mu, sigma, model.decode(mu)
    return (model.log_prob(x),)


def _assert_same(a, b, device) -> None:
    """Bit-identical on CPU; on GPUs cuDNN may pick accumulation orders that differ from call
    to call (transposed convolutions), so there only rounding-level differences are allowed."""
    for u, v in zip(a, b, strict=True):
        if device == "cpu":
            assert torch.equal(u, v)
        else:
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)


def test_trunk_count_matches_paper_cnn():
    # the derived trunk plus the 4096 → 9 head is the paper's CNN: the derivation is right
    assert _TRUNK + _dense(4096, 9) == PAPER_COUNTS["cnn"]


def test_parameter_count(case):
    model = build_model(case.kind, case.config)
    expected = {**PAPER_COUNTS, **DERIVED_COUNTS}[case.name]
    assert count_parameters(model) == expected
    n_bn = 12 if case.kind in ("cnn", "bnn", "vae") else 0  # running mean + var of BatchNorm(6)
    assert count_parameters(model, keras=False) == expected - n_bn


def test_output_shapes(case, device):
    model = build_model(case.kind, case.config).to(device)
    x, _ = case.batch(model, 3, device)
    out = _outputs(case, model, x)
    if case.kind in ("cnn", "bnn"):
        t = len(model.config.targets)
        assert out[0].shape == (3, t) and out[1].shape == (3, t, t)
        assert torch.equal(out[1], out[1].tril()) and (torch.diagonal(out[1], 0, 1, 2) > 0).all()
    elif case.kind == "vae":
        assert out[0].shape == out[1].shape == (3, 32) and (out[1] > 0).all()
        assert out[2].shape == (3, 6, 64, 64) and ((out[2] > 0) & (out[2] < 1)).all()
    else:
        assert out[0].shape == (3,)
    assert all(torch.isfinite(o).all() for o in out)


def test_gradient_on_every_parameter(case, device):
    model = build_model(case.kind, case.config).to(device).train()
    x, y = case.batch(model, 4, device)
    loss = model.loss(x, y, 1000)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient on {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient on {name}"


def test_eval_mode_stability(case, device):
    model = build_model(case.kind, case.config).to(device).eval()
    x, _ = case.batch(model, 2, device)
    with torch.no_grad():
        torch.manual_seed(5)
        a = _outputs(case, model, x)
        b = _outputs(case, model, x)
        torch.manual_seed(5)
        c = _outputs(case, model, x)
    if case.deterministic:
        _assert_same(a, b, device)
    else:  # a Bayesian network draws new weights on every pass, reproducibly from the seed
        assert not torch.equal(a[0], b[0])
        _assert_same(a, c, device)


def test_save_load_round_trip(case, device, tmp_path):
    model = build_model(case.kind, case.config).to(device)
    x, y = case.batch(model, 4, device)
    model.train()
    model.loss(x, y, 1000)  # moves BatchNorm running statistics away from their init
    model.eval()
    path = save_checkpoint(
        tmp_path / "model.pt",
        {
            "kind": model_kind(model),
            "model_config": model.config.to_dict(),
            "state_dict": model.state_dict(),
        },
    )
    state = load_checkpoint(path)  # weights_only=True
    clone = build_model(state["kind"], state["model_config"]).to(device).eval()
    assert clone.config == model.config
    clone.load_state_dict(state["state_dict"])
    with torch.no_grad():
        torch.manual_seed(0)
        a = _outputs(case, model, x)
        torch.manual_seed(0)
        b = _outputs(case, clone, x)
    _assert_same(a, b, device)


def test_repr(case):
    model = build_model(case.kind, case.config)
    text = repr(model)
    assert type(model).__name__ in text and len(text.splitlines()) > 3


@pytest.mark.parametrize("kind", ["cnn", "bnn", "vae"])
def test_loss_traces_as_one_graph(kind):
    """No host sync (.item()), no data-dependent branch: the whole loss is one dynamo graph,
    the precondition for torch.compile and CUDA-graph capture of the training step."""
    import torch._dynamo
    from torch._dynamo.testing import CompileCounter

    model = build_model(kind, {"filters": [4, 8, 8, 8]})  # small: tracing cost, not maths
    x, y = torch.randn(2, 6, 64, 64), torch.rand(2, 3)
    if kind == "vae":
        y = torch.rand(2, 6, 64, 64)
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(model.loss, backend=counter, fullgraph=True)
    torch.manual_seed(0)
    loss = compiled(x, y, 100)
    assert torch.isfinite(loss) and counter.frame_count == 1


@pytest.mark.parametrize("kind", ["cnn", "bnn", "vae"])
def test_loss_under_bf16_autocast(kind, device):
    model = build_model(kind, {"filters": [4, 8, 8, 8]}).to(device)
    x = torch.randn(2, 6, 64, 64, device=device)
    y = (
        torch.rand(2, 6, 64, 64, device=device)
        if kind == "vae"
        else 0.3 * torch.randn(2, 3, device=device)
    )
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        loss = model.loss(x, y, 100)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
