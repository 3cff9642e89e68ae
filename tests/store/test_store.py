"""The Zarr store: schema, writer, reader, completeness, and every way to open a bad store."""

import json
import shutil

import numpy as np
import pytest

from cosmobench import store
from cosmobench.errors import CosmobenchError
from cosmobench.store import ColumnSpec, create_or_resume, open_dataset, open_writer

COLS = {
    "e1": ("float32", ()),
    "mag": ("float32", (6,)),
    "rot90": "bool",
    "index": ColumnSpec("int64"),
}


def _chunk(writer, k, offset=0.0):
    start, stop = writer.chunk_range(k)
    m = stop - start
    rows = np.arange(start, stop)
    img = (rows[:, None, None, None] + offset + np.zeros((m, 6, 8, 8))).astype(np.float32)
    cols = {
        "e1": rows / 100,
        "mag": np.tile(rows[:, None], (1, 6)),
        "rot90": rows % 2 == 1,
        "index": rows,
    }
    return {"noiseless": img, "noisy": img + 0.5}, cols


def _make(path, n=10, chunk=4, config=None, write=None, **kw):
    w = create_or_resume(
        path, n, chunk, "simulation", config or {"seed": 1}, COLS, stamp_size=8, **kw
    )
    for k in w.pending_chunks() if write is None else write:
        w.write_chunk(k, *_chunk(w, k))
    return w


def test_write_and_read_back(tmp_path):
    path = tmp_path / "d.zarr"
    w = _make(path)
    assert w.n_chunks == 3 and w.chunk_range(2) == (8, 10)
    assert w.finalize() == path
    ds = open_dataset(path)
    assert (ds.n, ds.kind, ds.bands, ds.stamp_size, ds.chunk_size) == (
        10,
        "simulation",
        tuple("ugrizy"),
        8,
        4,
    )
    assert ds.attrs["schema"] == "cosmobench.dataset" and ds.attrs["schema_version"] == 1
    assert ds.config == {"seed": 1} and set(ds.attrs["versions"]) >= {
        "galsim",
        "numpy",
        "zarr",
        "torch",
    }
    assert ds.columns == ("e1", "mag", "rot90", "index")
    np.testing.assert_allclose(ds.column("e1"), np.arange(10) / 100, rtol=1e-6)
    assert ds.column("mag").shape == (10, 6) and ds.column("rot90").dtype == bool
    x = ds.images("noisy")
    assert x.shape == (10, 6, 8, 8) and x.dtype == np.float32
    np.testing.assert_array_equal(x[:, 0, 0, 0], np.arange(10) + 0.5)
    np.testing.assert_array_equal(ds.images("noiseless", [7, 2, 2, -1])[:, 0, 0, 0], [7, 2, 2, 9])
    np.testing.assert_array_equal(ds.images("noiseless", slice(3, 5))[:, 0, 0, 0], [3, 4])
    np.testing.assert_array_equal(ds.images("noiseless", np.arange(10) > 7)[:, 0, 0, 0], [8, 9])
    assert ds.images("noiseless", 4).shape == (6, 8, 8)
    t = ds.tensor("noisy", index=[1, 2])
    assert tuple(t.shape) == (2, 6, 8, 8) and str(t.dtype) == "torch.float32"
    chunks = list(ds.iter_chunks("noiseless"))
    assert [s for s, _ in chunks] == [0, 4, 8] and chunks[-1][1].shape[0] == 2
    assert [len(c) for _, c in ds.iter_chunks("e1")] == [4, 4, 2]
    with pytest.raises(CosmobenchError, match="array must be one of"):
        ds.column("e3")
    with pytest.raises(CosmobenchError, match="noiseless, noisy"):
        ds.images("clean")
    assert "complete" in repr(ds) and len(ds) == 10


def test_incomplete_store_is_refused_unless_asked_and_resumes(tmp_path):
    path = tmp_path / "d.zarr"
    w = _make(path, write=[2, 0])
    with pytest.raises(CosmobenchError, match=r"incomplete \(2 of 3 chunks"):
        open_dataset(path)
    ds = open_dataset(path, allow_incomplete=True)
    assert not ds.complete and np.isnan(ds.column("e1")[4:8]).all()
    with pytest.raises(CosmobenchError, match="incomplete"):
        w.finalize()
    # same settings: resumes, only the missing chunk is pending
    w2 = create_or_resume(path, 10, 4, "simulation", {"seed": 1}, COLS, stamp_size=8)
    assert w2.pending_chunks() == [1]
    w2.write_chunk(1, *_chunk(w2, 1))
    assert open_dataset(path).complete
    # a worker reopens the same store to write
    assert open_writer(path).pending_chunks() == []


def test_another_config_is_an_error(tmp_path):
    path = tmp_path / "d.zarr"
    _make(path)
    with pytest.raises(CosmobenchError, match=r"exists with another config \(seed: 1 → 2\)"):
        create_or_resume(path, 10, 4, "simulation", {"seed": 2}, COLS, stamp_size=8)
    with pytest.raises(CosmobenchError, match="chunk_size: 4 → 5"):
        create_or_resume(path, 10, 5, "simulation", {"seed": 1}, COLS, stamp_size=8)
    with pytest.raises(CosmobenchError, match="kind"):
        create_or_resume(path, 10, 4, "generation", {"seed": 1}, COLS, stamp_size=8)


def test_other_software_versions_are_an_error(tmp_path, monkeypatch):
    path = tmp_path / "d.zarr"
    _make(path, write=[0])
    monkeypatch.setattr(store, "software_versions", lambda: {"galsim": "0.1"})
    with pytest.raises(CosmobenchError, match="other software"):
        create_or_resume(path, 10, 4, "simulation", {"seed": 1}, COLS, stamp_size=8)


def test_generation_kind_with_its_own_columns_and_attrs(tmp_path):
    path = tmp_path / "g.zarr"
    w = create_or_resume(
        path, 5, 5, "generation", {"n": 5}, {"z": ("float32", (32,))}, ("noiseless",),
        stamp_size=8, extra_attrs={"vae_run": "runs/vae", "flow_fingerprint": "abc"},
    )  # fmt: skip
    w.write_chunk(0, {"noiseless": np.ones((5, 6, 8, 8))}, {"z": np.zeros((5, 32))})
    ds = open_dataset(path)
    assert (
        ds.kind == "generation"
        and ds.image_names == ("noiseless",)
        and ds.attrs["vae_run"] == "runs/vae"
    )
    with pytest.raises(ValueError, match="missing"):
        w.write_chunk(0, {"noiseless": np.ones((5, 6, 8, 8))}, {})
    with pytest.raises(ValueError, match="shape"):
        w.write_chunk(0, {"noiseless": np.ones((4, 6, 8, 8))}, {"z": np.zeros((5, 32))})


def test_missing_foreign_corrupt_and_newer_stores(tmp_path):
    with pytest.raises(CosmobenchError, match="does not exist"):
        open_dataset(tmp_path / "nope.zarr")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(CosmobenchError, match="not a cosmobench data set"):
        open_dataset(folder)
    with pytest.raises(CosmobenchError, match="not a cosmobench data set"):
        create_or_resume(folder, 10, 4, "simulation", {}, COLS)
    import zarr

    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w").create_array(
        "x", shape=(3,), dtype="f4"
    )
    with pytest.raises(CosmobenchError, match="Zarr store but not a cosmobench data set"):
        open_dataset(tmp_path / "foreign.zarr")
    path = tmp_path / "d.zarr"
    _make(path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["schema_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(CosmobenchError, match="schema version 99"):
        open_dataset(path)
    (path / "zarr.json").write_text("{not json")
    with pytest.raises(CosmobenchError, match="corrupt or not a Zarr v3 store"):
        open_dataset(path)
    path2 = tmp_path / "d2.zarr"
    _make(path2)
    shutil.rmtree(path2 / "mag")
    with pytest.raises(CosmobenchError, match="arrays missing: mag"):
        open_dataset(path2)


def test_a_truncated_chunk_is_a_one_line_error(tmp_path):
    path = tmp_path / "d.zarr"
    _make(path)
    chunk = next(p for p in (path / "noisy").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:10])
    ds = open_dataset(path)
    with pytest.raises(CosmobenchError, match="corrupt chunk") as info:
        ds.images("noisy")
    assert "\n" not in str(info.value)


def test_unwritable_paths_leave_nothing_behind(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(CosmobenchError, match="cannot write"):
        _make(blocker / "d.zarr")
    with pytest.raises(CosmobenchError, match="cannot write"):
        _make("/proc/cosmobench-test/d.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_creation_is_atomic_and_an_empty_folder_is_used(tmp_path):
    path = tmp_path / "d.zarr"
    path.mkdir()
    (tmp_path / ".d.zarr.partial-deadbeef").mkdir()  # left by a killed creation
    _make(path)
    assert open_dataset(path).complete
    assert [p.name for p in tmp_path.iterdir()] == ["d.zarr"]


def test_tensor_refuses_what_does_not_fit(tmp_path, monkeypatch):
    path = tmp_path / "d.zarr"
    _make(path)
    monkeypatch.setattr(store, "available_bytes", lambda: 1000)
    with pytest.raises(CosmobenchError, match="iter_chunks"):
        open_dataset(path).tensor("noisy")


def test_tiny_dataset_fixture(tiny_dataset):
    ds = open_dataset(tiny_dataset)
    assert ds.n == 128 and ds.kind == "simulation" and ds.complete
    x = ds.tensor("noisy")
    assert tuple(x.shape) == (128, 6, 64, 64)
    assert np.isfinite(ds.column("e1")).all() and np.isfinite(ds.column("redshift")).all()
    assert ds.column("snr")[:, 2].min() > 0 and np.nanmedian(ds.column("snr")[:, 2]) > 10
    assert ds.column("psf_fwhm").shape == (128, 6)
    assert np.isfinite(ds.column("regauss_e1")).mean() > 0.8
    assert ds.config["seed"] == 1234 and ds.config["population"] == "builtin"
