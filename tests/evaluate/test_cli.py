"""End to end: simulate, train a CNN briefly, ``cosmobench evaluate``; and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosmobench.cli import main


@pytest.fixture(scope="module")
def cnn_run(tiny_dataset, tmp_path_factory):
    from cosmobench.train import TrainConfig, fit, make_task

    out = tmp_path_factory.mktemp("runs") / "cnn"
    cfg = TrainConfig(epochs=1, batch_size=64, val_fraction=0.25)
    task = make_task("cnn", {"targets": ["e1", "e2"], "filters": [8, 8, 16, 16]})  # small: fast
    fit(task, tiny_dataset, cfg, out, progress=False)
    return out


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err
    return " ".join(err.split())  # rich may wrap a long line at the terminal width


def test_evaluate_writes_report(cnn_run, tiny_dataset_factory, tmp_path, capsys):
    test = tiny_dataset_factory(64, seed=4321)  # galaxies never seen in training
    out = tmp_path / "eval"
    main(["evaluate", str(cnn_run), "--data", str(test), "--out", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert "warning" not in captured.err and "RMSE" in captured.out
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "calibration.png",
        "metrics.json",
        "pred_vs_true.png",
        "pulls.png",
        "snr_bins.png",
    ]
    d = json.loads((out / "metrics.json").read_text())
    assert d["n"] == 64 and d["kind"] == "cnn" and d["targets"] == ["e1", "e2"]
    assert d["meta"]["test_is_training_data"] is False
    assert sum(b["n"] for b in d["by_snr"]["bins"]) == 64
    assert set(d["baselines"]) == {"ksb", "regauss"}
    assert 0 <= d["overall"]["joint"]["coverage_68"] <= 1


def test_evaluating_on_training_data_warns(cnn_run, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    main(
        [
            "evaluate",
            str(cnn_run),
            "--data",
            str(tiny_dataset),
            "--out",
            str(out),
            "--no-figures",
            "--no-progress",
        ]
    )
    assert "is the training data" in " ".join(capsys.readouterr().err.split())
    assert json.loads((out / "metrics.json").read_text())["meta"]["test_is_training_data"] is True
    assert not list(out.glob("*.png"))


def test_run_of_another_kind(tmp_path, tiny_dataset, capsys):
    from cosmobench.files import save_checkpoint
    from cosmobench.models import FlowConfig, LatentFlow
    from cosmobench.train.runs import RUN_FORMAT, RUN_VERSION

    flow = LatentFlow(FlowConfig(features=4, transforms=1, hidden=(8,)))
    run = tmp_path / "flow"
    state = {"format": RUN_FORMAT, "version": RUN_VERSION, "kind": "flow", "train_config": {}}
    state |= {"model_config": flow.config.to_dict(), "state_dict": flow.state_dict()}
    save_checkpoint(run / "model.pt", state)
    err = _error(
        capsys, ["evaluate", str(run), "--data", str(tiny_dataset), "--out", str(tmp_path / "e")]
    )
    assert "flow run; expected a cnn or bnn run" in err
    assert not (tmp_path / "e").exists()


def test_truncated_checkpoint(cnn_run, tiny_dataset, tmp_path, capsys):
    run = tmp_path / "broken"
    run.mkdir()
    data = (cnn_run / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(data[: len(data) // 2])
    err = _error(
        capsys, ["evaluate", str(run), "--data", str(tiny_dataset), "--out", str(tmp_path / "e")]
    )
    assert "truncated" in err
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_data_set_without_the_targets(cnn_run, tmp_path, capsys):
    from cosmobench.store import create_or_resume

    path = tmp_path / "no_e2.zarr"
    w = create_or_resume(path, 8, 8, "simulation", {}, {"e1": "float32"}, ("noisy",))
    w.write_chunk(
        0, {"noisy": np.zeros((8, 6, 64, 64), np.float32)}, {"e1": np.zeros(8, np.float32)}
    )
    w.finalize()
    err = _error(
        capsys, ["evaluate", str(cnn_run), "--data", str(path), "--out", str(tmp_path / "e")]
    )
    assert "no column 'e2' (for target e2)" in err


def test_missing_run_and_bad_device(tiny_dataset, tmp_path, capsys):
    err = _error(
        capsys,
        ["evaluate", str(tmp_path / "nope"), "--data", str(tiny_dataset), "--out", str(tmp_path)],
    )
    assert "no trained model" in err
    import torch

    if not torch.cuda.is_available():
        err = _error(
            capsys,
            [
                "evaluate",
                str(tmp_path),
                "--data",
                str(tiny_dataset),
                "--out",
                str(tmp_path),
                "--device",
                "cuda",
            ],
        )
        assert "CUDA is not available" in err


def test_kept_out_of_a_file_as_out(cnn_run, tiny_dataset, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    err = _error(
        capsys, ["evaluate", str(cnn_run), "--data", str(tiny_dataset), "--out", str(target)]
    )
    assert "is not a folder" in err and target.read_text() == "x"
