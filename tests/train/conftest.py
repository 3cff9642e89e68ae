"""Helpers for the training tests: the CLI run in-process, hand-made small stores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def one_thread():
    """Train on one thread: a machine shared with other jobs runs two OpenMP threads per
    process many times slower than one (they spin waiting for each other), and the
    subprocesses of these tests get the same count, which bit-identical resume needs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_store(path: Path, n: int = 40, *, columns=("index", "e1", "e2", "redshift"),
                images=("noisy", "noiseless"), nan_pixels: int = 0, inf_labels: int = 0,
                size: int = 64, seed: int = 0) -> Path:
    """A small store of round blobs with random labels, written through the store writer."""
    from cosmobench.store import create_or_resume

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(xx**2 + yy**2) / 18.0)
    clean = (rng.uniform(500, 5000, (n, 6, 1, 1)) * blob).astype(np.float32)
    noisy = clean + rng.normal(0, 30, clean.shape).astype(np.float32)
    for i in range(nan_pixels):
        noisy[i, i % 6, 3, 4] = np.nan
    cols = {"index": np.arange(n), "e1": rng.normal(0, 0.2, n), "e2": rng.normal(0, 0.2, n),
            "redshift": rng.uniform(0.1, 2.0, n)}
    for i in range(inf_labels):
        cols["redshift"][n - 1 - i] = np.inf
    spec = {c: ("int64" if c == "index" else "float32") for c in columns}
    w = create_or_resume(path, n, n, "simulation", {"test": True}, spec, images,
                         stamp_size=size)
    w.write_chunk(0, {k: {"noisy": noisy, "noiseless": clean}[k] for k in images},
                  {c: cols[c] for c in columns})
    return w.finalize()


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` and its bytes (to show that nothing changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="session")
def write_store():
    """``write_store(path, n=40, columns=..., images=..., nan_pixels=0, inf_labels=0,
    size=64)``: a small hand-made store of round blobs with random labels."""
    return _write_store


@pytest.fixture(scope="session")
def tree():
    """``tree(folder)``: every file of ``folder`` with its bytes (nothing-changed checks)."""
    return _tree




def _kill_inside_an_epoch(run: Path, *argv: str) -> None:
    """Run ``python -m cosmobench *argv`` training into ``run``, and SIGKILL it half a second
    after its first epoch's checkpoint appears (inside the next epoch)."""
    import torch

    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-m", "cosmobench", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="session")
def kill_inside_an_epoch():
    """``kill_inside_an_epoch(run, *argv)``: a training subprocess killed (SIGKILL) inside
    its second epoch, leaving the first epoch's checkpoint in ``run``."""
    return _kill_inside_an_epoch
