"""A few corpus cases through the real executable: one ``error:`` line, exit 2, no traceback
(and no warning printed by a library before it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "garbage-array": ["inspect", "{b[garbage_array]}"],
    "codec": ["train", "cnn", "--data", "{b[codec]}", "--out", "{tmp}/r", "--no-progress"],
    "huge-n": ["simulate", "--n", "100000000000", "--out", "{tmp}/h.zarr", "--no-progress"],
    "raw-pickle": ["evaluate", "{b[pickle_run]}", "--data", "{sim}", "--out", "{tmp}/e"],
    "records-string": ["compare", "{b[records_string]}", "--out", "{tmp}/rep"],
    "bench-out-folder": ["bench", "simulate", "--out", "{b[empty_dir]}"],
    "png-txt": ["inspect", "{sim}", "--png", "{tmp}/g.txt"],
    "cuda-graph": [
        "generate",
        "--vae",
        "{vae}",
        "--flow",
        "{flow}",
        "--n",
        "4",
        "--out",
        "{tmp}/g.zarr",
        "--cuda-graph",
    ],
}


@pytest.mark.parametrize("name", list(CASES))
def test_real_cli_prints_one_line(name, world, tmp_path):
    argv = [
        a.format(b=world.broken, sim=world.sim, vae=world.vae, flow=world.flow, tmp=tmp_path)
        for a in CASES[name]
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
    }
    r = subprocess.run(
        [sys.executable, "-m", "cosmobench", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stdout + r.stderr and not r.stdout.strip()
    assert list(tmp_path.iterdir()) == []
