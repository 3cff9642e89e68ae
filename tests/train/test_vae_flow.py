"""VAE and flow training (docs/models.md), and data-parallel training under torchrun."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.files import load_checkpoint
from cosmobench.models import BandNormalizer
from cosmobench.store import open_dataset
from cosmobench.train import TrainConfig, fit, load_run, make_task, vae_fingerprint
from cosmobench.train.data import split_by_index

SMALL_VAE = {"latent": 4, "filters": [8, 8, 8, 8], "hidden": 32}


@pytest.fixture(scope="module")
def vae_run(tiny_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("vae") / "vae"
    fit(make_task("vae", SMALL_VAE), tiny_dataset, TrainConfig(epochs=2, batch_size=16), run,
        progress=False)
    return run


def test_vae_run_stores_its_normaliser_and_reconstructions(vae_run, tiny_dataset):
    assert (vae_run / "reconstructions.png").stat().st_size > 10_000
    vae, info = load_run(vae_run, expect_kind="vae")
    assert vae.config.latent == 4 and not vae.training
    # I_b fitted on the training split's noiseless images, not on all of them
    ds = open_dataset(tiny_dataset)
    train_pos, _ = split_by_index(ds.column("index"), 0.1)
    expected = BandNormalizer.fit(ds.images("noiseless", train_pos))
    assert torch.allclose(info["normalizer"].band_max, expected.band_max)
    assert not torch.allclose(info["normalizer"].band_max,
                              BandNormalizer.fit(ds.images("noiseless")).band_max)
    rows = [json.loads(x) for x in (vae_run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]


def test_fingerprint_tells_vaes_apart(vae_run):
    vae, info = load_run(vae_run, expect_kind="vae")
    fp = vae_fingerprint(vae, info["normalizer"])
    assert fp == vae_fingerprint(*(lambda m, i: (m, i["normalizer"]))(*load_run(vae_run)))
    other = BandNormalizer(info["normalizer"].band_max * 1.01)
    assert vae_fingerprint(vae, other) != fp
    with torch.no_grad():
        next(vae.parameters()).view(-1)[0] += 1e-6
    assert vae_fingerprint(vae, info["normalizer"]) != fp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
           str(_free_port()), "-m", "cosmobench", *[str(a) for a in args]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_flow_under_torchrun_equals_one_process_of_twice_the_batch(vae_run, tiny_dataset,
                                                                    tmp_path, cli):
    """Two ranks of batch 8, each on its shard, with averaged gradients, take the same steps
    as one process of batch 16 (the flow has no batch statistics): each rank trained on its
    own half of every batch, and the gradients were reduced."""
    index = open_dataset(tiny_dataset).column("index")
    # a validation share leaving a multiple of 16 training galaxies: no partial last batch
    frac = next(f for f in (0.1, 0.15, 0.2, 0.25, 0.29, 0.3, 0.35, 0.4, 0.42)
                if len(split_by_index(index, f)[0]) % 16 == 0)
    common = ["--vae", vae_run, "--data", tiny_dataset, "--epochs", "2", "--no-progress",
              "--val-fraction", str(frac)]
    code, _, err = cli("train", "flow", *common, "--out", tmp_path / "one", "--batch-size", "16")
    assert code == 0, err
    res = _torchrun("train", "flow", *common, "--out", tmp_path / "two", "--batch-size", "8")
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("training flow on") == 1  # rank 0 alone reports ...
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    one, two = (load_checkpoint(tmp_path / r / "model.pt") for r in ("one", "two"))
    assert one["vae_fingerprint"] == two["vae_fingerprint"]
    for k, v in one["state_dict"].items():
        assert torch.allclose(v, two["state_dict"][k], rtol=1e-4, atol=1e-5), k
    rows = [[json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
            for r in ("one", "two")]
    for a, b in zip(*rows, strict=True):  # the same losses, epoch by epoch
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        if a["epoch"] > 0:  # (epoch 0: the untrained network, no training loss)
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    assert rows[1][-1]["val_loss"] < rows[1][0]["val_loss"]  # ... and it did learn


@pytest.mark.slow
def test_cnn_under_torchrun_with_two_cpu_processes(tiny_dataset, tmp_path):
    res = _torchrun("train", "cnn", "--data", tiny_dataset, "--out", tmp_path / "ddp",
                    "--epochs", "1", "--batch-size", "8", "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "batch 8 x 2 processes" in res.stderr
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1]
    model, info = load_run(tmp_path / "ddp", expect_kind="cnn")
    assert info["data"]["n_train"] == 117 and math.isfinite(rows[1]["train_loss"])
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "checkpoint.pt", "config.json", "loss.png", "metrics.jsonl", "model.pt"]


def test_flow_refuses_a_changed_vae_on_resume(vae_run, tiny_dataset, tmp_path, cli):
    vae_copy = tmp_path / "vae"
    shutil.copytree(vae_run, vae_copy)
    common = ["--vae", vae_copy, "--data", tiny_dataset, "--batch-size", "16", "--no-progress"]
    code, _, err = cli("train", "flow", *common, "--out", tmp_path / "flow", "--epochs", "1")
    assert code == 0, err
    state = load_checkpoint(vae_copy / "model.pt")
    state["normalizer"]["I_b"] = [2 * v for v in state["normalizer"]["I_b"]]
    torch.save(state, vae_copy / "model.pt")
    code, _, err = cli("train", "flow", *common, "--out", tmp_path / "flow", "--epochs", "2",
                       "--resume")
    assert code != 0 and "changed since this flow run started" in err


def test_flow_needs_a_vae_run(tiny_dataset, tmp_path):
    task = make_task("flow", {"features": 4})
    with pytest.raises(CosmobenchError, match="needs the VAE run"):
        fit(task, tiny_dataset, TrainConfig(epochs=1), tmp_path / "f", progress=False)
    task = make_task("flow", {"features": 4}, {"vae_run": str(tmp_path)})
    with pytest.raises(CosmobenchError, match="no trained model in"):
        fit(task, tiny_dataset, TrainConfig(epochs=1), tmp_path / "f", progress=False)
