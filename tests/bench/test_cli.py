"""``cosmobench bench`` and its one-line errors."""

from __future__ import annotations

import json

import pytest

from cosmobench.cli import main


def test_bench_cli_writes_results_and_reports_unsupported(tmp_path, capsys):
    out = tmp_path / "r.json"
    main(["bench", "infer-cnn", "--batch-sizes", "1", "--modes", "eager,cudagraph",
          "--repeats", "2", "--min-block", "0", "--warmup-max", "0.3", "--out", str(out),
          "--no-progress"])
    data = json.loads(out.read_text())
    assert data["schema"] == "cosmobench.bench" and data["complete"] is True
    assert data["config"]["workloads"] == ["infer-cnn"] and data["config"]["batch_sizes"] == [1]
    status = {r["spec"]["mode"]: r["status"] for r in data["records"]}
    assert status == {"eager": "ok", "cudagraph": "unsupported"}
    assert data["env"]["command"][:2] == ["cosmobench", "bench"]
    printed = capsys.readouterr().out
    assert "unsupported" in printed and "CUDA graphs need a CUDA device" in printed
    # a CPU point's MiB is the resident set's growth, and the table says so
    assert "growth of the process's resident memory" in printed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "train-gan", "--out", "x.json"], "workload must be one of"),
        (["bench", "train-cnn", "--batch-sizes", "2,a", "--out", "x.json"], "--batch-sizes"),
        (["bench", "train-cnn", "--modes", "warp", "--out", "x.json"], "mode parts must be"),
        (["bench", "train-cnn", "--protocol", "fast", "--out", "x.json"], "protocol must be"),
        (["bench", "train-cnn", "--device", "cuda:7", "--out", "x.json"], "cuda"),
        (["bench", "train-cnn", "--device", "banana", "--out", "x.json"], "torch device"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()  # nothing half-written
