"""The real workloads on tiny networks: the trainer's step, the sampler, the simulator."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import cosmobench.train.step as train_step
from cosmobench.bench.config import BenchConfig
from cosmobench.bench.generation import SimulateWorkload
from cosmobench.bench.modes import Mode
from cosmobench.bench.runner import default_workloads, run_bench
from cosmobench.bench.workloads import BuildContext
from cosmobench.models.layers import SameConv2d
from cosmobench.models.layout import MAX_CHANNELS_LAST_KERNEL, mixed_channels_last

FAST = {"repeats": 2, "min_block_s": 0.0, "warmup_max_s": 0.3}


def test_training_times_the_trainers_own_step(tiny_registry, monkeypatch):
    """The timed call is make_train_step's step (not a copy): count its calls."""
    calls = {"built": 0, "steps": 0}
    real = train_step.make_train_step

    def counting(*args, **kwargs):
        calls["built"] += 1
        step = real(*args, **kwargs)

        def wrapped(x, y):
            calls["steps"] += 1
            return step(x, y)

        return wrapped

    monkeypatch.setattr(train_step, "make_train_step", counting)
    cfg = BenchConfig(workloads=("train-cnn",), modes=("eager", "bf16"), batch_sizes=(2, 4),
                      **FAST)
    res = run_bench(cfg, registry=tiny_registry, progress=False)
    bnn_cfg = cfg.replace(workloads=("train-bnn",), modes=("eager",), batch_sizes=(2,))
    res.records += run_bench(bnn_cfg, registry=tiny_registry, progress=False).records
    assert [r.status for r in res.records] == ["ok"] * 5
    assert calls["built"] == 5
    timed = sum(r.timing.number_per_run * len(r.timing.raw_times_s) for r in res.records)
    warm = sum(len(r.timing.warmup_times_s) for r in res.records)
    assert calls["steps"] == timed + warm + 5  # + one FLOP-counting step per point
    assert set(res.peaks) == {"fp32", "bf16"}
    for r in res.records:
        s = r.summary(res.peaks)
        assert r.flops_per_call > 0 and 0 < s["mfu"] and s["s_per_100_epochs_derived"]
        assert r.precision == ("bf16" if "bf16" in r.mode else "fp32")
    bnn = res.find("train-bnn", "eager", 2)
    cnn = res.find("train-cnn", "eager", 2)
    assert bnn.info["parameters"] > cnn.info["parameters"]  # variational kernels: mean + rho
    # training FLOPs ~ 3x the forward, and proportional to the batch
    assert res.find("train-cnn", "eager", 4).flops_per_call == pytest.approx(
        2 * cnn.flops_per_call, rel=0.01)


def test_paper_protocol_times_whole_epochs(tiny_registry):
    cfg = BenchConfig(workloads=("train-cnn",), batch_sizes=(4,), protocol="paper", epochs=3,
                      untimed_epochs=1, n_train=20)
    rec = run_bench(cfg, registry=tiny_registry, progress=False).records[0]
    assert rec.status == "ok" and rec.protocol == "paper"
    assert rec.timing.number_per_run == 5  # 20 images / batch 4
    assert len(rec.timing.raw_times_s) == 2 and len(rec.timing.warmup_times_s) == 1
    assert rec.summary()["s_per_100_epochs_derived"] is True


def test_inference_and_generation(tiny_registry):
    cfg = BenchConfig(workloads=("infer-cnn", "generate"), modes=("eager", "compile"),
                      batch_sizes=(3,), n=(1, 5), **FAST)
    res = run_bench(cfg, registry=tiny_registry, progress=False)
    assert res.find("infer-cnn", "eager", 3).status == "ok"
    for n in (1, 5):
        rec = res.find("generate", "eager", n)
        assert rec.status == "ok" and rec.items_per_call == n and rec.size_name == "n"
        assert rec.flops_per_call > 0
        # small CPU batches: the flow's Jacobi sweeps per transform (0: fell back) are recorded
        assert len(rec.info["flow_sweeps"]) == 2
        assert all(0 <= s <= 2 for s in rec.info["flow_sweeps"])  # 4 features: at most 2
    assert res.find("generate", "compile", 1).status == "unsupported"
    assert res.find("generate", "eager", 5).flops_per_call > res.find(
        "generate", "eager", 1).flops_per_call


def test_generation_paper_protocol_is_one_warm_up_one_call(tiny_registry):
    cfg = BenchConfig(workloads=("generate",), n=(2,), protocol="paper")
    rec = run_bench(cfg, registry=tiny_registry, progress=False).records[0]
    assert rec.status == "ok"
    assert len(rec.timing.raw_times_s) == 1 and len(rec.timing.warmup_times_s) == 1


def test_simulate_is_unsupported_without_galsim(monkeypatch):
    import cosmobench.bench.generation as generation

    real = importlib.util.find_spec
    monkeypatch.setattr(generation.importlib.util, "find_spec",
                        lambda name, *a: None if name == "galsim" else real(name, *a))
    reason = SimulateWorkload().unsupported(Mode(), torch.device("cpu"))
    assert reason is not None and "galsim" in reason
    monkeypatch.undo()
    assert "does not apply" in SimulateWorkload().unsupported(Mode(bf16=True),
                                                              torch.device("cpu"))


def test_simulate_times_galsim():
    pytest.importorskip("galsim")
    sim = pytest.importorskip("cosmobench.sim")
    if not hasattr(sim, "simulate"):
        pytest.skip("cosmobench.sim.simulate not there yet")
    cfg = BenchConfig(workloads=("simulate",), sim_galaxies=2, repeats=2, min_block_s=0.0,
                      warmup_max_s=1.0)
    rec = run_bench(cfg, progress=False).records[0]
    assert rec.status == "ok", rec.reason
    assert rec.items_per_call == 2 and rec.size_name == "galaxies"


def test_data_from_a_store(request):
    """--data: the paper's network fed from a simulated store (loading included)."""
    for module in ("galsim", "zarr"):  # the GPU machine has neither
        pytest.importorskip(module)
    tiny_dataset = request.getfixturevalue("tiny_dataset")
    cfg = BenchConfig(workloads=("train-cnn",), batch_sizes=(2,), data=str(tiny_dataset),
                      **FAST)
    rec = run_bench(cfg, registry=default_workloads(), progress=False).records[0]
    assert rec.status == "ok", rec.reason
    assert rec.info["data"] == str(tiny_dataset)
    assert rec.info["parameters"] > 1_000_000


def test_paper_network_sizes():
    """The default workloads build the paper's networks (1.5M / 2.7M parameters, Keras count)."""
    from cosmobench.models import count_parameters

    reg = default_workloads()
    assert count_parameters(reg["train-cnn"].make_model()) == 1_517_217
    assert count_parameters(reg["train-bnn"].make_model()) == 2_726_241


@pytest.mark.slow
def test_compiled_training_step(tiny_registry):
    cfg = BenchConfig(workloads=("train-cnn",), modes=("compile",), batch_sizes=(2,), **FAST)
    rec = run_bench(cfg, registry=tiny_registry, progress=False).records[0]
    assert rec.status == "ok", rec.reason
    assert rec.timing.warmup_times_s[0] > 3 * rec.stats().median_s  # compilation not timed


@pytest.mark.cuda
def test_cuda_graph_step_trains(device, tiny_registry):
    """Whole-step capture: replays update the weights; the BNN's noise changes per replay."""
    if not device.startswith("cuda"):
        pytest.skip("needs --device cuda")
    ctx = BuildContext(device=torch.device(device))
    for name in ("train-cnn", "train-bnn"):
        case = tiny_registry[name].build(Mode(cudagraph=True), 4, ctx)
        losses = [case.call().clone() for _ in range(20)]
        assert len({float(v) for v in losses}) > 10
        assert case.events
    cfg = BenchConfig(workloads=("train-cnn", "train-bnn", "infer-cnn", "generate"),
                      device=device, modes=("cudagraph", "cudagraph+bf16"),
                      batch_sizes=(2,), n=(3,), **FAST)
    res = run_bench(cfg, registry=tiny_registry, progress=False)
    assert all(r.status == "ok" for r in res.records), [(r.key, r.reason) for r in res.records]
    assert all(r.memory_kind == "cuda_max_allocated" for r in res.records)


def test_channels_last_mode_lays_the_trained_model_out_nhwc(tiny_registry, monkeypatch):
    real, seen = train_step.make_train_step, []

    def spy(model, opt, **kw):
        step = real(model, opt, **kw)
        seen.append(model)
        return step

    monkeypatch.setattr(train_step, "make_train_step", spy)
    ctx = BuildContext(device=torch.device("cpu"))
    for mode in (Mode(channels_last=True), Mode()):
        tiny_registry["train-cnn"].build(mode, 2, ctx)
        for conv in (m for m in seen[-1].modules() if isinstance(m, torch.nn.Conv2d)):
            # channels-last: every kernel; otherwise the CPU's mixed layout, by kernel size
            nhwc = mode.channels_last or conv.weight.numel() <= MAX_CHANNELS_LAST_KERNEL
            assert conv.weight.is_contiguous(memory_format=torch.channels_last) is nhwc
            assert conv.weight.is_contiguous() is not nhwc
    big = torch.nn.Sequential(SameConv2d(256, 256, 3, 1))  # above the bound: stays NCHW
    assert mixed_channels_last(big) == 0 and big[0].weight.is_contiguous()


def test_generation_flops_are_the_paper_layers_whatever_the_decoder_runs():
    """``sample_flops``: the flow as solved plus ``decode_logits`` (the transposed
    convolutions), linear in n; the batch-1 sub-pixel decoder multiplies zero taps on top."""
    from torch.utils.flop_counter import FlopCounterMode

    from cosmobench.bench.generation import sample_flops
    from cosmobench.generate.sampler import GalaxySampler
    from cosmobench.models import VAE, BandNormalizer, FlowConfig, LatentFlow, VAEConfig

    torch.manual_seed(0)
    vae = VAE(VAEConfig(latent=8, filters=(8, 8, 16, 16), hidden=32))
    sampler = GalaxySampler(vae, LatentFlow(FlowConfig(features=8)), BandNormalizer([1e3] * 6))
    one, three = sample_flops(sampler, 1), sample_flops(sampler, 3)
    with torch.inference_mode(), FlopCounterMode(display=False) as paper:
        vae.decode_logits(torch.zeros(1, 8))
    assert paper.get_total_flops() > 1e6 and one > paper.get_total_flops()  # plus the flow
    with torch.inference_mode(), FlopCounterMode(display=False) as recast:
        sampler._plain_decoder(torch.zeros(1, 8))
    assert recast.get_total_flops() > paper.get_total_flops()  # the zero taps
    assert abs(three - 3 * one) / one < 0.1  # linear in n, but for the flow's sweeps
