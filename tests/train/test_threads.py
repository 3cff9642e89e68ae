"""Torch threads for a training run: timed interleaved, chosen, recorded, harmless to results."""

from __future__ import annotations

import json
import time

import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.files import load_checkpoint
from cosmobench.train import TrainConfig, fit, make_task, probe
from cosmobench.train.probe import time_threads, usable_cores

SMALL_CNN = {"image_size": 16, "filters": [4, 8]}


def test_time_threads_interleaves_the_counts_and_finds_the_faster():
    seen = []

    def step():  # slow at two threads, fast at one
        seen.append(torch.get_num_threads())
        time.sleep(0.012 if torch.get_num_threads() == 2 else 0.001)

    before = torch.get_num_threads()
    rates = time_threads(step, (2, 1), rounds=3, steps=2)
    assert torch.get_num_threads() == before  # restored
    assert set(rates) == {1, 2} and rates[1] > 3 * rates[2]
    # one warm-up call per count, then rounds in alternating order
    assert seen == [1, 2, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 2, 2]


def test_time_threads_refuses_counts_below_one():
    with pytest.raises(ValueError, match="thread counts must be >= 1"):
        time_threads(lambda: None, (0, 2))


@pytest.mark.parametrize("bad", [-2, 1.5])
def test_threads_setting_is_checked(bad):
    with pytest.raises(CosmobenchError, match="threads must be an integer >= 1, 0 for"):
        TrainConfig(threads=bad)


def test_measured_threads_are_recorded_and_change_nothing_else(tmp_path, write_store):
    """``threads=-1`` times the run's own step on a copy of its model and trains with the
    faster count; the run is then bit for bit the run given that count."""
    data = write_store(tmp_path / "d.zarr", n=40, size=16)
    cfg = TrainConfig(epochs=2, batch_size=8, seed=3)
    before = torch.get_num_threads()
    fit(make_task("bnn", SMALL_CNN), data, cfg.replace(threads=-1), tmp_path / "auto",
        progress=False)
    assert torch.get_num_threads() == before  # the run's count does not outlive it
    rec = json.loads((tmp_path / "auto" / "config.json").read_text())
    chosen = rec["train_config"]["threads"]
    cores = usable_cores()
    assert chosen in {1, cores}
    probed = rec["threads"]["probe"]
    assert probed["chosen"] == chosen == rec["threads"]["count"] and probed["batch"] == 8
    assert set(probed["steps_per_s"]) == {"1", str(cores)}
    assert probed["steps_per_s"][str(chosen)] == max(probed["steps_per_s"].values())
    # the BNN draws weight noise from the global RNG: the timing must not have moved it
    fit(make_task("bnn", SMALL_CNN), data, cfg.replace(threads=chosen), tmp_path / "given",
        progress=False)
    given = json.loads((tmp_path / "given" / "config.json").read_text())
    assert given["threads"] == {"count": chosen, "probe": None}
    a = load_checkpoint(tmp_path / "auto" / "model.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "given" / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_faster_count_is_the_one_trained_with(tmp_path, write_store, monkeypatch):
    data = write_store(tmp_path / "d.zarr", n=24, size=16)
    monkeypatch.setattr(probe, "usable_cores", lambda: 2)
    monkeypatch.setattr(probe, "time_threads", lambda step, counts: {1: 2.0, 2: 5.0})
    fit(make_task("cnn", SMALL_CNN), data, TrainConfig(epochs=1, batch_size=8, threads=-1),
        tmp_path / "run", progress=False)
    rec = json.loads((tmp_path / "run" / "config.json").read_text())
    assert rec["train_config"]["threads"] == 2 == rec["threads"]["count"]
    monkeypatch.setattr(probe, "time_threads", lambda step, counts: {1: 5.0, 2: 2.0})
    fit(make_task("cnn", SMALL_CNN), data, TrainConfig(epochs=1, batch_size=8, threads=-1),
        tmp_path / "one", progress=False)
    rec = json.loads((tmp_path / "one" / "config.json").read_text())
    assert rec["train_config"]["threads"] == 1 == rec["threads"]["count"]


def test_a_given_count_is_set_for_the_run(tmp_path, write_store):
    data = write_store(tmp_path / "d.zarr", n=24, size=16)
    fit(make_task("cnn", SMALL_CNN), data, TrainConfig(epochs=1, batch_size=8, threads=2),
        tmp_path / "run", progress=False)
    rec = json.loads((tmp_path / "run" / "config.json").read_text())
    assert rec["threads"] == {"count": 2, "probe": None}


def test_fastest_threads_sets_the_given_or_the_faster_count(monkeypatch):
    """``fastest_threads`` (the shape science script's choice, on the paper's CNN)."""
    before = torch.get_num_threads()
    try:
        assert probe.fastest_threads(2, threads=3) == {"threads": 3, "how": "--threads"}
        assert torch.get_num_threads() == 3
        monkeypatch.setattr(probe, "usable_cores", lambda: 2)
        timed = []
        monkeypatch.setattr(probe, "time_threads",
                            lambda step, counts: timed.append(counts) or {1: 9.0, 2: 4.0})
        got = probe.fastest_threads(2)
        assert timed == [(1, 2)]
        assert got["threads"] == 1 == torch.get_num_threads()
        assert got["steps_per_s"] == {"1": 9.0, "2": 4.0}
    finally:
        torch.set_num_threads(before)
