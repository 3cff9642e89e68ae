"""CLI: ``cosmobench train cnn|bnn|vae|flow`` — parse options into configs, call ``fit``.

The options are not written here: every field of
:class:`~cosmobench.train.config.TrainConfig` is an option of every ``train`` command, every
field of the task's option class (:data:`~cosmobench.train.config.TASK_OPTIONS`) an option
of that task's commands, each with its help from the field's description and its default
from the dataclass. Adding a field to one of those dataclasses (with a line in its
docstring) adds the option. The model options each command exposes are listed in
:data:`MODEL_OPTIONS`.

With ``--resume`` the run's stored settings fill every option not given
(:func:`cosmobench.train.resume.resolve_settings`). The same command runs under
``torchrun --nproc-per-node N -m cosmobench train ...`` as DistributedDataParallel.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from pathlib import Path
from typing import Annotated, Any

import typer

from cosmobench.cli.app import app, err_console
from cosmobench.config import field_docs
from cosmobench.train.config import TASK_OPTIONS, TrainConfig

__all__ = ["train_app", "MODEL_OPTIONS"]

train_app = typer.Typer(
    name="train",
    help="Train the networks of Arcelin (2021): shape CNN / BNN, VAE, latent flow.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

_TARGETS = "Predicted quantities, comma-separated: e1,e2,z or e1,e2 (default: e1,e2,z)."
_PRELU = "element (Keras) or channel (default: element)."
#: The model-config options of each command: (field, option type, help).
MODEL_OPTIONS: dict[str, list[tuple[str, Any, str]]] = {
    "cnn": [("targets", str, _TARGETS), ("prelu", str, _PRELU)],
    "bnn": [("targets", str, _TARGETS), ("prelu", str, _PRELU),
            ("flipout", bool, "Flipout weight noise.")],
    "vae": [("latent", int, "Latent size (default: 32).")],
    "flow": [],
}
#: Option names that are not the field's name with dashes.
_RENAMED = {"vae_run": "--vae"}
#: Required options (no default that could train anything).
_REQUIRED = {"data", "vae_run"}
_DOCS = {
    "cnn": "Train the deterministic shape CNN (1,517,217 parameters for e1,e2,z).",
    "bnn": "Train the Bayesian shape CNN (2,726,241 parameters; loss = negative ELBO).",
    "vae": "Train the VAE noisy → noiseless on band-normalised images; writes a "
    "reconstruction PNG.",
    "flow": "Train the masked autoregressive flow on the VAE's encoder means of DATA.",
}


def _help(doc: str, default: Any) -> str:
    """The first sentence of a field's description, without reST markup, and its default."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc).replace("``", "")
    first = re.split(r"(?<=[.)])\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".")
    first = first[:1].upper() + first[1:]
    unset = default is None or default is False or default == ""
    return first + ("." if unset else f" (default: {default}).")


def _param(name: str, hint: Any, help_text: str, flag: str | None = None,
           required: bool = False) -> inspect.Parameter:
    """A keyword parameter typer turns into ``--name`` (a bare flag for booleans)."""
    flag = flag or "--" + name.replace("_", "-")
    if required:
        annotation, default = Annotated[Path, typer.Option(flag, help=help_text)], inspect._empty
    elif hint is bool:
        annotation, default = Annotated[bool, typer.Option(flag, help=help_text)], False
    else:
        annotation, default = Annotated[hint | None, typer.Option(flag, help=help_text)], None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def _config_params(cls: type) -> list[inspect.Parameter]:
    """One option per field of config class ``cls``, help and default from the class."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = Path if f.name in ("data", "vae_run", "init_from") else hints[f.name]
        out.append(_param(f.name, hint, _help(docs.get(f.name, ""), f.default),
                          _RENAMED.get(f.name), f.name in _REQUIRED))
    return out


def _given(values: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The options among ``names`` given on the command line (unset ones and off flags left
    out), paths as strings."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()
            if k in names and v is not None and v is not False}


def _run(kind: str, values: dict[str, Any]) -> None:
    from cosmobench.train import fit, make_task
    from cosmobench.train.resume import resolve_settings

    out = Path(values["out"])
    train = _given(values, {f.name for f in dataclasses.fields(TrainConfig)})
    options = _given(values, {f.name for f in dataclasses.fields(TASK_OPTIONS[kind])})
    model = _given(values, {name for name, _, _ in MODEL_OPTIONS[kind]})
    if isinstance(model.get("targets"), str):
        model["targets"] = [t.strip() for t in model["targets"].split(",") if t.strip()]
    if kind == "flow" and "vae_run" in options:
        from cosmobench.train.runs import run_latent

        latent = run_latent(options["vae_run"])
        if latent is not None:
            model["features"] = latent
    train, model, options = resolve_settings(kind, out, values["resume"], train, model, options)
    try:
        fit(make_task(kind, model, options), None, TrainConfig.from_dict(train), out,
            resume=values["resume"], progress=values["progress"])
    except KeyboardInterrupt:
        err_console.print(f"interrupted: continue with the same command plus --resume "
                          f"(the last finished epoch is in {out})")
        raise


def _command(kind: str) -> None:
    """Register ``train KIND`` with the options of its configs."""
    params = [
        *_config_params(TASK_OPTIONS[kind]),
        *_config_params(TrainConfig),
        _param("out", Path, "Run folder to write (or --resume).", required=True),
        *(_param(name, hint, text) for name, hint, text in MODEL_OPTIONS[kind]),
        _param("resume", bool, "Continue the run in --out."),
        inspect.Parameter("progress", inspect.Parameter.KEYWORD_ONLY, default=True,
                          annotation=Annotated[bool, typer.Option(
                              "--progress/--no-progress", help="Progress bar.")]),
    ]
    params.sort(key=lambda p: p.default is not inspect._empty)  # required first

    def command(**values: Any) -> None:
        _run(kind, values)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = _DOCS[kind]
    command.__name__ = f"train_{kind}"
    train_app.command(kind)(command)


for _kind in ("cnn", "bnn", "vae", "flow"):
    _command(_kind)
