"""Killing a multi-worker ``simulate`` leaves no process behind (workers, forkserver, tracker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")


def _session(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(stat[3]) == sid and stat[0] not in (b"Z", b"X"):
            pids.append(int(d))
    return pids


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_simulate_leaves_no_process(tmp_path, sig):
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src}
    p = subprocess.Popen(
        [sys.executable, "-m", "cosmobench", "simulate", "--n", "400", "--chunk-size", "8",
         "--workers", "2", "--no-measure", "--no-progress", "--out", str(tmp_path / "d.zarr")],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    sid = p.pid
    deadline = time.monotonic() + 60
    while len(_session(sid)) < 4 and time.monotonic() < deadline:  # main, forkserver, workers
        time.sleep(0.2)
    assert p.poll() is None, p.stderr.read().decode()
    assert len(_session(sid)) >= 4, "the workers never started"
    os.kill(p.pid, sig)
    p.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _session(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _session(sid)
    for pid in left:  # do not leak them into the machine if the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"
