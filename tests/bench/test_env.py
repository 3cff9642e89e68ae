"""What a benchmark script records beside its table (cosmobench.bench.env.script_meta)."""

from __future__ import annotations

import json
import sys
import time

import torch

from cosmobench.bench.env import script_meta, write_script_json


def test_script_meta_and_json_record_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x.py", "--batch-sizes", "2,14"])
    meta = script_meta("benchmarks/x.py", [1.5, 1.0, 0.5], time.time() - 3.0, threads=2,
                       rounds=9)
    assert meta["command"] == "python benchmarks/x.py --batch-sizes 2,14"
    assert meta["torch"] == torch.__version__ and meta["capability"]
    assert (meta["threads"], meta["rounds"]) == (2, 9)
    assert meta["load_average"][0] == [1.5, 1.0, 0.5] and 3.0 <= meta["seconds"] < 60
    rows = [{"net": "cnn", "speedup": 1.1}]
    path = write_script_json(tmp_path / "deep" / "out", meta, rows)
    assert path == tmp_path / "deep" / "out.json"
    assert json.loads(path.read_text()) == {"meta": meta, "rows": rows}
