"""``benchmarks/threads.py``: the paper's steps at one thread and at every core, tabulated."""

from __future__ import annotations

import json

import pytest

SCRIPT = "benchmarks/threads.py"


def test_writes_one_row_per_point_with_the_faster_count(tmp_path, monkeypatch, load_script):
    mod = load_script(SCRIPT)
    monkeypatch.setattr(mod, "usable_cores", lambda: 2)
    timed = []

    def fake_point(net, batch, precision, counts, rounds, steps):
        timed.append((net, batch, precision, counts, rounds, steps))
        return {1: 10.0, 2: 20.0} if net == "cnn" else {1: 8.0, 2: 4.0}  # steps/s

    monkeypatch.setattr(mod, "point", fake_point)
    mod.main(["--nets", "cnn,bnn", "--batch-sizes", "2,14", "--rounds", "2", "--steps", "1",
              "--out", str(tmp_path / "t")])
    assert timed == [(n, b, "fp32", (1, 2), 2, 1) for n in ("cnn", "bnn") for b in (2, 14)]
    md = (tmp_path / "t.md").read_text()
    assert "| CNN | 2 | 100.0 | 50.0 | 0.50× | 2 |" in md
    assert "| BNN | 14 | 125.0 | 250.0 | 2.00× | 1 |" in md
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    assert [(r["net"], r["batch"], r["best"]) for r in rows] == [
        ("cnn", 2, 2), ("cnn", 14, 2), ("bnn", 2, 1), ("bnn", 14, 1)]


def test_times_the_real_step(load_script):
    """One real point (the paper's CNN at batch 2): both counts timed, rates positive."""
    mod = load_script(SCRIPT)
    rates = mod.point("cnn", 2, "fp32", (1, 2), rounds=1, steps=1)
    assert set(rates) == {1, 2} and all(r > 0 for r in rates.values())


@pytest.mark.parametrize("nets,batches", [("cnn,vae", "2"), ("cnn", "2,x"), ("cnn", "0"),
                                          ("", "2")])
def test_bad_options_are_one_line_errors(nets, batches, load_script):
    with pytest.raises(SystemExit, match="^error: --(nets|batch-sizes) takes"):
        load_script(SCRIPT).parse(nets, batches)
