"""Freed CPU memory is kept by glibc's malloc: a repeated allocation stops page-faulting."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = """
import json, resource, torch
from cosmobench.allocator import retain_freed_memory
from cosmobench.models import ShapeNet, ShapeConfig
from cosmobench.train.step import make_optimizer, make_train_step
net = ShapeNet(ShapeConfig(image_size=16, filters=(4, 8)))
make_train_step(net, make_optimizer(net), n_train=10)  # a CPU step sets it
kept = retain_freed_memory()
def step():  # a step's activations: several 8 MiB blocks written, then all freed
    blocks = [torch.empty(8 << 20, dtype=torch.uint8).fill_(1) for _ in range(6)]
    del blocks
step(), step()  # warm-up: glibc's adaptive thresholds settle, the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "faults": faults}))
"""


def _run(keep: str) -> dict:
    env = {**os.environ, "COSMOBENCH_KEEP_MALLOC": keep}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux's")
def test_training_step_keeps_freed_memory_and_stops_page_faults():
    kept, default = _run("1"), _run("0")
    assert kept["kept"] is True and default["kept"] is False
    pages = 10 * 6 * (8 << 20) // 4096
    assert default["faults"] > pages // 2  # glibc's default returns and refaults the pages
    assert kept["faults"] < pages // 50  # kept: the same pages are reused
