"""A killed `simulate` resumes to the same bytes; 1, 2 workers and Dask give the same data."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cosmobench.sim import SimConfig, simulate
from cosmobench.store import open_dataset

N, CHUNK, SEED = 240, 8, 77
CFG = SimConfig(n=N, seed=SEED, chunk_size=CHUNK)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _same_arrays(a: Path, b: Path) -> None:
    da, db = open_dataset(a), open_dataset(b)
    assert da.columns == db.columns and da.n == db.n
    for name in da.columns:
        np.testing.assert_array_equal(da.column(name), db.column(name), err_msg=name)
    for name in da.image_names:
        np.testing.assert_array_equal(da.images(name), db.images(name), err_msg=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    return simulate(CFG, tmp_path_factory.mktemp("ref") / "ref.zarr", progress=False)


def test_killed_simulate_resumes_to_identical_bytes(reference, tmp_path):
    out = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "cosmobench", "simulate", "--n", str(N), "--seed", str(SEED),
           "--chunk-size", str(CHUNK), "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_dir = out / "done" / "c"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if done_dir.is_dir() and len(os.listdir(done_dir)) >= 3:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    n_done = len(os.listdir(done_dir))
    assert 3 <= n_done < N // CHUNK, "the kill must land mid-run"
    with pytest.raises(Exception, match="incomplete"):
        open_dataset(out)
    before = {p: p.stat().st_mtime_ns for p in (out / "noisy").rglob("*") if p.is_file()}

    simulate(CFG, out, progress=False)  # the same command again: resumes

    assert _files(out) == _files(reference)
    # chunks finished before the kill were not redone
    kept = [p for p, t in before.items() if p.stat().st_mtime_ns == t]
    assert len(kept) >= n_done


def test_two_worker_processes_give_the_same_data(reference, tmp_path):
    out = simulate(CFG.replace(chunk_size=16), tmp_path / "w2.zarr", workers=2, progress=False)
    _same_arrays(out, reference)


def test_local_dask_cluster_gives_the_same_bytes(reference, tmp_path):
    pytest.importorskip("dask.distributed")
    out = simulate(CFG, tmp_path / "dask.zarr", workers=2, scheduler="local", progress=False)
    assert _files(out) == _files(reference)
