"""Hardware detection: ISA from the CPU's flags capped by torch's and oneDNN's settings,
the theoretical peak, GPU datasheet figures, and the provenance of results."""

from __future__ import annotations

import pytest
import torch

from cosmobench.bench import env as bench_env
from cosmobench.bench.hardware import cpu_info, gpu_datasheet, theoretical_peak
from cosmobench.bench.modes import not_native_reason, parse_mode, supported_modes

AMX_FLAGS = "fpu avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8"
CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+ @ 2.00GHz
cpu MHz\t\t: 1000.000
physical id\t: 0
cpu cores\t: 56
flags\t\t: {flags}
"""
EPYC = """model name\t: AMD EPYC 7B13 64-Core Processor
cpu MHz\t\t: 2450.000
cpu cores\t: 2
flags\t\t: fpu avx avx2 fma
"""


def test_flags_give_the_isa_and_bf16():
    amx = cpu_info(CPUINFO.format(flags=AMX_FLAGS), environ={}, torch_capability="AVX512")
    assert amx.isa == "amx" and amx.bf16_native and amx.bf16_reason() is None
    assert amx.model == "Intel(R) Xeon(R) Platinum 8480+ @ 2.00GHz" and amx.physical_cores == 56
    epyc = cpu_info(EPYC, environ={}, torch_capability="AVX2")
    assert epyc.isa == "avx2" and not epyc.bf16_native
    assert "no native bf16" in epyc.bf16_reason()


def test_emulation_caps_lower_the_isa():
    text = CPUINFO.format(flags=AMX_FLAGS)
    for environ, cap in (({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX512"),
                         ({"ATEN_CPU_CAPABILITY": "avx2"}, "AVX2"),
                         ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "AVX512")):
        cpu = cpu_info(text, environ=environ, torch_capability=cap)
        assert not cpu.bf16_native, environ
        assert "disabled" in cpu.bf16_reason() and cpu.flags_isa == "amx"
    kept = cpu_info(text, environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
                    torch_capability="AVX512")
    assert kept.isa == "avx512_bf16" and kept.bf16_native


def test_the_real_process_honours_the_caps(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cpu = torch.device("cpu")
    assert not cpu_info().bf16_native
    assert not_native_reason(parse_mode("compile+bf16"), cpu) is not None
    assert supported_modes(["all"], cpu) == ("eager", "channels-last", "compile",
                                             "compile+channels-last")


def test_theoretical_peak_is_cores_times_clock_times_flops_per_cycle():
    amx = cpu_info(CPUINFO.format(flags=AMX_FLAGS), environ={}, torch_capability="AVX512")
    fp32 = theoretical_peak(torch.device("cpu"), "fp32", 2, cpu=amx)
    assert fp32["flops_per_s"] == 2 * 2000e6 * 64  # from the model name's 2.00 GHz
    bf16 = theoretical_peak(torch.device("cpu"), "bf16", 2, cpu=amx)
    assert bf16["flops_per_s"] == 2 * 2000e6 * 1024 and "amx" in bf16["source"]
    epyc = cpu_info(EPYC, environ={}, torch_capability="AVX2")
    assert theoretical_peak(torch.device("cpu"), "fp32", 8, cpu=epyc)["flops_per_s"] == \
        2 * 2450e6 * 32  # capped at the 2 cores


ZEN4 = """vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.146
cpu cores\t: 2
flags\t\t: fpu avx avx2 fma avx512f avx512bw avx512_bf16
"""


def test_zen4_runs_avx512_at_half_intels_rate():
    """Zen 4 has AVX-512 (and bf16) on 256-bit units: half Intel's FLOPs per cycle."""
    zen4 = cpu_info(ZEN4, environ={}, torch_capability="AVX512")
    assert (zen4.vendor, zen4.family, zen4.isa) == ("AuthenticAMD", 25, "avx512_bf16")
    cpu = torch.device("cpu")
    fp32, bf16 = (theoretical_peak(cpu, p, 2, cpu=zen4) for p in ("fp32", "bf16"))
    assert fp32["flops_per_s"] == pytest.approx(2 * 2596.146e6 * 32) and "Zen 4" in fp32["source"]
    assert bf16["flops_per_s"] == pytest.approx(2 * 2596.146e6 * 64)
    # the same flags on an Intel core, and a later AMD family, keep the full-width rate
    intel = cpu_info(ZEN4.replace("AuthenticAMD", "GenuineIntel"), environ={},
                     torch_capability="AVX512")
    zen5 = cpu_info(ZEN4.replace("family\t: 25", "family\t: 26"), environ={},
                    torch_capability="AVX512")
    for other in (intel, zen5):
        assert theoretical_peak(cpu, "fp32", 2, cpu=other)["flops_per_s"] == \
            pytest.approx(2 * 2596.146e6 * 64)
    # capped to AVX2, the 256-bit rate, with no Zen 4 halving on top
    capped = cpu_info(ZEN4, environ={"ATEN_CPU_CAPABILITY": "avx2"}, torch_capability="AVX2")
    assert theoretical_peak(cpu, "fp32", 2, cpu=capped)["flops_per_s"] == \
        pytest.approx(2 * 2596.146e6 * 32)


def test_gpu_datasheet_by_name():
    assert gpu_datasheet("NVIDIA H100 80GB HBM3")["bf16"] == 989.4
    assert gpu_datasheet("NVIDIA H100 PCIe")["fp32"] == 51.2
    assert gpu_datasheet("NVIDIA A100-SXM4-40GB")["tf32"] == 156.0
    assert gpu_datasheet("Tesla V100-SXM2-16GB")["bf16"] is None
    assert gpu_datasheet("NVIDIA L4")["fp32"] == 30.3
    assert gpu_datasheet("Some Future GPU") is None


def test_results_name_the_commit_and_the_cpu(monkeypatch, tmp_path):
    env = bench_env.capture_env(torch.device("cpu"), ["x"])
    assert env["git_commit"] and env["cpu"]["isa"] and env["cpu"]["model"] == env["cpu_model"]
    assert "torch" in env and "cuda" in env and env["threads"] >= 1
    # no .git: the install stamp, then the environment variable
    monkeypatch.setattr(bench_env, "cosmobench", type("M", (), {
        "__file__": str(tmp_path / "a" / "b" / "cosmobench" / "__init__.py")}))
    monkeypatch.setattr(bench_env, "STAMP", tmp_path / "none.txt")
    monkeypatch.delenv("COSMOBENCH_COMMIT", raising=False)
    assert bench_env.git_commit() == "unknown (no .git, no stamp)"
    monkeypatch.setenv("COSMOBENCH_COMMIT", "abc123")
    assert bench_env.git_commit().startswith("abc123")
    (tmp_path / "none.txt").write_text("def456+dirty\n")
    assert bench_env.git_commit() == "def456+dirty (stamped at install)"


def test_torchs_own_dispatch_level_alone_does_not_hide_bf16():
    # torch may dispatch its own kernels at AVX2 on a CPU whose oneDNN matmuls still use bf16
    zen4 = cpu_info(CPUINFO.format(flags="avx avx2 fma avx512f avx512_bf16"), environ={},
                    torch_capability="AVX2")
    assert zen4.isa == "avx512_bf16" and zen4.bf16_native
    assert cpu_info("", environ={}, torch_capability="AVX2").isa == "avx2"  # no flags: torch's
