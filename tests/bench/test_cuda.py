"""GPU paths of the benchmark (``--device cuda``; skipped cleanly without CUDA)."""

from __future__ import annotations

import pytest
import torch

from cosmobench.bench.meters import EnergyMeter, MemoryMeter
from cosmobench.bench.modes import capture_step
from cosmobench.bench.peak import measure_peaks, peak_key

pytestmark = pytest.mark.cuda


@pytest.fixture
def cuda(device: str) -> torch.device:
    if not device.startswith("cuda"):
        pytest.skip("GPU paths need --device cuda")
    return torch.device(device)


def test_peaks_memory_and_energy(cuda):
    peaks = measure_peaks(cuda, {"fp32", "bf16"}, sizes=(4096,), min_run_time=0.1)
    assert peak_key("fp32", cuda) in peaks and "bf16" in peaks
    assert peaks["bf16"]["flops_per_s"] > 1e12  # any CUDA GPU with bf16 does > 1 TFLOP/s
    mem = MemoryMeter(cuda)
    mem.start()
    x = torch.empty(256, 2**20, device=cuda)  # 1 GiB
    assert mem.peak() >= 2**30
    del x
    energy = EnergyMeter(cuda)
    a = torch.randn(4096, 4096, device=cuda)
    result = energy.measure(lambda: a @ a, 1, torch.cuda.synchronize)
    assert result["available"] is energy.available or "did not move" in result["reason"]
    if result["available"]:
        assert result["seconds"] >= 2.0 and result["joules"] > 0
    else:
        assert result["reason"]


@pytest.mark.parametrize("mode", ["cudagraph", "compile+cudagraph", "eager"])
def test_memory_returns_to_baseline_after_each_point(cuda, mode):
    from cosmobench.bench.config import BenchConfig
    from cosmobench.bench.modes import parse_mode
    from cosmobench.bench.runner import run_point
    from cosmobench.bench.workloads import BuildContext, TrainWorkload

    wl = TrainWorkload("train-cnn", bayesian=False,
                       model_config={"image_size": 16, "filters": (4, 8)})
    cfg = BenchConfig(repeats=2, min_block_s=0.0, warmup_max_s=5.0)
    ctx = BuildContext(device=cuda)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated(cuda)
    peaks = []
    for batch in (4, 4, 8):
        rec = run_point(wl, parse_mode(mode), batch, cfg, ctx)
        assert rec.status == "ok", rec.reason
        assert torch.cuda.memory_allocated(cuda) == base  # graphs, pools, caches released
        peaks.append(rec.peak_memory_bytes)
    assert peaks[1] <= peaks[0] * 1.05  # the same point again does not grow


def test_whole_step_capture_replays_the_optimiser(cuda):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    net = net.to(cuda)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, capturable=True)
    x, y = torch.randn(32, 8, device=cuda), torch.randn(32, 1, device=cuda)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        noise = 0.01 * torch.randn_like(x)  # like the BNN's weight noise: new every replay
        loss = ((net(x + noise) - y) ** 2).mean()
        loss.backward()
        opt.step()
        return loss.detach()

    captured = capture_step(step, (x, y), before_capture=lambda: opt.zero_grad(set_to_none=True))
    losses = [float(captured.replay()) for _ in range(50)]
    assert losses[-1] < losses[0]  # the optimiser steps inside the graph
    assert len(set(losses)) == len(losses)
