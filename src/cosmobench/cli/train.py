"""CLI: ``cosmobench train cnn|bnn|vae|flow`` — parse options into configs, call ``fit``.

The options are not written here: every field of
:class:`~cosmobench.train.config.TrainConfig` is an option of every ``train`` command, and
every field of the task's option class (:data:`~cosmobench.train.config.TASK_OPTIONS`) an
option of that task's commands, with help and default from the dataclass
(:mod:`cosmobench.cli.options`). **To add a training option, add a field (and its line in
the docstring) to ``TrainConfig``** — or to ``ShapeOptions`` / ``FlowOptions`` for one
task. The model options each command exposes are listed in :data:`MODEL_OPTIONS`.

With ``--resume`` the run's stored settings fill every option not given
(:func:`cosmobench.train.resume.resolve_settings`). The same command runs under
``torchrun --nproc-per-node N -m cosmobench train ...`` as DistributedDataParallel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cosmobench.cli.app import app, err_console
from cosmobench.cli.options import command_with, config_options, given, option
from cosmobench.train.config import TASK_OPTIONS, TrainConfig

__all__ = ["train_app", "MODEL_OPTIONS"]

train_app = typer.Typer(
    name="train",
    help="Train the networks of Arcelin (2021): shape CNN / BNN, VAE, latent flow.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

_TARGETS = "Predicted quantities, comma-separated: e1,e2,z or e1,e2 (default: the paper's)."
_PRELU = "PReLU slopes: element (Keras, the paper's) or channel."
#: The model-config options of each command: (field, option type, help). Their defaults are
#: the model configs' (``ShapeConfig``, ``VAEConfig``), not repeated here: reading those
#: classes would import torch when the command line starts.
MODEL_OPTIONS: dict[str, list[tuple[str, Any, str]]] = {
    "cnn": [("targets", str, _TARGETS), ("prelu", str, _PRELU)],
    "bnn": [
        ("targets", str, _TARGETS),
        ("prelu", str, _PRELU),
        ("flipout", bool, "Flipout weight noise."),
    ],
    "vae": [("latent", int, "Latent size (default: the paper's).")],
    "flow": [],
}
_DOCS = {
    "cnn": "Train the deterministic shape CNN (1,517,217 parameters for e1,e2,z).",
    "bnn": "Train the Bayesian shape CNN (2,726,241 parameters; loss = negative ELBO).",
    "vae": "Train the VAE noisy → noiseless on band-normalised images; writes a "
    "reconstruction PNG.",
    "flow": "Train the masked autoregressive flow on the VAE's encoder means of DATA.",
}
_PATHS = ("data", "vae_run", "init_from")


def _run(kind: str, values: dict[str, Any]) -> None:
    from cosmobench.outputs import check_output
    from cosmobench.train import fit, make_task
    from cosmobench.train.resume import resolve_settings

    out, resume = Path(values["out"]), values["resume"]
    # the weights, the checkpoint (with the optimiser state) and figures: tens of MB
    check_output(out, "dir", need_bytes=64 << 20)
    train, options = given(values, TrainConfig), given(values, TASK_OPTIONS[kind])
    model = {
        name: values[name]
        for name, _, _ in MODEL_OPTIONS[kind]
        if values[name] is not None and values[name] is not False
    }
    if "targets" in model:
        model["targets"] = [t.strip() for t in model["targets"].split(",") if t.strip()]
    if kind == "flow":
        from cosmobench.train.runs import run_latent

        latent = run_latent(options["vae_run"])
        if latent is not None:
            model["features"] = latent
    train, model, options = resolve_settings(kind, out, resume, train, model, options)
    try:
        fit(
            make_task(kind, model, options),
            None,
            TrainConfig.from_dict(train),
            out,
            resume=resume,
            progress=values["progress"],
        )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: continue with the same command plus --resume "
            f"(the last finished epoch is in {out})"
        )
        raise


def _register(kind: str) -> None:
    params = [
        *config_options(
            TASK_OPTIONS[kind], flags={"vae_run": "--vae"}, required=["vae_run"], paths=_PATHS
        ),
        *config_options(TrainConfig, required=["data"], paths=_PATHS),
        option("out", Path, "Run folder to write (or --resume).", required=True),
        *(option(name, hint, text) for name, hint, text in MODEL_OPTIONS[kind]),
        option("resume", bool, "Continue the run in --out."),
        option("progress", bool, "Progress bar.", default=True),
    ]
    body = lambda values: _run(kind, values)  # noqa: E731
    train_app.command(kind)(command_with(params, body, f"train_{kind}", _DOCS[kind]))


for _kind in ("cnn", "bnn", "vae", "flow"):
    _register(_kind)
