"""What the hardware can do: the CPU's instruction sets and the GPU's datasheet peak.

A benchmark that times a mode the device cannot run natively measures an emulation, not the
device: a bf16 matrix product on a CPU without ``avx512_bf16`` or AMX is converted to fp32
element by element and is tens of times slower than fp32. :func:`cpu_info` reads the CPU's
model name, cores, clock and instruction-set flags from ``/proc/cpuinfo`` and combines them
with ``torch.backends.cpu.get_cpu_capability()`` and the two environment variables that cap
what torch and oneDNN use -- ``ATEN_CPU_CAPABILITY`` (``default``, ``avx2``, ``avx512``) and
``ONEDNN_MAX_CPU_ISA`` (``AVX2``, ``AVX512_CORE``, ``AVX512_CORE_BF16``,
``AVX512_CORE_AMX`` ...; oneDNN's "CPU dispatcher control" documentation). With
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` an AMX machine therefore behaves, and is
described, as an AVX2-only one.

The theoretical peak is cores x clock x FLOPs per cycle of the instruction set
(:data:`FLOPS_PER_CYCLE`: two FMA units per core, an FMA being two FLOPs; AMX's tile
multiply does 1,024 bf16 FLOPs per cycle, Intel's *Optimization Reference Manual*, ch. 20),
or the datasheet figure of a GPU (:data:`GPU_DATASHEET`, dense, without sparsity). It is
an upper bound the measured roofline (:mod:`cosmobench.bench.peak`) is shown next to.
AMD's Zen 4 (family 19h) runs AVX-512 on 256-bit floating-point units, each 512-bit
instruction in two halves (AMD's *Software Optimization Guide for the Zen 4
Microarchitecture*, 57647), so its AVX-512 rates are half of Intel's
(:func:`flops_per_cycle`). Where the clock is read from ``cpu MHz`` (a virtual machine shows
no maximum), it is the clock the kernel last saw, and a core that boosts above it can beat
the 'peak': the report then says the peak is below the measured roofline.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "FLOPS_PER_CYCLE",
    "GPU_DATASHEET",
    "ISA_LEVELS",
    "CpuInfo",
    "cpu_info",
    "flops_per_cycle",
    "gpu_datasheet",
    "gpu_info",
    "theoretical_peak",
]

#: Instruction-set levels, lowest first (the effective ISA is the lowest of what the CPU
#: has and what torch and oneDNN are allowed to use).
ISA_LEVELS = ("none", "avx", "avx2", "avx512", "avx512_bf16", "amx")

#: FLOPs per cycle per core by ISA and precision: 2 FMA units x lanes x 2 FLOPs. bf16 on an
#: ISA without bf16 instructions runs on the fp32 units (after conversion), hence fp32's rate.
FLOPS_PER_CYCLE = {
    "none": {"fp32": 4.0, "bf16": 4.0},
    "avx": {"fp32": 16.0, "bf16": 16.0},
    "avx2": {"fp32": 32.0, "bf16": 32.0},
    "avx512": {"fp32": 64.0, "bf16": 64.0},
    "avx512_bf16": {"fp32": 64.0, "bf16": 128.0},
    "amx": {"fp32": 64.0, "bf16": 1024.0},
}

#: Dense datasheet peaks (TFLOP/s) by GPU name fragment, most specific first. tf32 and bf16
#: are tensor-core figures; ``None``: not supported.
GPU_DATASHEET: tuple[tuple[str, dict[str, float | None]], ...] = (
    ("H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),
    ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    ("L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.0}),
    ("L40", {"fp32": 90.5, "tf32": 90.5, "bf16": 181.0}),
    ("L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
    ("A10G", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}),
    ("A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}),
    ("V100", {"fp32": 15.7, "tf32": None, "bf16": None}),
    ("T4", {"fp32": 8.1, "tf32": None, "bf16": None}),
)

_ONEDNN = {  # ONEDNN_MAX_CPU_ISA value -> ISA level
    "SSE41": "none", "AVX": "avx", "AVX2": "avx2", "AVX2_VNNI": "avx2", "AVX2_VNNI_2": "avx2",
    "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512", "AVX512_CORE_BF16": "avx512_bf16",
    "AVX512_CORE_FP16": "avx512_bf16", "AVX10_1_512": "avx512_bf16",
    "AVX512_CORE_AMX": "amx", "AVX512_CORE_AMX_FP16": "amx", "AVX10_1_512_AMX": "amx",
    "AVX10_1_512_AMX_FP16": "amx", "ALL": "amx", "DEFAULT": "amx",
}
_ATEN = {"DEFAULT": "none", "AVX2": "avx2", "AVX512": "amx", "ZVECTOR": "none",
         "NEON": "none", "SVE256": "none"}


def _rank(level: str) -> int:
    return ISA_LEVELS.index(level)


def _flags_isa(flags: set[str]) -> str:
    if "amx_bf16" in flags and "amx_tile" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    if "avx" in flags:
        return "avx"
    return "none"


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    """The CPU as the benchmark sees it.

    Attributes:
        model: full model name (``/proc/cpuinfo``'s ``model name``).
        flags_isa: the best ISA the CPU's flags announce.
        isa: the ISA torch and oneDNN may use here (the lowest of ``flags_isa`` and the caps).
        torch_capability: ``torch.backends.cpu.get_cpu_capability()``.
        caps: environment caps in force (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``).
        logical_cpus: CPUs this process may run on; physical_cores: cores per socket x sockets
            where readable.
        mhz: maximum (else nominal, else current) clock in MHz; mhz_source says which.
        vendor: ``vendor_id`` (``GenuineIntel``, ``AuthenticAMD``); family: ``cpu family``.
    """

    model: str
    flags_isa: str
    isa: str
    torch_capability: str
    caps: dict[str, str]
    logical_cpus: int
    physical_cores: int | None
    mhz: float | None
    mhz_source: str | None
    vendor: str = ""
    family: int | None = None

    @property
    def bf16_native(self) -> bool:
        """Whether bf16 products run on bf16 instructions (AVX-512 BF16 or AMX)."""
        return _rank(self.isa) >= _rank("avx512_bf16")

    def bf16_reason(self) -> str | None:
        """Why bf16 is not native here (``None`` when it is)."""
        if self.bf16_native:
            return None
        if _rank(self.flags_isa) >= _rank("avx512_bf16"):
            capped = ", ".join(f"{k}={v}" for k, v in self.caps.items()) or "torch"
            return (f"bf16 instructions disabled ({capped}: ISA capped at {self.isa}); "
                    "bf16 would be emulated in fp32, tens of times slower; use fp32 modes")
        return (f"this CPU ({self.isa}) has no native bf16 instructions (needs avx512_bf16 "
                "or AMX); bf16 would be emulated, tens of times slower; use fp32 modes")

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with ``bf16_native``."""
        return {**dataclasses.asdict(self), "bf16_native": self.bf16_native}


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _max_mhz(cpuinfo: str, model: str) -> tuple[float | None, str | None]:
    try:
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        return float(khz) / 1e3, "cpufreq max"
    except (OSError, ValueError):
        pass
    m = re.search(r"@\s*([\d.]+)\s*GHz", model)
    if m:
        return float(m.group(1)) * 1e3, "model name"
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
    if m:
        return float(m.group(1)), "cpuinfo current"
    return None, None


def cpu_info(cpuinfo: str | None = None, environ: Mapping[str, str] | None = None,
             torch_capability: str | None = None) -> CpuInfo:
    """Detect the CPU (arguments override the sources, for tests)."""
    text = _read_cpuinfo() if cpuinfo is None else cpuinfo
    env = os.environ if environ is None else environ
    model = vendor = ""
    family = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "cpu family" and family is None and value.strip().isdigit():
            family = int(value.strip())
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    cap = (torch_capability if torch_capability is not None
           else torch.backends.cpu.get_cpu_capability()).upper()
    flags_isa = _flags_isa(flags) if flags else ("avx2" if cap == "AVX2" else
                                                  "avx512" if cap == "AVX512" else "none")
    isa = flags_isa
    caps: dict[str, str] = {}
    aten = env.get("ATEN_CPU_CAPABILITY")
    if aten:
        caps["ATEN_CPU_CAPABILITY"] = aten
    onednn = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA")
    if onednn:
        caps["ONEDNN_MAX_CPU_ISA"] = onednn
        level = _ONEDNN.get(onednn.upper(), "amx")
        if _rank(level) < _rank(isa):
            isa = level
    if aten or not flags:  # torch's dispatch level caps the ISA when it was capped on
        for level in (_ATEN.get(cap, "amx"), _ATEN.get((aten or "").upper(), "amx")):
            if _rank(level) < _rank(isa):  # purpose (or is all that is known)
                isa = level
    physical = None
    cores = re.search(r"^cpu cores\s*:\s*(\d+)", text, re.M)
    sockets = {m.group(1) for m in re.finditer(r"^physical id\s*:\s*(\d+)", text, re.M)}
    if cores:
        physical = int(cores.group(1)) * max(1, len(sockets))
    try:
        logical = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        logical = os.cpu_count() or 1
    mhz, source = _max_mhz(text, model)
    return CpuInfo(model=model, flags_isa=flags_isa, isa=isa, torch_capability=cap, caps=caps,
                   logical_cpus=logical, physical_cores=physical, mhz=mhz, mhz_source=source,
                   vendor=vendor, family=family)


#: AMD families whose AVX-512 runs on 256-bit units (19h: Zen 3, which has none, and Zen 4).
_HALF_WIDTH_AVX512 = {("AuthenticAMD", 0x19)}


def flops_per_cycle(cpu: CpuInfo, precision: str) -> tuple[float, str]:
    """FLOPs per cycle per core for ``precision`` on ``cpu``, and a note on where from."""
    key = "bf16" if precision == "bf16" else "fp32"
    rate = FLOPS_PER_CYCLE[cpu.isa][key]
    if cpu.isa in ("avx512", "avx512_bf16") and (cpu.vendor, cpu.family) in _HALF_WIDTH_AVX512:
        return rate / 2, f"{cpu.isa} on 256-bit units, AMD Zen 4"
    return rate, cpu.isa


def gpu_datasheet(name: str) -> dict[str, float | None] | None:
    """Datasheet TFLOP/s of a GPU by name (``None`` for an unknown GPU)."""
    for fragment, peaks in GPU_DATASHEET:
        if fragment.lower() in name.lower():
            return peaks
    return None


def _nvml_handle(device: torch.device) -> Any:
    import pynvml

    pynvml.nvmlInit()
    uuid = str(torch.cuda.get_device_properties(device).uuid).removeprefix("GPU-")
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        u = pynvml.nvmlDeviceGetUUID(h)
        u = u.decode() if isinstance(u, bytes) else u
        if u.removeprefix("GPU-") == uuid:
            return pynvml, h
    raise RuntimeError("no NVML device matches the torch device's UUID")


def _smi(query: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    return out.strip().splitlines()[0].strip() if out.strip() else None


def gpu_info(device: torch.device) -> dict[str, Any]:
    """Name, SMs, memory, clocks, driver, CUDA/cuDNN and TF32 flags of a CUDA device."""
    props = torch.cuda.get_device_properties(device)
    info: dict[str, Any] = {
        "name": props.name,
        "memory_bytes": int(props.total_memory),
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "driver": None, "sm_clock_max_mhz": None, "power_limit_w": None,
        "datasheet_tflops": gpu_datasheet(props.name),
    }
    try:
        nvml, h = _nvml_handle(device)
        drv = nvml.nvmlSystemGetDriverVersion()
        info["driver"] = drv.decode() if isinstance(drv, bytes) else drv
        info["sm_clock_max_mhz"] = nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM)
        info["power_limit_w"] = nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3
    except Exception:  # pynvml absent or NVML unusable: ask nvidia-smi
        info["driver"] = _smi("driver_version")
        clock = _smi("clocks.max.sm")
        if clock:
            info["sm_clock_max_mhz"] = float(clock.split()[0]) if clock[0].isdigit() else None
    return info


def theoretical_peak(device: torch.device, precision: str, threads: int,
                     cpu: CpuInfo | None = None) -> dict[str, Any]:
    """The device's theoretical peak FLOP/s for ``precision`` and how it was obtained."""
    if device.type == "cuda":
        name = torch.cuda.get_device_properties(device).name
        sheet = gpu_datasheet(name)
        value = (sheet or {}).get(precision)
        if value is None:
            return {"flops_per_s": None,
                    "source": f"no datasheet figure for {name} ({precision})"}
        return {"flops_per_s": value * 1e12, "source": f"datasheet, {name}, dense {precision}"}
    if device.type != "cpu":
        return {"flops_per_s": None, "source": f"unknown for {device.type}"}
    cpu = cpu or cpu_info()
    if cpu.mhz is None:
        return {"flops_per_s": None, "source": "CPU clock not readable"}
    cores = min(threads, cpu.physical_cores or threads, cpu.logical_cpus)
    per_cycle, how = flops_per_cycle(cpu, precision)
    return {"flops_per_s": cores * cpu.mhz * 1e6 * per_cycle,
            "source": f"{cores} cores x {cpu.mhz:.0f} MHz ({cpu.mhz_source}) x "
                      f"{per_cycle:g} FLOP/cycle ({how}, {precision})"}
