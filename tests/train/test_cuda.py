"""The training loop on a GPU (``--device cuda``; skipped without CUDA).

Uses an in-memory stand-in for the store (the GPU machines may lack zarr): the loop, the
device placement of the data, bf16 autocast, checkpoints and resume, loading on the GPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cosmobench.train import TrainConfig, fit, load_run, make_task
from cosmobench.train import tasks as tasks_module

SMALL = {"image_size": 16, "filters": [4, 8]}


class MemoryDataset:
    """The reader API of ``cosmobench.store.Dataset`` over arrays in memory."""

    def __init__(self, n: int = 64, size: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
        blob = np.exp(-(xx**2 + yy**2) / 8.0)
        self.noiseless = (rng.uniform(500, 5000, (n, 6, 1, 1)) * blob).astype(np.float32)
        self.noisy = self.noiseless + rng.normal(0, 30, self.noiseless.shape).astype(np.float32)
        self.cols = {"index": np.arange(n), "e1": rng.normal(0, 0.2, n).astype(np.float32),
                     "e2": rng.normal(0, 0.2, n).astype(np.float32),
                     "redshift": rng.uniform(0.1, 2, n).astype(np.float32)}
        self.n, self.columns, self.image_names = n, tuple(self.cols), ("noiseless", "noisy")
        self.bands, self.stamp_size, self.path = tuple("ugrizy"), size, "memory"

    def column(self, name: str) -> np.ndarray:
        return self.cols[name]

    def tensor(self, name: str = "noisy", index=None, device="cpu") -> torch.Tensor:
        return torch.from_numpy(getattr(self, name).copy()).to(device)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ["cnn", "bnn"])
def test_training_loop_on_the_gpu(kind, device, tmp_path, monkeypatch):
    if not device.startswith("cuda"):
        pytest.skip("needs --device cuda")
    monkeypatch.setattr(tasks_module, "_open", lambda path: MemoryDataset())
    cfg = TrainConfig(epochs=2, batch_size=8, device=device, precision="bf16")
    fit(make_task(kind, SMALL), "memory", cfg, tmp_path / "run", progress=False)
    fit(make_task(kind, SMALL), "memory", cfg.replace(epochs=3), tmp_path / "run",
        resume=True, progress=False)
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    rows = [json.loads(x) for x in text.splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert all(np.isfinite(r["val_loss"]) for r in rows)
    model, info = load_run(tmp_path / "run", device=device)
    assert next(model.parameters()).device.type == "cuda"
    x = torch.from_numpy(MemoryDataset().noisy[:4]).to(device)
    pred = model.predict(x, samples=3)
    assert pred.mean.device.type == "cuda" and torch.isfinite(pred.cov).all()
