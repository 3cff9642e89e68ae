"""Compiled CPU steps compute what the eager ones do, and write only their own memory.

torch 2.13's Inductor, left to its default 512-bit code on an AVX-512 CPU, generated
kernels that wrote past their buffers: on 2 Zen 4 cores a process that had run the compiled
CNN and BNN steps aborted with a corrupted heap (``double free or corruption``), the
compiled sampler decoder did too, and with ``ATEN_CPU_CAPABILITY=avx2`` the compiled CNN
step returned a NaN loss. Every cosmobench compile on a CPU therefore asks for 256-bit code
(``cosmobench.devices.inductor_options``). A heap overrun surfaces only when the allocator
next walks its lists, so the steps run in a child process that must exit cleanly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from cosmobench.devices import inductor_options
from cosmobench.models import ShapeConfig, ShapeNet
from cosmobench.train.step import compile_options

_CHILD = textwrap.dedent(
    """
    import copy
    import torch
    from cosmobench.bench.modes import mode_step
    from cosmobench.models import ShapeConfig, ShapeNet
    from cosmobench.train.step import make_optimizer, make_train_step

    torch.set_num_threads(2)
    for bayesian in (False, True):
        torch.manual_seed(0)
        eager_net = ShapeNet(ShapeConfig(bayesian=bayesian)).train()
        compiled_net = copy.deepcopy(eager_net)
        eager = make_train_step(eager_net, make_optimizer(eager_net), n_train=1000)
        compiled = mode_step(make_train_step(compiled_net, make_optimizer(compiled_net),
                                             n_train=1000), "compile")
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(4, 6, 64, 64, generator=g), 0.1 * torch.randn(4, 3, generator=g)
        for i in range(3):
            stale = torch.full((1 << 22,), float("nan"))  # 16 MB of NaNs for reuse
            del stale
            torch.manual_seed(i)  # the BNN's weight noise: the same draws on both sides
            ref = eager(x, y)
            torch.manual_seed(i)
            got = compiled(x, y)
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-3)
        for p, q in zip(eager_net.parameters(), compiled_net.parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-3, atol=5e-3)
        print("net", "bnn" if bayesian else "cnn", "ok", float(got), flush=True)
    """
)


def test_every_cpu_compile_asks_for_256_bit_code():
    assert inductor_options("cpu") == {"cpp.simdlen": 256}
    assert inductor_options("cuda") == {}
    cnn, bnn = ShapeNet(ShapeConfig()), ShapeNet(ShapeConfig(bayesian=True))
    assert compile_options(cnn) == {"cpp.simdlen": 256}
    assert compile_options(bnn) == {"cpp.simdlen": 256, "layout_optimization": False}


def test_compiled_steps_of_the_papers_networks_equal_the_eager_ones_and_exit_cleanly():
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get(
        "PYTHONPATH")])), "MALLOC_CHECK_": "3"}
    run = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "net cnn ok" in run.stdout and "net bnn ok" in run.stdout
