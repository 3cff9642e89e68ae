"""Why the shape science run anneals and augments: a short probe on a trained CNN.

Starting from a CNN trained at the paper's constant learning rate (the ``cnn`` run of an
earlier ``shape_science.py``), train 3 more epochs with a cosine-annealed rate from 3e-4,
once without and once with the dihedral augmentation, and print the train/validation loss
and the coverage of the unseen test galaxies. Its results, and the runs that led to it,
are recorded in ``benchmarks/results/shape_science_history.md``.

    .venv/bin/python benchmarks/shape_recipe_probe.py data/shape_science/runs_trial2/cnn
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

from cosmobench.evaluate import evaluate_shape
from cosmobench.shape_report import summarise
from cosmobench.train import TrainConfig, fit, load_run, make_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cnn_run", type=Path, help="a trained cnn run to start from")
    ap.add_argument("--work", type=Path, default=Path("data/shape_science"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for augment in (False, True):
        out = args.work / "probe" / ("augment" if augment else "plain")
        cfg = TrainConfig(
            epochs=args.epochs, batch_size=32, lr=args.lr, lr_schedule="cosine", compile=True
        )
        options = {"init_from": str(args.cnn_run), "augment": augment}
        if not (out / "model.pt").exists():
            fit(
                make_task("cnn", None, options),
                args.work / "train.zarr",
                cfg,
                out,
                resume=(out / "checkpoint.pt").exists(),
                progress=True,
            )
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        model, _ = load_run(out)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = summarise(evaluate_shape(model, args.work / "test.zarr", progress=False))
        print(
            json.dumps(
                {
                    "augment": augment,
                    "loss": [(r["epoch"], r["train_loss"], r["val_loss"]) for r in rows],
                    "pull": s["pull"],
                    "coverage": s["coverage"],
                }
            )
        )


if __name__ == "__main__":
    main()
