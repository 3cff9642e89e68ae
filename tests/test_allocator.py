"""Freed CPU memory is kept by glibc's malloc: a training step stops page-faulting."""

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
torch.set_num_threads(1)
torch.manual_seed(0)
net = ShapeNet(ShapeConfig(bayesian=True))  # the paper's BNN: ~1 s for these steps
step = make_train_step(net, make_optimizer(net), n_train=10)  # a CPU step sets it
x, y = torch.randn(2, 6, 64, 64), torch.zeros(2, 3)
for _ in range(3):
    step(x, y)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step(x, y)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
print(json.dumps({"kept": retain_freed_memory(), "faults": faults}))
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
    # glibc's default maps the step's freed activations afresh (~4,500 faults a step on the
    # machines here); kept, the pages are reused
    assert default["faults"] > 1000
    assert kept["faults"] < default["faults"] / 5
