"""One loader of shape data for training, the benchmark and the science scripts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.store import open_dataset
from cosmobench.train.data import split_by_index
from cosmobench.train.scaling import ArcsinhScaler
from cosmobench.train.sources import load_shape_data

COLUMNS = ("e1", "e2", "redshift")


def test_the_scaler_is_fitted_on_the_training_split_only(tmp_path, write_store):
    path = write_store(tmp_path / "s.zarr", n=60)
    d = load_shape_data(str(path), COLUMNS, val_fraction=0.3)
    ds = open_dataset(path)
    train_pos, val_pos = split_by_index(ds.column("index"), 0.3)
    raw = torch.from_numpy(ds.images("noisy", train_pos))
    assert torch.equal(d.scaler.scale, ArcsinhScaler.fit(raw).scale)
    assert not torch.equal(d.scaler.scale, ArcsinhScaler.fit(ds.tensor("noisy")).scale)
    assert torch.allclose(d.train.x, d.scaler(raw))
    assert np.array_equal(d.val.index, ds.column("index")[val_pos])
    assert d.train.y.shape == (len(train_pos), 3)


def test_nonfinite_galaxies_are_refused_or_dropped_and_counted(tmp_path, write_store):
    path = write_store(tmp_path / "s.zarr", n=40, nan_pixels=3, inf_labels=2)
    with pytest.raises(CosmobenchError, match="5 of 40 galaxies"):
        load_shape_data(str(path), COLUMNS)
    d = load_shape_data(str(path), COLUMNS, drop_nonfinite=True)
    assert d.report["dropped_nonfinite"] == {"galaxies": 5, "of": 40, "noisy": 3, "redshift": 2}
    assert len(d.train) + len(d.val) == 35
    assert torch.isfinite(d.train.x).all() and torch.isfinite(d.train.y).all()


def test_max_train_reads_the_first_training_galaxies(tmp_path, write_store):
    path = write_store(tmp_path / "s.zarr", n=50)
    d = load_shape_data(str(path), COLUMNS, max_train=7, scaling="none")
    pos = split_by_index(open_dataset(path).column("index"), 0.1)[0][:7]
    assert torch.equal(d.train.x, torch.from_numpy(open_dataset(path).images("noisy", pos)))
    assert len(d.val) == 0 and d.scaler is None
