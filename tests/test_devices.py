"""The one device check every command uses (cosmobench.devices)."""

from __future__ import annotations

import pytest
import torch

from cosmobench.devices import resolve_device
from cosmobench.errors import CosmobenchError


def test_cpu_is_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "cpu:zero"])
def test_unknown_device_names_what_is_allowed(name: str) -> None:
    with pytest.raises(CosmobenchError, match="must be a torch device .*cpu, cuda"):
        resolve_device(name)


def test_cuda_without_cuda_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CosmobenchError, match="CUDA is not available.*--device cpu"):
        resolve_device("cuda")


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this machine has two GPUs, the current one being cuda:0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


@pytest.mark.usefixtures("two_gpus")
def test_cuda_index_past_the_last_gpu_is_refused() -> None:
    with pytest.raises(CosmobenchError, match=r"2 CUDA device\(s\) here \(cuda:0 .. cuda:1\)"):
        resolve_device("cuda:2")


@pytest.mark.usefixtures("two_gpus")
def test_bare_cuda_follows_the_local_rank() -> None:
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=3) == torch.device("cuda", 1)  # 3 mod 2
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
