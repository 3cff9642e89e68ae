"""Kill a training run (SIGKILL, mid-epoch), resume it: it ends bit-identical on CPU."""

from __future__ import annotations

import json

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
def test_bnn_resumed_after_sigkill_matches_an_uninterrupted_run(
    tiny_dataset, tmp_path, cli, kill_inside_an_epoch
):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # epoch 1's checkpoint written, the run killed inside epoch 2
    kill_inside_an_epoch(killed, "train", "bnn", "--data", str(tiny_dataset),
                         "--out", str(killed), *ARGS)
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
