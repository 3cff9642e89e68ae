"""`cosmobench train --mode` trains with the step the benchmark times in that mode."""

from __future__ import annotations

import pytest
import torch

import cosmobench.bench.modes as modes
from cosmobench.bench.modes import mode_step, parse_mode
from cosmobench.errors import CosmobenchError
from cosmobench.train import TrainConfig, fit, make_task
from cosmobench.train.step import make_optimizer, make_train_step

TINY = {"filters": (4, 8)}  # 64x64 stamps as the tiny store's


def _net(device="cpu") -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    net.loss = lambda x, y, n: ((net(x) - y) ** 2).mean()
    return net.to(device)


def _train(mode: str, device: str = "cpu", steps: int = 4) -> tuple[list[float], list]:
    net = _net(device)
    opt = make_optimizer(net, 1e-2, capturable="cudagraph" in mode)
    step = mode_step(make_train_step(net, opt, n_train=32), mode, opt)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x, y = torch.randn(16, 8, generator=g), torch.randn(16, 1, generator=g)
        losses.append(float(step(x.to(device), y.to(device))))
    return losses, [p.detach().cpu() for p in net.parameters()]


@pytest.mark.slow
def test_compiled_step_gives_the_eager_results():
    eager_loss, eager_p = _train("eager")
    comp_loss, comp_p = _train("compile")
    assert comp_loss == pytest.approx(eager_loss, rel=1e-5)
    for a, b in zip(eager_p, comp_p, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["cudagraph", "compile+cudagraph"])
def test_graphed_step_gives_the_eager_results(device, mode):
    if not device.startswith("cuda"):
        pytest.skip("CUDA graphs need --device cuda")
    eager_loss, eager_p = _train("eager", device, steps=8)
    graph_loss, graph_p = _train(mode, device, steps=8)
    assert graph_loss == pytest.approx(eager_loss, rel=1e-4)
    for a, b in zip(eager_p, graph_p, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_train_config_modes():
    assert TrainConfig(compile=True).mode == "compile"
    assert TrainConfig(mode="compile+cudagraph").compile is True
    assert TrainConfig(mode="cudagraph").compile is False
    with pytest.raises(CosmobenchError, match="step mode"):
        TrainConfig(mode="fast")


def test_trainer_and_benchmark_share_the_builder(monkeypatch, tiny_dataset, tmp_path):
    seen = []

    def spy(step, mode, optimizer=None):
        seen.append(str(mode))
        return step  # eager, for speed: what is checked is who builds the step

    monkeypatch.setattr(modes, "mode_step", spy)
    fit(make_task("cnn", TINY), tiny_dataset, TrainConfig(epochs=1, batch_size=16,
                                                          mode="compile"),
        tmp_path / "run", progress=False)
    assert seen == ["compile"]
    from cosmobench.bench import workloads

    monkeypatch.setattr(workloads, "mode_step", spy)
    workloads.TrainWorkload("train-cnn", bayesian=False, model_config=TINY).build(
        parse_mode("compile"), 2, workloads.BuildContext(torch.device("cpu")))
    assert seen == ["compile", "compile"]


def test_cudagraph_training_needs_cuda(tiny_dataset, tmp_path, device):
    if device.startswith("cuda"):
        pytest.skip("checks the CPU refusal")
    with pytest.raises(CosmobenchError, match="needs one CUDA device"):
        fit(make_task("cnn", TINY), tiny_dataset, TrainConfig(epochs=1, mode="cudagraph"),
            tmp_path / "g", progress=False)


def test_bayesian_steps_compile_without_layout_optimisation_on_the_cpu(monkeypatch):
    """A BNN's weights are a fresh sample every step: inductor's channels-last weight layout
    would transpose every sample (and, on AVX-512 with torch 2.13, its transposing kernel
    writes past its buffer); the CNN keeps inductor's layout. Both ask for 256-bit CPU code
    (``devices.inductor_options``)."""
    from cosmobench.models import ShapeConfig, ShapeNet
    from cosmobench.train.step import compile_options

    bnn = ShapeNet(ShapeConfig(bayesian=True, **TINY))
    cnn = ShapeNet(ShapeConfig(bayesian=False, **TINY))
    simd = {"cpp.simdlen": 256}
    assert compile_options(bnn) == {**simd, "layout_optimization": False}
    assert compile_options(cnn) == simd
    seen = []
    monkeypatch.setattr(modes.torch, "compile",
                        lambda fn, **kw: seen.append(kw) or fn)  # fmt: skip
    for net in (bnn, cnn):
        step = make_train_step(net, make_optimizer(net), n_train=32)
        assert step.compile_options == compile_options(net)
        mode_step(step, "compile")
    assert seen == [{"dynamic": False, "options": {**simd, "layout_optimization": False}},
                    {"dynamic": False, "options": simd}]
