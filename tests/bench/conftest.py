"""Fixtures of the benchmark tests: fake workloads of known cost, tiny real networks."""

from __future__ import annotations

import time

import pytest
import torch

from cosmobench.bench.generation import GenerateWorkload
from cosmobench.bench.modes import Mode
from cosmobench.bench.workloads import BuildContext, Case, InferWorkload, TrainWorkload, Workload

#: A shape network small enough for a CPU test: 16x16 stamps, two blocks.
TINY_SHAPE = {"image_size": 16, "filters": (4, 8)}


class SleepWorkload(Workload):
    """Each call sleeps ``size`` milliseconds: a workload of known duration."""

    name = "sleep"

    def __init__(self) -> None:
        self.calls = 0

    def build(self, mode: Mode, size: int, ctx: BuildContext) -> Case:
        def call() -> None:
            self.calls += 1
            time.sleep(size / 1e3)

        return Case(call=call, items_per_call=size, flops_per_call=1e6)


class OOMWorkload(Workload):
    """Raises ``torch.OutOfMemoryError`` above ``capacity`` (a simulated device memory)."""

    name = "oom"

    def __init__(self, capacity: int, *, on_call: bool = False) -> None:
        self.capacity, self.on_call = capacity, on_call
        self.built: list[int] = []

    def build(self, mode: Mode, size: int, ctx: BuildContext) -> Case:
        self.built.append(size)

        def fail() -> None:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {size} GiB (simulated)"
            )

        if size > self.capacity and not self.on_call:
            fail()
        return Case(call=fail if size > self.capacity else (lambda: None), items_per_call=size)


class BrokenWorkload(Workload):
    """Fails with an ordinary exception."""

    name = "broken"

    def build(self, mode: Mode, size: int, ctx: BuildContext) -> Case:
        raise ValueError("broken on purpose")


@pytest.fixture(autouse=True)
def _quick_peaks(monkeypatch):
    """The runner's peak measurement on a small matrix, for speed (same code path)."""
    import cosmobench.bench.runner as runner
    from cosmobench.bench.peak import measure_peaks

    monkeypatch.setattr(runner, "measure_peaks", lambda device, precisions, **kw: measure_peaks(
        device, precisions, sizes=(128, 256), min_run_time=0.02, deadline=kw.get("deadline")))


@pytest.fixture
def sleep_workload() -> SleepWorkload:
    return SleepWorkload()


@pytest.fixture
def tiny_registry() -> dict[str, Workload]:
    """The real workloads (the trainer's step, the real sampler) on tiny networks."""
    return {
        "train-cnn": TrainWorkload("train-cnn", bayesian=False, model_config=TINY_SHAPE),
        "train-bnn": TrainWorkload("train-bnn", bayesian=True, model_config=TINY_SHAPE),
        "infer-cnn": InferWorkload("infer-cnn", bayesian=False, model_config=TINY_SHAPE),
        "generate": GenerateWorkload(
            vae_config={"latent": 4, "image_size": 16, "filters": (4, 8), "hidden": 16},
            flow_config={"transforms": 2, "hidden": (16, 16)},
        ),
    }


@pytest.fixture
def workload_classes():
    return {"SleepWorkload": SleepWorkload, "OOMWorkload": OOMWorkload,
            "BrokenWorkload": BrokenWorkload}
