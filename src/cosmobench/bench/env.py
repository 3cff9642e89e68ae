"""The environment a benchmark ran in: machine, threads, GPU, driver, versions, git commit.

Stored in every results file so that numbers from different machines can be compared and
told apart (:func:`machine_label`): the full CPU model string and the instruction set torch
may use (:mod:`cosmobench.bench.hardware`, emulation caps included), the GPU's name, SMs,
clocks and driver, torch/CUDA/cuDNN versions, threads, load, and the cosmobench commit --
read from git when the checkout has one (``+dirty`` when edited), else from the stamp
``setup.sh`` writes at install time (``src/cosmobench/_commit.txt``) or the
``COSMOBENCH_COMMIT`` variable. Nothing here needs more than torch: NVML is used through
``pynvml`` (package ``nvidia-ml-py``) when importable, and ``nvidia-smi`` otherwise.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import cosmobench
from cosmobench.bench.hardware import cpu_info, gpu_info

__all__ = [
    "capture_env",
    "cpu_model",
    "git_commit",
    "load_average",
    "machine_label",
    "script_meta",
    "write_script_json",
]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (the machine may be shared), or ``None``."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def script_meta(script: str, load_start: list[float] | None, t0: float,
                **settings: Any) -> dict[str, Any]:
    """What a script under ``benchmarks/`` records beside its table: its command line, the
    CPU and the instruction set torch uses, torch's version, the script's ``settings``, the
    load average at ``load_start`` and now, and the seconds since ``t0`` (``time.time()``)."""
    return {"command": f"python {script} " + " ".join(sys.argv[1:]), "cpu": cpu_model(),
            "capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            **settings, "load_average": [load_start, load_average()],
            "seconds": round(time.time() - t0, 1)}


def write_script_json(out: str | Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    """Write ``{"meta", "rows"}`` to ``out`` with the suffix ``.json`` (folders made); the path."""
    path = Path(out).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return path


STAMP = Path(cosmobench.__file__).resolve().parent / "_commit.txt"


def git_commit() -> str:
    """The commit of the cosmobench code running, ``+dirty`` if edited; never ``None``.

    Git when the checkout has a ``.git``; else the install-time stamp (``setup.sh``), else
    ``$COSMOBENCH_COMMIT``; else ``"unknown (no .git, no stamp)"``.
    """
    root = Path(cosmobench.__file__).resolve().parents[2]
    if (root / ".git").exists() and shutil.which("git") is not None:
        try:
            head = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
            return head + ("+dirty" if dirty else "")
        except (subprocess.SubprocessError, OSError):
            pass
    try:
        stamp = STAMP.read_text().strip()
        if stamp:
            return f"{stamp} (stamped at install)"
    except OSError:
        pass
    if os.environ.get("COSMOBENCH_COMMIT"):
        return f"{os.environ['COSMOBENCH_COMMIT']} (COSMOBENCH_COMMIT)"
    return "unknown (no .git, no stamp)"


def _gpu_info(device: torch.device) -> dict[str, Any]:
    return gpu_info(device)


def capture_env(device: torch.device, command: list[str] | None = None) -> dict[str, Any]:
    """Everything about the machine and software that a timing depends on.

    Arguments:
        device: the benchmarked device.
        command: the command line that produced the results (default ``sys.argv``).
    """
    env: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu": cpu_info().to_dict(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cosmobench": cosmobench.__version__,
        "git_commit": git_commit(),
        "device": str(device),
        "device_type": device.type,
        "gpu": _gpu_info(device) if device.type == "cuda" else None,
        "load_average_start": load_average(),
        "command": list(command if command is not None else sys.argv),
    }
    try:
        import zuko

        env["zuko"] = zuko.__version__
    except ImportError:
        env["zuko"] = None
    return env


def machine_label(env: dict[str, Any]) -> str:
    """A short name for the machine of a results file, e.g. ``NVIDIA H100 80GB HBM3`` or
    ``AMD EPYC (2 threads)``."""
    gpu = env.get("gpu")
    if gpu:
        return str(gpu.get("name", env.get("device", "gpu")))
    if env.get("device_type", "cpu") == "cpu":
        threads = env.get("threads", "?")
        isa = (env.get("cpu") or {}).get("isa")
        isa_txt = f", {isa}" if isa else ""
        return (f"{env.get('cpu_model', 'CPU')} ({threads} thread{'' if threads == 1 else 's'}"
                f"{isa_txt})")
    return str(env.get("device", "device"))
