"""Kill a training run (SIGKILL, mid-epoch), resume it: it ends bit-identical on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cosmobench.files import load_checkpoint

ARGS = ["--epochs", "2", "--batch-size", "8", "--seed", "7", "--no-progress"]


def _strip_times(path):
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows:
        r.pop("seconds", None)
        r.pop("images_per_s", None)
    return rows


@pytest.mark.slow
def test_bnn_resumed_after_sigkill_matches_an_uninterrupted_run(tiny_dataset, tmp_path, cli):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosmobench", "train", "bnn", "--data", str(tiny_dataset),
         "--out", str(killed), *ARGS], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:  # wait for epoch 1's checkpoint, then kill the run inside epoch 2
        deadline = time.monotonic() + 300
        while not (killed / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(killed / "checkpoint.pt")["epoch"] < 2  # it was cut short
    assert not (killed / "model.pt").exists()

    code, _, err = cli("train", "bnn", "--data", tiny_dataset, "--out", killed, "--resume",
                       "--no-progress")
    assert code == 0, err
    assert "resuming after epoch" in err
    code, _, err = cli("train", "bnn", "--data", tiny_dataset, "--out", whole, *ARGS)
    assert code == 0, err

    a, b = load_checkpoint(whole / "model.pt"), load_checkpoint(killed / "model.pt")
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    ca, cb = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    for k in ca["state_dict"]:
        assert torch.equal(ca["state_dict"][k], cb["state_dict"][k]), k
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values(),
                      strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert _strip_times(whole / "metrics.jsonl") == _strip_times(killed / "metrics.jsonl")
