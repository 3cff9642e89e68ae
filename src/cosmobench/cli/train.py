"""CLI: ``cosmobench train cnn|bnn|vae|flow`` — parse options into configs, call ``fit``.

Every subcommand shares the training options (paper defaults: Adam, lr 1e-3). With
``--resume`` the run's stored settings fill every option not given; ``--epochs``,
``--patience`` and ``--device`` may change, anything else must match. The same command runs
under ``torchrun --nproc-per-node N -m cosmobench train ...`` as DistributedDataParallel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cosmobench.cli.app import app, err_console
from cosmobench.errors import CosmobenchError

__all__ = ["train_app"]

train_app = typer.Typer(
    name="train",
    help="Train the networks of Arcelin (2021): shape CNN / BNN, VAE, latent flow.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

Data = Annotated[Path, typer.Option("--data", help="Training store (DATA.zarr).")]
Out = Annotated[Path, typer.Option("--out", help="Run folder to write (or --resume).")]
Epochs = Annotated[int | None, typer.Option(help="Epochs to train (default: 10).")]
Batch = Annotated[int | None, typer.Option(
    "--batch-size", help="Images per step per process (default: 32).")]
Lr = Annotated[float | None, typer.Option(help="Adam learning rate (default: 1e-3).")]
Seed = Annotated[int | None, typer.Option(help="Seed of weights, shuffles, noise (default: 0).")]
ValFrac = Annotated[float | None, typer.Option(
    "--val-fraction", help="Share of galaxies held out, by index (default: 0.1).")]
Precision = Annotated[str | None, typer.Option(help="fp32 or bf16 (autocast) (default: fp32).")]
Device = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N, ... (default: cpu).")]
Patience = Annotated[int | None, typer.Option(
    help="Early stopping: epochs without a better validation loss (default: 0 = off).")]
LrDecay = Annotated[float | None, typer.Option(
    "--lr-decay", help="Multiply the learning rate by this when the validation loss has not "
    "improved for --lr-patience epochs (default: 1 = constant, the paper).")]
LrPatience = Annotated[int | None, typer.Option(
    "--lr-patience", help="Epochs without improvement before each decay (default: 2).")]
LrSchedule = Annotated[str | None, typer.Option(
    "--lr-schedule", help="constant (the paper) or cosine: anneal the rate to zero over "
    "--epochs, every step (default: constant).")]
Augment = Annotated[bool, typer.Option(
    "--augment", help="Show each galaxy under a random symmetry of its stamp (transpose, "
    "flips; e1, e2 transformed to match). Not the paper's training.")]
DropBad = Annotated[bool, typer.Option(
    "--drop-nonfinite", help="Leave out galaxies with NaN/inf pixels or labels (reported).")]
Compile = Annotated[bool, typer.Option(
    "--compile", help="torch.compile the step (several times faster on CPUs after a "
    "compilation of about a minute; drops each epoch's last partial batch).")]
TimeLimit = Annotated[float | None, typer.Option(
    "--time-limit", help="Minutes this invocation may train; no epoch starts that would end "
    "past it (default: 0 = none).")]
DataMode = Annotated[str | None, typer.Option(
    "--data-mode", help="memory (the split in one tensor; fastest), stream (read window by "
    "window while training: stores larger than memory) or auto (stream when the images "
    "would take over 40 % of the available memory) (default: auto).")]
ShuffleBuffer = Annotated[int | None, typer.Option(
    "--shuffle-buffer", help="Streaming: galaxies shuffled together, after the chunk order "
    "is shuffled; larger is closer to a full shuffle and takes more memory (default: 4096).")]
LoaderWorkers = Annotated[int | None, typer.Option(
    "--loader-workers", help="Streaming: processes reading and decoding ahead (default: 1).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")]
Targets = Annotated[str | None, typer.Option(
    help="Predicted quantities: e1,e2,z or e1,e2 (default: e1,e2,z).")]
Scaling = Annotated[str | None, typer.Option(
    "--input-scaling", help="arcsinh (per band, at the noise level) or none (default: arcsinh).")]
InitFrom = Annotated[Path | None, typer.Option(
    "--init-from", help="Start from the weights of a finished cnn/bnn run (a BNN's means "
    "from a CNN: MOPED).")]
Prelu = Annotated[str | None, typer.Option(help="element (Keras) or channel (default: element).")]


def _given(**opts: Any) -> dict[str, Any]:
    """The options given on the command line (unset options and flags left out)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in opts.items()
            if v is not None and v is not False}


def _shape_model(targets: str | None, prelu: str | None, flipout: bool) -> dict[str, Any]:
    model = _given(prelu=prelu, flipout=flipout)
    if targets is not None:
        model["targets"] = [t.strip() for t in targets.split(",") if t.strip()]
    return model


def _run(kind: str, out: Path, resume: bool, progress: bool, train_opts: dict[str, Any],
         model_opts: dict[str, Any]) -> None:
    from cosmobench.train import TrainConfig, fit, make_task
    from cosmobench.train.config import RESUMABLE_CHANGES
    from cosmobench.train.runs import CONFIG_FILE

    stored = out / CONFIG_FILE
    if resume and stored.is_file():
        from cosmobench.files import read_json

        rec = read_json(stored, "run config")
        if isinstance(rec, dict) and rec.get("kind") == kind:
            old = rec["train_config"]
            clash = [k for k, v in train_opts.items()
                     if k not in RESUMABLE_CHANGES and k in old and old[k] != v
                     and not (k == "data" and Path(old[k]).resolve() == Path(v).resolve())]
            clash += [k for k, v in model_opts.items() if rec["model_config"].get(k) != v]
            if clash:
                raise CosmobenchError(
                    f"cannot resume {out} with other settings ({', '.join(clash)}); only "
                    f"{', '.join(RESUMABLE_CHANGES)} may change")
            train_opts = {**old, **{k: v for k, v in train_opts.items()
                                    if k in RESUMABLE_CHANGES}}
            model_opts = rec["model_config"]
    cfg = TrainConfig.from_dict(train_opts)
    try:
        fit(make_task(kind, model_opts), None, cfg, out, resume=resume, progress=progress)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: continue with the same command plus --resume "
                          f"(the last finished epoch is in {out})")
        raise


@train_app.command("cnn")
def train_cnn(data: Data, out: Out, epochs: Epochs = None, batch_size: Batch = None,
              lr: Lr = None, targets: Targets = None, device: Device = None, seed: Seed = None,
              val_fraction: ValFrac = None, precision: Precision = None,
              patience: Patience = None, lr_decay: LrDecay = None,
              lr_patience: LrPatience = None, lr_schedule: LrSchedule = None,
              input_scaling: Scaling = None, prelu: Prelu = None,
              init_from: InitFrom = None, augment: Augment = False,
              drop_nonfinite: DropBad = False,
              compile: Compile = False, time_limit: TimeLimit = None, data_mode: DataMode = None,
              shuffle_buffer: ShuffleBuffer = None, loader_workers: LoaderWorkers = None,
              resume: Resume = False,
              progress: Progress = True) -> None:
    """Train the deterministic shape CNN (1,517,217 parameters for e1,e2,z)."""
    train = _given(data=data, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                   seed=seed, val_fraction=val_fraction, precision=precision,
                   patience=patience, lr_decay=lr_decay, lr_patience=lr_patience,
                   lr_schedule=lr_schedule,
                   input_scaling=input_scaling, init_from=init_from, augment=augment,
                   drop_nonfinite=drop_nonfinite, compile=compile, time_limit=time_limit,
                   data_mode=data_mode, shuffle_buffer=shuffle_buffer,
                   loader_workers=loader_workers)
    _run("cnn", out, resume, progress, train, _shape_model(targets, prelu, False))


@train_app.command("bnn")
def train_bnn(data: Data, out: Out, epochs: Epochs = None, batch_size: Batch = None,
              lr: Lr = None, targets: Targets = None, device: Device = None, seed: Seed = None,
              val_fraction: ValFrac = None, precision: Precision = None,
              patience: Patience = None, lr_decay: LrDecay = None,
              lr_patience: LrPatience = None, lr_schedule: LrSchedule = None,
              input_scaling: Scaling = None, prelu: Prelu = None,
              flipout: Annotated[bool, typer.Option(help="Flipout weight noise.")] = False,
              init_from: InitFrom = None, augment: Augment = False,
              drop_nonfinite: DropBad = False,
              compile: Compile = False, time_limit: TimeLimit = None, data_mode: DataMode = None,
              shuffle_buffer: ShuffleBuffer = None, loader_workers: LoaderWorkers = None,
              resume: Resume = False,
              progress: Progress = True) -> None:
    """Train the Bayesian shape CNN (2,726,241 parameters; loss = negative ELBO)."""
    train = _given(data=data, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                   seed=seed, val_fraction=val_fraction, precision=precision,
                   patience=patience, lr_decay=lr_decay, lr_patience=lr_patience,
                   lr_schedule=lr_schedule,
                   input_scaling=input_scaling, init_from=init_from, augment=augment,
                   drop_nonfinite=drop_nonfinite, compile=compile, time_limit=time_limit,
                   data_mode=data_mode, shuffle_buffer=shuffle_buffer,
                   loader_workers=loader_workers)
    _run("bnn", out, resume, progress, train, _shape_model(targets, prelu, flipout))


@train_app.command("vae")
def train_vae(data: Data, out: Out, epochs: Epochs = None, batch_size: Batch = None,
              lr: Lr = None, device: Device = None, seed: Seed = None,
              val_fraction: ValFrac = None, precision: Precision = None,
              patience: Patience = None, lr_decay: LrDecay = None,
              lr_patience: LrPatience = None, lr_schedule: LrSchedule = None,
              latent: Annotated[int | None, typer.Option(help="Latent size (default: 32).")]
              = None,
              drop_nonfinite: DropBad = False, compile: Compile = False,
              time_limit: TimeLimit = None, data_mode: DataMode = None,
              shuffle_buffer: ShuffleBuffer = None, loader_workers: LoaderWorkers = None,
              resume: Resume = False,
              progress: Progress = True) -> None:
    """Train the VAE noisy → noiseless on band-normalised images; writes a reconstruction PNG."""
    train = _given(data=data, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                   seed=seed, val_fraction=val_fraction, precision=precision,
                   patience=patience, lr_decay=lr_decay, lr_patience=lr_patience,
                   lr_schedule=lr_schedule,
                   drop_nonfinite=drop_nonfinite, compile=compile,
                   time_limit=time_limit, data_mode=data_mode,
                   shuffle_buffer=shuffle_buffer, loader_workers=loader_workers)
    _run("vae", out, resume, progress, train, _given(latent=latent))


@train_app.command("flow")
def train_flow(vae: Annotated[Path, typer.Option("--vae", help="The VAE's run folder.")],
               data: Data, out: Out, epochs: Epochs = None, batch_size: Batch = None,
               lr: Lr = None, device: Device = None, seed: Seed = None,
               val_fraction: ValFrac = None, precision: Precision = None,
               patience: Patience = None, lr_decay: LrDecay = None,
              lr_patience: LrPatience = None, lr_schedule: LrSchedule = None,
               drop_nonfinite: DropBad = False,
               compile: Compile = False, time_limit: TimeLimit = None, data_mode: DataMode = None,
              shuffle_buffer: ShuffleBuffer = None, loader_workers: LoaderWorkers = None,
              resume: Resume = False,
               progress: Progress = True) -> None:
    """Train the masked autoregressive flow on the VAE's encoder means of DATA."""
    from cosmobench.train.runs import load_run

    _vae, info = load_run(vae, expect_kind="vae")
    train = _given(data=data, vae_run=vae, epochs=epochs, batch_size=batch_size, lr=lr,
                   device=device, seed=seed, val_fraction=val_fraction, precision=precision,
                   patience=patience, lr_decay=lr_decay, lr_patience=lr_patience,
                   lr_schedule=lr_schedule,
                   drop_nonfinite=drop_nonfinite, compile=compile,
                   time_limit=time_limit, data_mode=data_mode,
                   shuffle_buffer=shuffle_buffer, loader_workers=loader_workers)
    _run("flow", out, resume, progress, train, {"features": int(info["model_config"]["latent"])})
