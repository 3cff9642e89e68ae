"""Draw ``docs/dataflow.png``: how data moves through cosmobench (``docs/architecture.md``).

.venv/bin/python docs/dataflow.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# (x, y, label, colour): commands in blue, files on disk in grey
BOXES = {
    "sim": (0.10, 0.80, "simulate\n(sim/: GalSim,\nsurvey constants, PSF)", "#cfe2ff"),
    "store": (0.36, 0.80, "DATA.zarr\n(store.py: images\n+ columns, chunks)", "#e9ecef"),
    "train": (0.62, 0.80, "train cnn|bnn|vae|flow\n(train/: tasks, loop,\nmodels/)", "#cfe2ff"),
    "run": (0.88, 0.80, "RUN/\nconfig.json, model.pt,\nmetrics.jsonl", "#e9ecef"),
    "eval": (0.88, 0.45, "evaluate\n(evaluate.py: RMSE,\nslope/offset, coverage)", "#cfe2ff"),
    "gen": (0.62, 0.45, "generate\n(generate/: flow →\ndecoder → counts)", "#cfe2ff"),
    "genstore": (0.36, 0.45, "GEN.zarr\n(kind=generation)", "#e9ecef"),
    "fid": (
        0.10,
        0.45,
        "evaluate-generation\n(generate/fidelity.py:\nHSM, Wasserstein)",
        "#cfe2ff",
    ),
    "bench": (0.36, 0.12, "bench\n(bench/: workloads,\nmodes, timing)", "#cfe2ff"),
    "results": (0.62, 0.12, "results.json\n(env, spec, raw times)", "#e9ecef"),
    "shear": (
        0.10,
        0.12,
        "shear\n(shear/: paired ±g m, c,\nmetacalibration)",
        "#cfe2ff",
    ),
    "compare": (0.88, 0.12, "compare\n(report: the paper's\nfigures, V100/IPU)", "#cfe2ff"),
}
ARROWS = [
    ("sim", "store"),
    ("store", "train"),
    ("train", "run"),
    ("run", "eval"),
    ("run", "gen"),
    ("gen", "genstore"),
    ("genstore", "fid"),
    ("store", "fid"),
    ("store", "eval"),
    ("bench", "results"),
    ("results", "compare"),
    ("store", "shear"),
    ("run", "shear"),
]


PNG = Path(__file__).with_name("dataflow.png")


def main(path: Path = PNG) -> Path:
    fig, ax = plt.subplots(figsize=(11, 5.2))
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.axis("off")
    texts = {
        key: ax.text(
            x,
            y,
            label,
            ha="center",
            va="center",
            fontsize=8.5,
            bbox={"boxstyle": "round,pad=0.5", "fc": colour, "ec": "#495057"},
        )
        for key, (x, y, label, colour) in BOXES.items()
    }
    fig.canvas.draw()  # lay out the boxes so that arrows can end at their edges
    for a, b in ARROWS:
        (xa, ya, *_), (xb, yb, *_) = BOXES[a], BOXES[b]
        ax.annotate(
            "",
            xy=(xb, yb),
            xytext=(xa, ya),
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#495057",
                "shrinkA": 3,
                "shrinkB": 3,
                "patchA": texts[a].get_bbox_patch(),
                "patchB": texts[b].get_bbox_patch(),
                "connectionstyle": "arc3,rad=0.05",
            },
        )
    ax.text(
        0.36,
        0.28,
        "bench times the same training step\nand sampler the commands use",
        ha="center",
        va="center",
        fontsize=8,
        style="italic",
    )
    ax.set_title(
        "cosmobench: commands (blue) and what they write (grey); cli/ parses "
        "options into configs and calls one library function",
        fontsize=9.5,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(main())
