"""End to end: `cosmobench demo` on tiny settings writes a whole report, and a rerun resumes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cosmobench.demo import DemoConfig
from cosmobench.errors import CosmobenchError

TINY = ["--n-train", "96", "--n-test", "64", "--epochs", "1", "--n-generate", "16",
        "--workers", "1", "--device", "cpu", "--bench-budget", "45"]


def _demo(out, *extra):
    return subprocess.run([sys.executable, "-m", "cosmobench", "demo", "--out", str(out), *TINY,
                           *extra], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_demo_end_to_end_and_resume(tmp_path):
    out = tmp_path / "demo"
    first = _demo(out)
    assert first.returncode == 0, first.stderr[-2000:]
    report = (out / "REPORT.md").read_text()
    # opens with the timings against the paper, then the science sections
    assert report.index("## Timings against Arcelin (2021)") < report.index("## Shape estimation")
    assert "| train-cnn | 2 |" in report  # the paper's first batch size was measured
    assert "## Generated galaxies against simulated ones" in report
    for name in ("runs/cnn/model.pt", "runs/bnn/model.pt", "runs/vae/model.pt",
                 "runs/flow/model.pt", "eval/cnn/metrics.json", "eval/bnn/metrics.json",
                 "eval/generation/fidelity.json", "generated.png", "bench/report.md",
                 "bench/train_cnn.png"):
        assert (out / name).exists(), name
    for workload in ("train-cnn", "train-bnn", "generate"):  # every workload gets a share
        results = json.loads((out / "bench" / f"results-cpu-{workload}.json").read_text())
        assert results["schema"] == "cosmobench.bench" and results["complete"]
        assert any(r["status"] == "ok" for r in results["records"]), workload
    # a rerun skips every finished stage and rewrites the same report
    second = _demo(out)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("already done:") == 9


def test_demo_refuses_a_fidelity_floor_it_cannot_measure():
    with pytest.raises(CosmobenchError, match="--n-test must be at least 2 x --n-generate"):
        DemoConfig(n_test=10, n_generate=8)


def test_demo_bad_option_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cosmobench", "demo", "--out", str(tmp_path),
                        "--epochs", "0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0
    assert "epochs must be > 0" in r.stderr


def test_demo_benchmarks_only_what_the_cpu_runs_natively(monkeypatch):
    from cosmobench.bench.hardware import cpu_info
    from cosmobench.demo import _bench_config

    native = cpu_info().bf16_native
    assert ("bf16" in _bench_config("cpu", "train-cnn", 30.0).modes) is native
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # an AVX2-only machine, emulated
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cfg = _bench_config("cpu", "train-cnn", 30.0)
    assert cfg.modes == ("eager",) and cfg.budget_s == 30.0
