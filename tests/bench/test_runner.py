"""The sweep: every point becomes a record -- ok, oom (simulated), unsupported, error, skipped."""

from __future__ import annotations

import pytest
import torch

from cosmobench.bench.config import BenchConfig
from cosmobench.bench.maxbatch import find_max_batch, is_oom
from cosmobench.bench.modes import Mode
from cosmobench.bench.results import load_results
from cosmobench.bench.runner import run_bench
from cosmobench.bench.workloads import BuildContext
from cosmobench.errors import CosmobenchError

FAST = {"repeats": 3, "min_block_s": 0.0, "warmup_max_s": 2.0}


def cfg_for(workloads, **kw) -> BenchConfig:
    return BenchConfig(workloads=tuple(workloads), **{**FAST, **kw})


def registry_with(workload):
    workload.name = workload.name
    return {workload.name: workload}


@pytest.fixture(autouse=True)
def _allow_fake_workload_names(monkeypatch):
    """Let the config accept the fake workloads of these tests."""
    import cosmobench.bench.config as config

    monkeypatch.setattr(config, "WORKLOAD_NAMES", config.WORKLOAD_NAMES + ("sleep", "oom",
                                                                          "broken"))


def test_simulated_oom_is_recorded_and_the_sweep_goes_on(tmp_path, workload_classes):
    wl = workload_classes["OOMWorkload"](capacity=12)
    out = tmp_path / "r.json"
    res = run_bench(cfg_for(["oom"], batch_sizes=(8, 16, 4)), out, registry={"oom": wl},
                    progress=False)
    status = {r.size: r.status for r in res.records}
    assert status == {8: "ok", 16: "oom", 4: "ok"}
    oom = res.find("oom", "eager", 16)
    assert "OutOfMemoryError" in oom.reason and oom.timing is None
    assert load_results(out).complete


def test_oom_during_a_call_is_recorded_too(workload_classes):
    wl = workload_classes["OOMWorkload"](capacity=2, on_call=True)
    res = run_bench(cfg_for(["oom"], batch_sizes=(4, 1)), registry={"oom": wl},
                    progress=False)
    assert [r.status for r in res.records] == ["oom", "ok"]


def test_max_batch_doubles_then_bisects(workload_classes):
    wl = workload_classes["OOMWorkload"](capacity=12)
    found = find_max_batch(wl, Mode(), BuildContext(device=torch.device("cpu")), limit=4096)
    assert found["largest"] == 12 and found["status"] == "oom"
    assert [t[0] for t in found["tried"]] == [1, 2, 4, 8, 16, 12, 14, 13]
    assert [t[1] for t in found["tried"]] == ["ok"] * 4 + ["oom", "ok", "oom", "oom"]
    everything = find_max_batch(workload_classes["OOMWorkload"](capacity=10**6), Mode(),
                                BuildContext(device=torch.device("cpu")), limit=64)
    assert everything["largest"] == 64 and everything["status"] == "limit"


def test_max_batch_in_a_run(workload_classes):
    wl = workload_classes["OOMWorkload"](capacity=5)
    res = run_bench(cfg_for(["oom"], batch_sizes=(2,), max_batch=True), registry={"oom": wl},
                    progress=False)
    assert res.max_batch[0]["largest"] == 5 and res.max_batch[0]["mode"] == "eager"


def test_unsupported_mode_is_reported_not_skipped(sleep_workload):
    res = run_bench(cfg_for(["sleep"], batch_sizes=(1,), modes=("eager", "cudagraph+bf16")),
                    registry={"sleep": sleep_workload}, progress=False)
    by_mode = {r.mode: r for r in res.records}
    assert by_mode["eager"].status == "ok"
    assert by_mode["cudagraph+bf16"].status == "unsupported"
    assert "CUDA" in by_mode["cudagraph+bf16"].reason


def test_errors_and_budget_are_records(workload_classes, sleep_workload):
    reg = {"broken": workload_classes["BrokenWorkload"](), "sleep": sleep_workload}
    res = run_bench(cfg_for(["broken", "sleep"], batch_sizes=(1,)), registry=reg,
                    progress=False)
    assert [(r.workload, r.status) for r in res.records] == [("broken", "error"),
                                                              ("sleep", "ok")]
    assert res.records[0].reason == "ValueError: broken on purpose"
    calls = sleep_workload.calls
    res = run_bench(cfg_for(["sleep"], batch_sizes=(1, 2), budget_s=1e-9), registry=reg,
                    progress=False)
    assert [r.status for r in res.records] == ["skipped", "skipped"]
    assert "budget" in res.records[0].reason and sleep_workload.calls == calls


def test_a_known_duration_through_the_whole_run(sleep_workload):
    res = run_bench(cfg_for(["sleep"], batch_sizes=(15,), repeats=4), registry={
        "sleep": sleep_workload}, progress=False)
    rec = res.records[0]
    s = rec.summary(res.peaks)
    assert 15 <= s["median_ms"] < 20
    assert s["images_per_s"] == pytest.approx(15 / (s["median_ms"] / 1e3))
    assert rec.peak_memory_bytes >= 0 and rec.memory_kind == "rss_high_water_above_baseline"
    assert rec.info["memory_baseline_bytes"] > 0  # the point's own baseline is recorded
    assert rec.energy == {"available": False, "reason": "no energy counter for cpu devices"}
    assert set(res.peaks) == {"fp32"} and res.peaks["fp32"]["flops_per_s"] > 1e7
    samples = res.peaks["fp32"]["samples_flops_per_s"]  # measured at start and end: best kept
    assert len(samples) == 2 and res.peaks["fp32"]["flops_per_s"] == max(samples)
    assert res.env["cpu_model"] and res.env["torch"] == torch.__version__


def test_interrupted_run_resumes_and_finished_run_is_protected(tmp_path, sleep_workload):
    out = tmp_path / "r.json"
    cfg = cfg_for(["sleep"], batch_sizes=(1, 2, 3))
    first = run_bench(cfg, out, registry={"sleep": sleep_workload}, progress=False)
    partial = load_results(out)
    partial.records = partial.records[:1]  # as if killed after the first point
    partial.complete = False
    partial.save(out)
    sizes = []
    sleep_workload.build = (lambda orig: lambda mode, size, ctx: (sizes.append(size),
                            orig(mode, size, ctx))[1])(sleep_workload.build)
    resumed = run_bench(cfg, out, registry={"sleep": sleep_workload}, progress=False)
    assert sizes == [2, 3] and [r.size for r in resumed.records] == [1, 2, 3]
    assert resumed.records[0].timing == first.records[0].timing
    with pytest.raises(CosmobenchError, match="finished run"):
        run_bench(cfg, out, registry={"sleep": sleep_workload}, progress=False)
    with pytest.raises(CosmobenchError, match="another configuration"):
        run_bench(cfg.replace(repeats=5), out, registry={"sleep": sleep_workload},
                  progress=False)
    run_bench(cfg, out, registry={"sleep": sleep_workload}, progress=False, overwrite=True)


def test_is_oom():
    assert is_oom(torch.OutOfMemoryError("x"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert not is_oom(RuntimeError("shape mismatch"))
