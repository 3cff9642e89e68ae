"""End to end through the CLI: simulate, train the VAE and the flow briefly, generate,
inspect, evaluate-generation. Loose checks only: a few epochs on 128 galaxies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosmobench.cli import main
from cosmobench.store import open_dataset


@pytest.mark.slow
def test_simulate_train_generate_inspect(tiny_dataset, tmp_path, capsys):
    vae, flow, gen = tmp_path / "vae", tmp_path / "flow", tmp_path / "gen.zarr"
    common = ["--data", str(tiny_dataset), "--epochs", "2", "--batch-size", "32",
              "--no-progress"]
    main(["train", "vae", *common, "--out", str(vae), "--precision", "bf16"])
    main(["train", "flow", "--vae", str(vae), *common, "--out", str(flow)])
    main(["generate", "--vae", str(vae), "--flow", str(flow), "--n", "20", "--out", str(gen),
          "--chunk-size", "8", "--noise", "--png", str(tmp_path / "gen.png"), "--no-progress"])
    ds = open_dataset(gen)
    x = ds.images("noiseless")
    assert ds.kind == "generation" and x.shape == (20, 6, 64, 64)
    assert np.isfinite(x).all() and (x >= 0).all()
    assert np.isfinite(ds.images("noisy")).all()
    capsys.readouterr()
    main(["inspect", str(gen), "--png", str(tmp_path / "inspect.png")])
    assert "generation" in capsys.readouterr().out
    main(["evaluate-generation", str(gen), "--reference", str(tiny_dataset), "--out",
          str(tmp_path / "fid"), "--no-progress"])
    fid = json.loads((tmp_path / "fid" / "fidelity.json").read_text())
    assert fid["n"] == 20 and set(fid["quantities"]) == {"log10_flux", "size", "e1", "e2"}
    for path in ("gen.png", "inspect.png", "fid/grid.png"):
        assert (tmp_path / path).stat().st_size > 1000
