"""The sweep: every point becomes a record -- ok, oom (simulated), unsupported, error, skipped."""

from __future__ import annotations

import time

import pytest
import torch

from cosmobench.bench.config import BenchConfig
from cosmobench.bench.maxbatch import find_max_batch, is_oom
from cosmobench.bench.modes import Mode
from cosmobench.bench.results import load_results
from cosmobench.bench.runner import run_bench
from cosmobench.bench.workloads import BuildContext, Case, Workload
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
                                                                          "broken", "slow",
                                                                          "holder"))


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
    peak = res.peaks["fp32"]  # a roofline: the best of several kernels, with the theory
    assert peak["roofline"] and set(peak["kernels"]) == {"mm128", "mm256", "conv3x3"}
    assert peak["flops_per_s"] == max(peak["kernels"].values())
    assert "theoretical" in peak and "source" in peak["theoretical"]
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


def test_peaks_are_measured_once_per_run(monkeypatch, sleep_workload):
    import cosmobench.bench.runner as runner

    calls = []
    real = runner.measure_peaks
    monkeypatch.setattr(runner, "measure_peaks",
                        lambda *a, **k: (calls.append(a[1]), real(*a, **k))[1])
    run_bench(cfg_for(["sleep"], batch_sizes=(1, 2, 3)), registry={"sleep": sleep_workload},
              progress=False)
    assert calls == [{"fp32"}]


class _Slow(Workload):
    """Each call takes ``size`` ms; building takes ``build_s``."""

    name = "slow"

    def __init__(self, build_s: float = 0.0) -> None:
        self.build_s = build_s

    def build(self, mode, size, ctx):
        time.sleep(self.build_s)
        return Case(call=lambda: time.sleep(size / 1e3), items_per_call=1)


def test_budget_is_a_wall_clock_limit_warm_up_included():
    # each point: >= 3 warm-up calls + 10 blocks of 0.3 s = ~4 s; the budget allows ~one
    t0 = time.perf_counter()
    res = run_bench(cfg_for(["slow"], batch_sizes=(300, 301, 302), budget_s=5.0,
                            min_block_s=0.0, repeats=10),
                    registry={"slow": _Slow()}, progress=False)
    elapsed = time.perf_counter() - t0
    assert elapsed <= 5.0 * 1.05 + 0.5, elapsed
    statuses = [r.status for r in res.records]
    assert statuses[0] == "ok" and statuses[1:] == ["skipped", "skipped"]
    assert all("budget" in r.reason for r in res.records[1:])


def test_a_point_that_cannot_finish_is_cut_during_warm_up():
    # 1 s calls: 3 warm-up calls and 3 blocks need 6 s; the budget is 3 s
    t0 = time.perf_counter()
    res = run_bench(cfg_for(["slow"], batch_sizes=(1000,), budget_s=3.0, min_block_s=0.0),
                    registry={"slow": _Slow()}, progress=False)
    # the first call of a point is the one cost not known in advance: at most one call over
    assert time.perf_counter() - t0 < 3.0 * 1.05 + 1.0 + 0.5
    (rec,) = res.records
    assert rec.status == "skipped" and rec.reason.startswith("cut:")


def test_bf16_on_an_avx2_cpu_is_unsupported_unless_named(monkeypatch, sleep_workload):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    res = run_bench(cfg_for(["sleep"], batch_sizes=(1,), modes=("all",)),
                    registry={"sleep": sleep_workload}, progress=False)
    by_mode = {r.mode: r for r in res.records}
    assert by_mode["bf16"].status == "unsupported" and "bf16" in by_mode["bf16"].reason
    assert by_mode["eager"].status == "ok"
    assert set(res.peaks) == {"fp32"}  # no bf16 peak measured for modes that do not run
    with pytest.warns(RuntimeWarning, match="emulated"):
        named = run_bench(cfg_for(["sleep"], batch_sizes=(1,), modes=("bf16",)),
                          registry={"sleep": sleep_workload}, progress=False)
    assert named.records[0].status == "ok" and "emulated" in named.records[0].info["warning"]


def test_a_point_releases_what_it_allocated():
    import gc
    import weakref

    from cosmobench.bench.modes import parse_mode
    from cosmobench.bench.runner import run_point
    from cosmobench.bench.workloads import BuildContext

    refs = []

    class Holder(Workload):
        name = "holder"

        def build(self, mode, size, ctx):
            big = torch.ones(size, 1024)
            cycle = {"big": big}
            cycle["self"] = cycle  # a reference cycle, freed only by the collector
            refs.append(weakref.ref(big))
            return Case(call=lambda: cycle["big"].sum(), items_per_call=1)

    gc.disable()
    try:
        rec = run_point(Holder(), parse_mode("eager"), 4096, cfg_for(["holder"]),
                        BuildContext(torch.device("cpu")))
        assert rec.status == "ok" and refs and refs[0]() is None
    finally:
        gc.enable()


def test_a_training_point_frees_its_model_and_optimiser(tiny_registry):
    import weakref

    from cosmobench.bench.modes import parse_mode
    from cosmobench.bench.runner import run_point
    from cosmobench.bench.workloads import BuildContext

    wl = tiny_registry["train-bnn"]
    refs = []
    real = wl.make_model
    wl.make_model = lambda: (lambda m: (refs.append(weakref.ref(m)), m)[1])(real())
    cfg = BenchConfig(workloads=("train-bnn",), repeats=2, min_block_s=0.0, warmup_max_s=2.0)
    for _ in range(2):
        rec = run_point(wl, parse_mode("eager"), 4, cfg, BuildContext(torch.device("cpu")))
        assert rec.status == "ok" and rec.peak_memory_bytes is not None
        assert refs[-1]() is None  # model, Adam state and step closures released
