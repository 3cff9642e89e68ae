"""The dihedral augmentation: what it does to a stamp is what it does to the labels."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.files import load_checkpoint
from cosmobench.store import open_dataset
from cosmobench.train import TrainConfig, fit, make_task
from cosmobench.train.augment import dihedral


def _hsm_e(stamp: np.ndarray) -> tuple[float, float]:
    res = galsim.hsm.FindAdaptiveMom(galsim.Image(np.ascontiguousarray(stamp, np.float64)))
    return res.observed_shape.e1, res.observed_shape.e2


def test_labels_follow_the_measured_ellipticity_of_the_transformed_stamps(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    x = ds.tensor("noiseless", index=slice(0, 24))[:, 2:3]  # r band, noiseless
    e = torch.tensor([_hsm_e(s[0].numpy()) for s in x], dtype=torch.float32)
    z = torch.rand(len(x), 1)
    y = torch.cat([e, z], 1)
    torch.manual_seed(3)
    xt, yt = dihedral(x, y, ["e1", "e2", "z"])
    measured = torch.tensor([_hsm_e(s[0].numpy()) for s in xt], dtype=torch.float32)
    assert torch.allclose(measured, yt[:, :2], atol=1e-4)  # spin 2: signs as predicted
    assert torch.equal(yt[:, 2], z[:, 0])  # scalars unchanged
    changed = (yt[:, :2] != y[:, :2]).any(1)
    assert 0 < int(changed.sum()) < len(x)  # some galaxies transformed, not all
    assert torch.equal(y[:, :2], e)  # the inputs are left as they were


def test_all_eight_symmetries_occur_and_preserve_the_pixels():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4).expand(4000, 2, 4, 4)
    y = torch.ones(4000, 2)
    xt, yt = dihedral(x, y, ["e1", "e2"], generator=torch.Generator().manual_seed(0))
    distinct = {tuple(im.flatten().tolist()) for im in xt}
    assert len(distinct) == 8  # the dihedral group of the square has 8 elements
    # every image keeps its own pixels, only rearranged
    assert torch.equal(xt.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    # (e1, e2) signs: transpose flips e1, one mirror flips e2; all four combinations
    assert {tuple(r.tolist()) for r in yt} == {(1, 1), (-1, 1), (1, -1), (-1, -1)}


def test_augmented_training_is_reproducible_and_differs(tmp_path, write_store):
    data = write_store(tmp_path / "d.zarr", n=48, size=16)
    cfg = TrainConfig(epochs=3, batch_size=8)
    small = {"image_size": 16, "filters": [4, 8]}
    aug = {"augment": True}
    fit(make_task("cnn", small, aug), data, cfg.replace(time_limit=1e-9), tmp_path / "cut",
        progress=False)
    fit(make_task("cnn", small, aug), data, cfg, tmp_path / "cut", resume=True, progress=False)
    fit(make_task("cnn", small, aug), data, cfg, tmp_path / "whole", progress=False)
    fit(make_task("cnn", small), data, cfg, tmp_path / "plain", progress=False)
    a, b, c = (load_checkpoint(tmp_path / r / "model.pt")["state_dict"]
               for r in ("cut", "whole", "plain"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_augment_is_for_shape_networks_only():
    for kind in ("vae", "flow"):
        with pytest.raises(CosmobenchError, match=f"a {kind} run takes no option augment"):
            make_task(kind, None, {"augment": True})
