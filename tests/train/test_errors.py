"""Bad input: one-line errors, a non-zero exit, and nothing lost."""

from __future__ import annotations

import pytest

from cosmobench.errors import CosmobenchError
from cosmobench.train import load_run

FAST = ["--epochs", "1", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def small(tmp_path_factory, write_store):
    return write_store(tmp_path_factory.mktemp("d") / "d.zarr", n=24)


@pytest.fixture(scope="module")
def cnn_run(small, tmp_path_factory):
    from cosmobench.cli import main

    run = tmp_path_factory.mktemp("r") / "cnn"
    main(["train", "cnn", "--data", str(small), "--out", str(run), *FAST])
    return run


def test_missing_target_column(write_store, tmp_path, cli, one_line_error):
    data = write_store(tmp_path / "d.zarr", n=24, columns=("index", "e1", "e2"))
    line = one_line_error(*cli("train", "cnn", "--data", data, "--out", tmp_path / "r", *FAST)[::2])
    assert "has no column 'redshift' (for target z)" in line
    assert not (tmp_path / "r").exists()
    code, _, err = cli("train", "cnn", "--data", data, "--out", tmp_path / "r", "--targets",
                       "e1,e2", *FAST)
    assert code == 0, err  # the paper's other choice of targets needs no redshift


def test_nonfinite_pixels_and_labels_are_counted_and_refused(write_store, tmp_path, cli,
                                                              one_line_error):
    data = write_store(tmp_path / "d.zarr", n=24, nan_pixels=3, inf_labels=2)
    line = one_line_error(*cli("train", "bnn", "--data", data, "--out", tmp_path / "r", *FAST)[::2])
    assert "5 of 24 galaxies have NaN or infinite values (noisy: 3, redshift: 2)" in line
    assert "--drop-nonfinite" in line
    assert not (tmp_path / "r").exists()


def test_vae_refuses_nonfinite_noiseless_images(write_store, tmp_path, cli, one_line_error):
    data = write_store(tmp_path / "d.zarr", n=24, nan_pixels=1)
    line = one_line_error(*cli("train", "vae", "--data", data, "--out", tmp_path / "r", *FAST)[::2])
    assert "1 of 24 galaxies have NaN or infinite values (noisy: 1)" in line


def test_store_without_noisy_images(write_store, tmp_path, cli, one_line_error):
    data = write_store(tmp_path / "d.zarr", n=24, images=("noiseless",))
    line = one_line_error(*cli("train", "cnn", "--data", data, "--out", tmp_path / "r", *FAST)[::2])
    assert "has no noisy images (it has noiseless)" in line


def test_batch_larger_than_the_data(small, tmp_path, cli, one_line_error):
    code, _, err = cli("train", "cnn", "--data", small, "--out", tmp_path / "r",
                       "--batch-size", "500", "--epochs", "1")
    assert "batch size 500 is larger than the" in one_line_error(code, err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("opts, match", [
    (["--precision", "fp16"], "precision must be one of fp32, bf16; got 'fp16'"),
    (["--targets", "e1,g1"], "target must be one of e1, e2, z; got 'g1'"),
    (["--val-fraction", "1.5"], "validation fraction must be in [0, 1)"),
    (["--device", "cuda:7"] if not __import__("torch").cuda.is_available() else
     ["--device", "nonsense"], "device"),
    (["--input-scaling", "log"], "input scaling must be one of arcsinh, none; got 'log'"),
    (["--lr-schedule", "linear"],
     "learning-rate schedule must be one of constant, cosine; got 'linear'"),
    (["--lr-schedule", "cosine", "--lr-decay", "0.5"], "choose one learning-rate schedule"),
])
def test_bad_options(small, tmp_path, cli, opts, match, one_line_error):
    code, _, err = cli("train", "cnn", "--data", small, "--out", tmp_path / "r", *FAST, *opts)
    assert match in one_line_error(code, err)
    assert not (tmp_path / "r").exists()


def test_missing_data_set(tmp_path, cli, one_line_error):
    code, _, err = cli("train", "cnn", "--data", tmp_path / "nope.zarr", "--out", tmp_path / "r")
    line = one_line_error(code, err)
    assert f"data set {tmp_path / 'nope.zarr'} does not exist" in line
    assert not (tmp_path / "r").exists()


def test_existing_run_is_never_clobbered(tree, cnn_run, small, cli, one_line_error):
    before = tree(cnn_run)
    cases = [
        (["train", "cnn"], "already holds a cnn run; pass --resume"),
        (["train", "bnn"], "holds a cnn run, not a bnn run"),
        (["train", "vae"], "holds a cnn run, not a vae run"),
        (["train", "cnn", "--resume", "--lr", "0.01"], "other settings (lr); only epochs"),
        (["train", "cnn", "--resume", "--targets", "e1,e2"], "other settings (targets)"),
        (["train", "cnn", "--resume", "--augment"], "other settings (augment)"),
    ]
    for args, match in cases:
        code, _, err = cli(*args, "--data", small, "--out", cnn_run, "--no-progress")
        assert match in one_line_error(code, err), args
    assert tree(cnn_run) == before


def test_resume_needs_a_run(small, tmp_path, cli, one_line_error):
    code, _, err = cli("train", "cnn", "--data", small, "--out", tmp_path / "r", "--resume")
    assert "nothing to resume" in one_line_error(code, err)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    code, _, err = cli("train", "cnn", "--data", small, "--out", tmp_path / "other", *FAST)
    assert "holds no cosmobench run" in one_line_error(code, err)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_truncated_checkpoint_and_model(tree, cnn_run, small, tmp_path, cli, one_line_error):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(cnn_run, run)
    for name in ("checkpoint.pt", "model.pt"):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
    before = tree(run)
    code, _, err = cli("train", "cnn", "--data", small, "--out", run, "--resume", "--epochs", "2")
    assert "truncated, corrupt or not a cosmobench checkpoint" in one_line_error(code, err)
    assert tree(run) == before
    with pytest.raises(CosmobenchError, match="truncated, corrupt"):
        load_run(run)


def test_load_run_refuses_another_kind(cnn_run, tmp_path):
    with pytest.raises(CosmobenchError, match=r"holds a cnn run; expected a vae run"):
        load_run(cnn_run, expect_kind="vae")
    with pytest.raises(CosmobenchError, match="no trained model in"):
        load_run(tmp_path)
    model, info = load_run(cnn_run / "model.pt", expect_kind=("cnn", "bnn"))
    assert info["kind"] == "cnn" and not model.training


def test_resume_can_extend_a_finished_run(cnn_run, small, tmp_path, cli):
    import shutil

    run = tmp_path / "more"
    shutil.copytree(cnn_run, run)
    code, _, err = cli("train", "cnn", "--data", small, "--out", run, "--resume", "--epochs", "2",
                       "--no-progress")
    assert code == 0, err
    _, info = load_run(run)
    assert info["epochs_trained"] == 2 and info["train_config"]["epochs"] == 2
