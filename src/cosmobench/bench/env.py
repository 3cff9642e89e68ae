"""The environment a benchmark ran in: machine, threads, GPU, driver, versions, git commit.

Stored in every results file so that numbers from different machines can be compared and
told apart (:func:`machine_label`). Nothing here needs more than torch: NVML is used through
``pynvml`` (package ``nvidia-ml-py``) when importable, and ``nvidia-smi`` otherwise.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

import cosmobench

__all__ = ["capture_env", "cpu_model", "git_commit", "load_average", "machine_label"]


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


def git_commit() -> str | None:
    """The commit of the cosmobench checkout this code runs from, with ``+dirty`` if edited."""
    root = Path(cosmobench.__file__).resolve().parents[2]
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return head + ("+dirty" if dirty else "")


def _gpu_info(device: torch.device) -> dict[str, Any]:
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
        "driver": None,
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        if isinstance(info["driver"], bytes):
            info["driver"] = info["driver"].decode()
    except Exception:  # pynvml absent or NVML unusable: ask nvidia-smi
        if shutil.which("nvidia-smi"):
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                    capture_output=True, text=True, timeout=20, check=True,
                ).stdout
                info["driver"] = out.strip().splitlines()[0] if out.strip() else None
            except (subprocess.SubprocessError, OSError):
                pass
    return info


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
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
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
        return f"{env.get('cpu_model', 'CPU')} ({threads} thread{'' if threads == 1 else 's'})"
    return str(env.get("device", "device"))
