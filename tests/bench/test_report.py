"""compare: the paper's figures and report from several results files and the reference."""

from __future__ import annotations

import pytest

from cosmobench.bench.report import compare
from cosmobench.bench.results import Record, Results
from cosmobench.bench.series import merge_series
from cosmobench.bench.timing import RawTiming
from cosmobench.errors import CosmobenchError
from cosmobench.reference import load_reference

IPU_CNN_B2 = 189.24  # the paper's IPU, s for 100 epochs at batch 2


def train_record(workload, mode, batch, step_s, status="ok"):
    timing = RawTiming(10, tuple(10 * step_s * f for f in (1.0, 1.01, 0.99))) \
        if status == "ok" else None
    return Record(workload=workload, mode=mode, size=batch, size_name="batch_size",
                  status=status, device="x", items_per_call=batch, timing=timing,
                  flops_per_call=0.6e9 * batch, peak_key="fp32", epochs_axis=True,
                  reason=None if status == "ok" else "OutOfMemoryError: simulated")


def gen_record(mode, n, call_s):
    return Record(workload="generate", mode=mode, size=n, size_name="n", status="ok",
                  device="x", items_per_call=n, timing=RawTiming(1, (call_s, call_s * 1.02)))


def make(env, records, path, peaks=None):
    res = Results(env=env, config={"protocol": "steady"}, records=records,
                  peaks=peaks or {"fp32": {"flops_per_s": 1e12, "roofline": True,
                                             "dtype": "float32"}},
                  complete=True)
    return res.save(path)


GPU_ENV = {"device": "cuda:0", "device_type": "cuda", "threads": 16, "torch": "2.11",
           "gpu": {"name": "Fake GPU 80GB", "driver": "999.1", "cuda": "13.0"}}
CPU_ENV = {"device": "cpu", "device_type": "cpu", "cpu_model": "Test CPU", "threads": 2,
           "torch": "2.13"}


@pytest.fixture
def two_files(tmp_path):
    # GPU: exactly half the IPU's time at batch 2 -> R = 0.5
    step = IPU_CNN_B2 / 2 / (100 * 8000 / 2)
    gpu = make(GPU_ENV, [
        train_record("train-cnn", "cudagraph", 2, step),
        train_record("train-cnn", "cudagraph", 14, step * 2),
        train_record("train-bnn", "cudagraph", 2, step * 3),
        gen_record("cudagraph", 1, 0.002), gen_record("cudagraph", 5000, 0.05),
    ], tmp_path / "gpu.json")
    cpu = make(CPU_ENV, [
        train_record("train-cnn", "eager", 2, 0.012),
        train_record("train-cnn", "eager", 4096, 0, status="oom"),
        Record(workload="train-cnn", mode="cudagraph", size=2, size_name="batch_size",
               status="unsupported", device="cpu", reason="CUDA graphs need a CUDA device"),
        gen_record("eager", 1, 0.03), gen_record("eager", 10, 0.05),
    ], tmp_path / "cpu.json")
    return gpu, cpu


def test_compare_draws_the_papers_figures_from_two_files(tmp_path, two_files):
    report = compare(list(two_files), tmp_path / "cmp")
    out = report.parent
    for name in ("train_cnn.png", "train_bnn.png", "generate.png", "mfu.png"):
        png = out / name
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    text = report.read_text()
    for needle in ("Fake GPU 80GB · cudagraph", "Test CPU (2 threads) · eager", "2,082",
                   "189", "999.1", "OutOfMemoryError: simulated",
                   "CUDA graphs need a CUDA device", "![train_cnn](train_cnn.png)"):
        assert needle in text, needle
    ratio_rows = [line for line in text.splitlines() if line.startswith("| 2 | 11 |")]
    assert ratio_rows and "| 0.5 |" in ratio_rows[0]  # R = t / t_IPU at batch 2


def test_compare_without_reference_and_cli(tmp_path, two_files):
    from cosmobench.cli import main

    report = compare([two_files[1]], tmp_path / "noref", reference=None)
    assert "paper V100" not in report.read_text()
    main(["compare", str(two_files[0]), "--out", str(tmp_path / "c2"), "--reference",
          "arcelin2021"])  # returns normally: exit status 0
    assert (tmp_path / "c2" / "report.md").is_file()


def test_compare_refuses_foreign_files_in_one_line(tmp_path, capsys):
    from cosmobench.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(SystemExit) as info:
        main(["compare", str(bad), "--out", str(tmp_path / "c")])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a cosmobench benchmark" in err
    assert "Traceback" not in err
    with pytest.raises(CosmobenchError, match="reference must be one of"):
        compare([bad], tmp_path / "c", reference="nature2030")


def test_same_machine_runs_merge_and_machines_stay_apart(tmp_path):
    a = make(CPU_ENV, [train_record("train-cnn", "eager", 2, 0.010)], tmp_path / "a.json")
    b = make(CPU_ENV, [train_record("train-cnn", "eager", 2, 0.011),
                       train_record("train-cnn", "eager", 4, 0.02)], tmp_path / "b.json")
    c = make(GPU_ENV, [train_record("train-cnn", "eager", 2, 0.001)], tmp_path / "c.json")
    from cosmobench.bench.results import load_results

    series = merge_series([load_results(p) for p in (a, b, c)])
    assert len(series) == 2
    cpu = series[0]
    assert sorted(cpu.points) == [2, 4] and cpu.points[2].stats().blocks == 6
    assert cpu.points[2].info["merged_runs"] == 2
    assert series[1].machine == "Fake GPU 80GB"


def test_reference_is_shipped_and_validated(tmp_path):
    ref = load_reference("arcelin2021")
    assert ref["train_shape_cnn"]["ipu_s"][0] == pytest.approx(IPU_CNN_B2)
    assert ref["generate"]["n"] == [1, 10, 100, 500, 1000, 5000]
    broken = tmp_path / "ref.json"
    broken.write_text('{"generate": {"n": [1, 2], "gpu_s": [1.0], "ipu_s": [1.0, 2.0]}}')
    with pytest.raises(CosmobenchError, match="equal length"):
        load_reference(broken)


def test_compare_refuses_to_merge_unlike_records(tmp_path):
    from cosmobench.bench.results import load_results
    from cosmobench.bench.series import kept_apart

    def rec(protocol="steady", data="synthetic", mem=100, mode="eager"):
        r = train_record("train-cnn", mode, 2, 0.01)
        r.protocol, r.info, r.peak_memory_bytes = protocol, {"data": data}, mem
        return r

    files = [make(CPU_ENV, [rec(mem=100)], tmp_path / "a.json"),
             make(CPU_ENV, [rec(protocol="paper", mem=999)], tmp_path / "b.json"),
             make(CPU_ENV, [rec(data="/x/train.zarr", mem=555)], tmp_path / "c.json"),
             make({**CPU_ENV, "threads": 4}, [rec(mem=777)], tmp_path / "d.json"),
             make(CPU_ENV, [rec(mem=300)], tmp_path / "e.json")]
    series = merge_series([load_results(p) for p in files])
    assert len(series) == 4  # only a.json and e.json are alike
    pooled = [s for s in series if len(s.sources) == 2]
    assert len(pooled) == 1 and pooled[0].points[2].peak_memory_bytes == 300  # largest of both
    for s in series:  # nobody else's memory in a series
        if len(s.sources) == 1:
            assert s.points[2].peak_memory_bytes in (999, 555, 777)
    (line,) = kept_apart(series)
    assert "4 series kept apart" in line and "machine" in line and "protocol" in line \
        and "data" in line
    text = compare(files, tmp_path / "cmp", reference=None).read_text()
    assert "kept apart" in text and "pooled from 2 files" in text
    assert "[fp32, paper, synthetic on device]" in text and "read from store" in text


def test_no_results_file_has_mfu_above_one():
    """MFU > 1 against the measured roofline is an instrument bug (every shipped file)."""
    from pathlib import Path

    from cosmobench.bench.results import load_results

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    files = [p for p in root.rglob("*.json")
             if '"schema": "cosmobench.bench"' in p.read_text()[:200]]
    assert files
    for path in files:
        res = load_results(path)
        for r in res.records:
            mfu = r.summary(res.peaks).get("mfu") if r.status == "ok" else None
            assert mfu is None or mfu <= 1.0, (path.name, r.key, mfu)


def test_mfu_above_one_is_flagged_and_old_single_matmul_peaks_give_no_mfu():
    fast = train_record("train-cnn", "compile", 2, 1e-6)  # 1.2e9 FLOPs in 1 µs
    roof = {"fp32": {"flops_per_s": 1e12, "roofline": True}}
    s = fast.summary(roof)
    assert s["mfu"] > 1 and s["mfu_above_roofline"]
    old = fast.summary({"fp32": {"flops_per_s": 1e12, "size": 2048}})  # schema 1: one mm
    assert old["mfu"] is None and old["mfu_vs_single_matmul"] > 1


def test_a_theoretical_peak_below_the_measured_roofline_is_flagged(tmp_path):
    """A clock read below the boost clock gives a 'peak' the machine beats: the report says so."""
    theory = {"flops_per_s": 0.8e12, "source": "2 cores x 2596 MHz (cpuinfo current)"}
    peaks = {"fp32": {"flops_per_s": 1e12, "roofline": True, "dtype": "float32",
                      "theoretical": theory}}
    low = make(CPU_ENV, [train_record("train-cnn", "eager", 2, 0.012)], tmp_path / "low.json",
               peaks=peaks)
    text = compare([low], tmp_path / "low", reference=None).read_text()
    assert "Theoretical peak below the measured roofline" in text and "cpuinfo current" in text
    assert "measured 1 > theoretical 0.8 TFLOP/s (+25.0 %" in text
    # close numbers are printed at the precision that tells them apart, not "0.157 > 0.157"
    peaks["fp32"] = {**peaks["fp32"], "flops_per_s": 0.15712e12,  # both 0.157 at 3 digits
                     "theoretical": {**theory, "flops_per_s": 0.15652e12}}
    close = make(CPU_ENV, [train_record("train-cnn", "eager", 2, 0.012)], tmp_path / "c.json",
                 peaks=peaks)
    text = compare([close], tmp_path / "c", reference=None).read_text()
    assert "measured 0.1571 > theoretical 0.1565 TFLOP/s (+0.4 %" in text
    peaks["fp32"] = {**peaks["fp32"], "flops_per_s": 1e12}
    peaks["fp32"]["theoretical"] = {**theory, "flops_per_s": 1.2e12}
    ok = make(CPU_ENV, [train_record("train-cnn", "eager", 2, 0.012)], tmp_path / "ok.json",
              peaks=peaks)
    assert "below the measured" not in compare([ok], tmp_path / "ok", reference=None).read_text()


def test_cpu_memory_is_labelled_as_resident_growth(tmp_path):
    """A CPU point's memory is the growth of the resident set (a lower bound of its need,
    since memory kept from earlier points is reused): the report says so; a CUDA point's
    is torch's peak allocation and keeps its plain label."""
    cpu_rec = train_record("train-cnn", "eager", 2, 0.012)
    cpu_rec.peak_memory_bytes, cpu_rec.memory_kind = 2**20, "rss_high_water_above_baseline"
    gpu_rec = train_record("train-cnn", "cudagraph", 2, 0.001)
    gpu_rec.peak_memory_bytes, gpu_rec.memory_kind = 2**30, "cuda_max_allocated_above_baseline"
    cpu = make(CPU_ENV, [cpu_rec], tmp_path / "cpu.json")
    gpu = make(GPU_ENV, [gpu_rec], tmp_path / "gpu.json")
    text = compare([cpu, gpu], tmp_path / "r", reference=None).read_text()
    cpu_part, gpu_part = text.split("### train-cnn — ")[1:3]
    if "Fake GPU" in cpu_part:
        cpu_part, gpu_part = gpu_part, cpu_part
    assert "RSS growth MiB" in cpu_part and "lower bound" in cpu_part
    assert "peak MiB" in gpu_part and "RSS growth" not in gpu_part
    # a schema-1 file's CPU figure was the process's absolute high-water mark
    old_rec = train_record("train-cnn", "eager", 2, 0.012)
    old_rec.peak_memory_bytes, old_rec.memory_kind = 2**28, "rss_high_water"
    old = make(CPU_ENV, [old_rec], tmp_path / "old.json")
    text = compare([old], tmp_path / "o", reference=None).read_text()
    assert "RSS peak MiB" in text and "RSS growth" not in text
