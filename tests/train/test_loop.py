"""The training loop end to end: run folder, metrics, best weights, early stopping."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.files import load_checkpoint
from cosmobench.train import TrainConfig, fit, load_run, make_task
from cosmobench.train.loop import _Trainer


def test_cnn_trains_on_simulated_galaxies(tiny_dataset, tmp_path, cli):
    run = tmp_path / "cnn"
    code, _, err = cli("train", "cnn", "--data", tiny_dataset, "--out", run, "--epochs", "4",
                       "--batch-size", "16", "--no-progress")
    assert code == 0, err
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt",
                                               "model.pt", "loss.png"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]  # 0: the untrained network
    assert rows[0]["train_loss"] is None
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]  # it learns
    assert rows[-1]["train_loss"] < rows[1]["train_loss"]

    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "cnn" and config["train_config"]["epochs"] == 4
    assert config["data"]["n_train"] + config["data"]["n_val"] == 128

    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["epoch"] == 4 and len(ckpt["history"]) == 5
    assert {"state_dict", "optimizer", "rng", "train_config", "model_config"} <= set(ckpt)
    best = min(rows[1:], key=lambda r: r["val_loss"])["epoch"]

    model, info = load_run(run, expect_kind=("cnn", "bnn"))
    assert info["kind"] == "cnn" and info["targets"] == ["e1", "e2", "z"]
    assert info["epoch"] == best and info["input_scaling"]["kind"] == "arcsinh"
    for k, v in model.net.state_dict().items():  # model.pt holds the best-validation weights
        assert torch.equal(v, ckpt["best_state_dict"][k])
    from cosmobench.store import open_dataset

    x = open_dataset(tiny_dataset).tensor("noisy", index=slice(0, 8))  # counts
    pred = model.predict(x)
    assert pred.mean.shape == (8, 3) and torch.isfinite(pred.cov).all()
    # the run loads into the shape evaluation as it is (counts in, scaling inside)
    from cosmobench.evaluate import evaluate_shape

    metrics = evaluate_shape(model, tiny_dataset)
    assert metrics.n == 128 and metrics.kind == "cnn"
    assert 0 < metrics.overall["e1"]["rmse"] < 1


SMALL_CNN = {"image_size": 16, "filters": [4, 8]}


def _rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_early_stopping_keeps_the_best_weights(tmp_path, monkeypatch, write_store):
    data = write_store(tmp_path / "d.zarr", n=48, size=16)
    losses = iter([2.0, 1.0, 0.5, 0.7, 0.9, 0.3, 0.2])
    monkeypatch.setattr(_Trainer, "_validate", lambda *a: next(losses))
    cfg = TrainConfig(epochs=6, batch_size=8, patience=2)
    task = make_task("cnn", {"image_size": 16, "filters": [4, 8]})
    fit(task, data, cfg, tmp_path / "run", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
            if x]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]  # no better loss in 2 epochs: stop
    assert [r["best"] for r in rows] == [False, True, True, False, False]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    final = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["stopped"] and final["epoch"] == 2 and final["val_loss"] == 0.5
    for k, v in final["state_dict"].items():
        assert torch.equal(v, ckpt["best_state_dict"][k])
    assert any(not torch.equal(v, ckpt["state_dict"][k]) for k, v in final["state_dict"].items())


def test_learning_rate_decays_on_a_plateau(tmp_path, monkeypatch, write_store):
    data = write_store(tmp_path / "d.zarr", n=48, size=16)
    losses = iter([2.0, 1.0, 1.1, 1.2, 0.9, 1.0, 0.95, 0.97, 0.8])
    monkeypatch.setattr(_Trainer, "_validate", lambda *a: next(losses))
    cfg = TrainConfig(epochs=8, batch_size=8, lr=1e-3, lr_decay=0.5, lr_patience=2)
    fit(make_task("cnn", {"image_size": 16, "filters": [4, 8]}), data, cfg, tmp_path / "run",
        progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
            if x]
    # epochs 2, 3 no better than 1: halve after epoch 3; 5, 6 no better than 4: halve again
    assert [r["lr"] for r in rows[1:]] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2.5e-4)  # resumes so


def test_cosine_schedule_anneals_to_zero_and_resumes_identically(tmp_path, write_store):
    data = write_store(tmp_path / "d.zarr", n=48, size=16)
    cfg = TrainConfig(epochs=4, batch_size=8, lr=1e-3, lr_schedule="cosine")
    task = lambda: make_task("cnn", {"image_size": 16, "filters": [4, 8]})  # noqa: E731
    fit(task(), data, cfg, tmp_path / "whole", progress=False)
    rows = _rows(tmp_path / "whole")
    n_train = json.loads((tmp_path / "whole" / "config.json").read_text())["data"]["n_train"]
    per_epoch = -(-n_train // 8)  # steps per epoch (the last partial batch is kept)
    total = 4 * per_epoch
    expected = [0.5e-3 * (1 + math.cos(math.pi * e * per_epoch / total)) for e in range(4)]
    assert [r["lr"] for r in rows[1:]] == pytest.approx(expected, rel=1e-5)  # every step
    ckpt = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert float(ckpt["optimizer"]["param_groups"][0]["lr"]) == pytest.approx(0, abs=1e-10)
    assert ckpt["scheduler"]["last_epoch"] == total

    # cut after one epoch, resumed: the schedule carries on where it stopped
    fit(task(), data, cfg.replace(time_limit=1e-9), tmp_path / "cut", progress=False)
    assert len(_rows(tmp_path / "cut")) == 2
    with pytest.raises(CosmobenchError, match="epochs .they fix the cosine schedule"):
        fit(task(), data, cfg.replace(epochs=6), tmp_path / "cut", resume=True, progress=False)
    fit(task(), data, cfg, tmp_path / "cut", resume=True, progress=False)
    assert [r.get("lr") for r in _rows(tmp_path / "cut")] == [r.get("lr") for r in rows]
    a = load_checkpoint(tmp_path / "cut" / "model.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "whole" / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nonfinite_galaxies_can_be_left_out_and_are_reported(tmp_path, cli, write_store):
    data = write_store(tmp_path / "d.zarr", n=40, nan_pixels=2, inf_labels=1)
    run = tmp_path / "run"
    code, _, err = cli("train", "cnn", "--data", data, "--out", run, "--epochs", "1",
                       "--batch-size", "8", "--drop-nonfinite", "--no-progress")
    assert code == 0, err
    assert "left out 3 of 40 galaxies" in err
    rec = json.loads((run / "config.json").read_text())["data"]
    assert rec["dropped_nonfinite"] == {"galaxies": 3, "of": 40, "noisy": 2, "redshift": 1}
    assert rec["n_train"] + rec["n_val"] == 37


def test_time_limit_ends_early_and_resume_finishes_identically(tmp_path, write_store):
    data = write_store(tmp_path / "d.zarr", n=48, size=16)
    cfg = TrainConfig(epochs=3, batch_size=8)
    fit(make_task("cnn", SMALL_CNN), data, cfg.replace(time_limit=1e-9), tmp_path / "cut",
        progress=False)
    assert [r["epoch"] for r in _rows(tmp_path / "cut")] == [0, 1]  # one epoch, then stop
    assert load_checkpoint(tmp_path / "cut" / "model.pt")["epochs_trained"] == 1
    fit(make_task("cnn", SMALL_CNN), data, cfg, tmp_path / "cut", resume=True, progress=False)
    fit(make_task("cnn", SMALL_CNN), data, cfg, tmp_path / "whole", progress=False)
    a = load_checkpoint(tmp_path / "cut" / "model.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "whole" / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_compiled_step_trains_like_the_eager_one(tmp_path, write_store):
    data = write_store(tmp_path / "d.zarr", n=48, size=16)  # 44 training galaxies
    cfg = TrainConfig(epochs=2, batch_size=8, val_fraction=0.1)
    for name, compiled in (("eager", False), ("compiled", True)):
        fit(make_task("bnn", SMALL_CNN), data, cfg.replace(compile=compiled), tmp_path / name,
            progress=False)
    eager, compiled = _rows(tmp_path / "eager"), _rows(tmp_path / "compiled")
    assert eager[0]["val_loss"] == pytest.approx(compiled[0]["val_loss"], rel=1e-4)
    n_train = json.loads((tmp_path / "eager" / "config.json").read_text())["data"]["n_train"]
    assert n_train % 8  # a partial last batch exists ...
    # ... and the compiled run leaves it out (one shape, one compilation)
    assert compiled[1]["images"] == n_train // 8 * 8
    assert eager[1]["images"] == n_train
    assert compiled[-1]["val_loss"] < compiled[0]["val_loss"]


def test_bnn_starts_from_a_trained_cnn(tmp_path, write_store):
    data = write_store(tmp_path / "d.zarr", n=48, size=16)
    cfg = TrainConfig(epochs=2, batch_size=8)
    fit(make_task("cnn", SMALL_CNN), data, cfg, tmp_path / "cnn", progress=False)
    start = {"init_from": str(tmp_path / "cnn")}
    task = make_task("bnn", SMALL_CNN, start)
    fit(task, data, cfg.replace(epochs=1), tmp_path / "bnn", progress=False)
    cnn = load_checkpoint(tmp_path / "cnn" / "model.pt")
    bnn = load_checkpoint(tmp_path / "bnn" / "checkpoint.pt")
    assert bnn["task_state"]["input_scaling"] == cnn["input_scaling"]
    # before its first step, the BNN (posterior means = the CNN's weights, sigma ~ 1e-4)
    # predicts what the CNN predicts: its validation NLL is the CNN's validation loss
    first = _rows(tmp_path / "bnn")[0]
    assert first["epoch"] == 0 and first["val_nll"] == pytest.approx(cnn["val_loss"], abs=1e-3)
    fresh = _rows(tmp_path / "cnn")[0]["val_loss"]
    assert abs(fresh - cnn["val_loss"]) > 1e-2  # (a fresh network is elsewhere)
    task._source = task._load_source()
    model = task.build_model()
    task.initialise(model)
    assert torch.equal(model.features[1].weight_mu, cnn["state_dict"]["features.1.weight"])
    assert torch.equal(model.dense.weight_mu, cnn["state_dict"]["dense.weight"])
    assert float(model.features[1].weight_sigma.detach().max()) < 1e-3

    other = make_task("bnn", {**SMALL_CNN, "targets": ["e1", "e2"]}, start)
    with pytest.raises(CosmobenchError, match="its targets differ from this run's"):
        fit(other, data, cfg, tmp_path / "b2", progress=False)
    assert not (tmp_path / "b2").exists()
