"""How a shape network's mean ellipticity moves when its images carry more noise than in
training: the additive shear bias that metacalibration's doubled noise exposes.

Metacalibration (Sheldon & Huff 2017) adds a correcting noise field of the sky variance to
each image, so the images a network measures inside it carry twice the noise it was trained
on. This probe asks whether extra noise alone, without any metacal image operation, moves a
trained network's mean (e1, e2): it measures the network on the first ``--n`` images of a
shear-test store as they are, with white noise of each band's sky variance added
independently per band, and with one unit field added to all six bands (the correcting
noise of ``cosmobench.shear.metacal`` is one field for all bands), and reports the mean shift
of each against the images as they are, with its standard error. Usage::

    python benchmarks/shear_noise_probe.py --store data/shear_full/shear_test.zarr \\
        --run data/shear_full/runs/cnn --out benchmarks/results/shear_noise_probe.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from cosmobench.shear.metacal import Metacal
from cosmobench.store import open_dataset
from cosmobench.train import load_run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True, help="a shear-test store")
    ap.add_argument("--run", type=Path, required=True, help="a trained cnn or bnn run folder")
    ap.add_argument("--n", type=int, default=4000, help="images measured")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="Markdown file (default: print)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = open_dataset(args.store)
    model, _ = load_run(args.run, expect_kind=("cnn", "bnn"))
    targets = list(model.config.targets)
    cols = [targets.index("e1"), targets.index("e2")]
    sky = np.sqrt(Metacal(ds.config).sky[: len(ds.bands)])[None, :, None, None]
    n = min(args.n, ds.n)
    x = ds.images("noisy", slice(0, n))
    rng = np.random.default_rng(args.seed)

    def measure(images: np.ndarray) -> np.ndarray:
        torch.manual_seed(args.seed)
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(images, np.float32))
            return model.predict(t, samples=1).mean[:, cols].double().numpy()

    base = measure(x)
    rows = [f"| as stored | {base[:, 0].mean():+.4f} | {base[:, 1].mean():+.4f} | | |"]
    for name, extra in (
        ("+ white noise, independent per band", sky * rng.standard_normal(x.shape)),
        ("+ one white-noise field in all bands", sky * rng.standard_normal((n, 1, *x.shape[2:]))),
    ):
        d = measure(x + extra) - base
        se = d.std(0) / np.sqrt(n)
        rows.append(
            f"| {name} | {(base + d)[:, 0].mean():+.4f} | {(base + d)[:, 1].mean():+.4f} | "
            f"{d[:, 0].mean():+.4f} ± {se[0]:.4f} | {d[:, 1].mean():+.4f} ± {se[1]:.4f} |"
        )
    cmd = "python " + " ".join(
        shlex.quote(a) for a in ["benchmarks/shear_noise_probe.py", *sys.argv[1:]]
    )
    text = "\n".join(
        [
            "# A shape network's mean ellipticity under extra noise",
            "",
            f"Command: `{cmd}`. Network `{args.run}`, the first {n:,} images of `{args.store}`; "
            "the added noise has each band's sky variance (what metacalibration's noise "
            "correction adds). Shifts are paired differences against the images as stored, "
            "with their standard error over images.",
            "",
            "| images | ⟨e1⟩ | ⟨e2⟩ | shift e1 | shift e2 |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    if args.out:
        args.out.write_text(text)
        print("wrote", args.out)
    else:
        print(text)


if __name__ == "__main__":
    main()
