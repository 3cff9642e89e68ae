"""Options on the command line, task options, and resuming a run with its stored settings."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer

from cosmobench.cli import app
from cosmobench.errors import CosmobenchError
from cosmobench.train.config import TASK_OPTIONS, TrainConfig, split_legacy
from cosmobench.train.resume import resolve_settings


def _options(kind: str) -> set[str]:
    group = typer.main.get_command(app).commands["train"]
    return {p.name for p in group.commands[kind].params}


@pytest.mark.parametrize("kind", ["cnn", "bnn", "vae", "flow"])
def test_every_config_field_is_an_option_of_its_commands(kind):
    fields = {f.name for cls in (TrainConfig, TASK_OPTIONS[kind]) for f in dataclasses.fields(cls)}
    assert fields <= _options(kind)
    others = {f.name for k in TASK_OPTIONS for f in dataclasses.fields(TASK_OPTIONS[k])} - fields
    assert not others & _options(kind)  # another task's options are not offered


def _legacy_run(tmp_path, kind="cnn", **train):
    """A run folder as written before task options had their own class."""
    old = {
        **TrainConfig().to_dict(),
        "augment": True,
        "input_scaling": "arcsinh",
        "init_from": "",
        "vae_run": "",
        **train,
    }
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "format": "cosmobench.run",
                "kind": kind,
                "train_config": old,
                "model_config": {"targets": ["e1", "e2", "z"]},
            }
        )
    )
    return tmp_path


def test_an_old_run_resumes_with_its_options_moved_to_the_task(tmp_path):
    run = _legacy_run(tmp_path, epochs=3)
    train, model, options = resolve_settings("cnn", run, True, {"epochs": 5}, {}, {})
    assert TrainConfig.from_dict(train).epochs == 5  # loadable: the old keys are gone
    assert options == {"augment": True, "input_scaling": "arcsinh", "init_from": ""}
    assert model == {"targets": ["e1", "e2", "z"]}
    with pytest.raises(CosmobenchError, match=r"other settings \(lr, augment\)"):
        resolve_settings("cnn", run, True, {"lr": 0.1}, {}, {"augment": False})


def test_split_legacy_prefers_stored_task_options():
    rec = {"train_config": {"epochs": 2}, "task_options": {"vae_run": "runs/vae"}}
    assert split_legacy("flow", rec) == ({"epochs": 2}, {"vae_run": "runs/vae"})
    assert split_legacy("vae", {"train_config": {"epochs": 2, "augment": False}}) == (
        {"epochs": 2},
        {},
    )


def test_a_new_run_takes_what_is_given(tmp_path):
    assert resolve_settings("vae", tmp_path, False, {"lr": 0.1}, {"latent": 8}, {}) == (
        {"lr": 0.1},
        {"latent": 8},
        {},
    )
