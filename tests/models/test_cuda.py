"""GPU-only checks (run with ``--device cuda``; skipped cleanly otherwise): the whole BNN
training step, weight noise included, captured in one CUDA graph."""

from __future__ import annotations

import pytest
import torch

from cosmobench.models import build_model

pytestmark = pytest.mark.cuda


@pytest.fixture
def cuda(device: str) -> str:
    if not device.startswith("cuda"):
        pytest.skip("CUDA-graph checks need --device cuda")
    return device


@pytest.mark.parametrize("kind", ["bnn", "cnn", "vae"])
def test_training_step_captures_in_one_cuda_graph(kind, cuda):
    torch.manual_seed(0)
    model = build_model(kind, {}).to(cuda).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    x = torch.randn(8, 6, 64, 64, device=cuda)
    y = (
        torch.rand(8, 6, 64, 64, device=cuda)
        if kind == "vae"
        else 0.3 * torch.randn(8, 3, device=cuda)
    )

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, y, 8000)
        loss.backward()
        opt.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(5):
        graph.replay()
        losses.append(static_loss.clone())
    losses = torch.stack(losses)
    assert torch.isfinite(losses).all()
    assert (
        len(set(losses.tolist())) == 5
    )  # new weights (and, for the BNN/VAE, new noise) each replay
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_bnn_noise_is_redrawn_on_every_replay(cuda):
    model = build_model("bnn", {}).to(cuda).eval()
    x = torch.randn(4, 6, 64, 64, device=cuda)
    with torch.no_grad():
        model(x)  # warm-up (cuDNN autotuning) outside the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loc, _ = model(x)
        graph.replay()
        first = loc.clone()
        graph.replay()
    assert not torch.equal(first, loc)
