"""Streamed training data: the epoch plan, the loader, DDP shards, memory and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmobench.train.stream import (
    StreamSplit,
    choose_data_mode,
    epoch_windows,
    ordered_windows,
    read_chunks,
    read_rows,
    sample_positions,
)


def write_chunked(
    path: Path, n: int, chunk: int, size: int = 16, seed: int = 0, noise: bool = True
) -> Path:
    """A store of ``n`` round blobs in chunks of ``chunk``; ``e1`` holds the galaxy index
    (so a batch says which galaxies it holds)."""
    from cosmobench.store import create_or_resume

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(xx**2 + yy**2) / 8.0).astype(np.float32)
    spec = {"index": "int64", "e1": "float32", "e2": "float32", "redshift": "float32"}
    w = create_or_resume(
        path, n, chunk, "simulation", {"test": True}, spec, ("noisy", "noiseless"), stamp_size=size
    )
    for k in range(w.n_chunks):
        a, b = w.chunk_range(k)
        m = b - a
        clean = rng.uniform(500, 5000, (m, 6, 1, 1)).astype(np.float32) * blob
        noisy = clean + rng.normal(0, 30, clean.shape).astype(np.float32) if noise else clean
        w.write_chunk(
            k,
            {"noisy": noisy, "noiseless": clean},
            {
                "index": np.arange(a, b),
                "e1": np.arange(a, b, dtype=np.float32),
                "e2": rng.normal(0, 0.2, m),
                "redshift": rng.uniform(0.1, 2, m),
            },
        )
    return w.finalize()


def _split(path: Path, positions: np.ndarray, workers: int = 0, window: int = 10) -> StreamSplit:
    y = torch.from_numpy(positions.astype(np.float32))[:, None]  # target = store row
    return StreamSplit(
        str(path), positions, positions.copy(), 8, y=y, shuffle_buffer=window, workers=workers
    )


# ------------------------------------------------------------------------------ the plan


@pytest.mark.parametrize("world", [1, 2, 3])
def test_epoch_windows_partition_the_epoch_into_equal_rank_shards(world):
    pos = np.sort(np.random.default_rng(1).choice(200, 150, replace=False))
    shards = [
        np.concatenate(
            epoch_windows(pos, 16, 5, 2, shuffle_buffer=20, batch_size=6, rank=r, world=world)
        )
        for r in range(world)
    ]
    assert len({len(s) for s in shards}) == 1  # equal steps on every rank
    seen = np.concatenate(shards)
    assert len(seen) == (150 // world) * world
    assert len(np.unique(seen)) == len(seen)  # disjoint
    assert seen.min() >= 0 and seen.max() < 150


def test_epoch_windows_are_whole_batches_deterministic_and_reshuffled_each_epoch():
    pos = np.arange(100)
    a = epoch_windows(pos, 10, 3, 0, shuffle_buffer=25, batch_size=8)
    b = epoch_windows(pos, 10, 3, 0, shuffle_buffer=25, batch_size=8)
    c = epoch_windows(pos, 10, 3, 1, shuffle_buffer=25, batch_size=8)
    assert all(len(w) == 32 for w in a[:-1])  # 25 rounded up to whole batches of 8
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    assert sorted(np.concatenate(a)) == list(range(100))


def test_a_window_mixes_only_nearby_chunks_and_the_whole_split_is_a_full_shuffle():
    pos = np.arange(200)
    wins = epoch_windows(pos, 10, 0, 0, shuffle_buffer=20, batch_size=4)
    assert all(len(np.unique(pos[w] // 10)) <= 3 for w in wins)  # 20 galaxies: 2-3 chunks
    full = epoch_windows(pos, 10, 0, 0, shuffle_buffer=200, batch_size=4)
    assert len(full) == 1 and len(np.unique(full[0] // 10)) == 20


def test_ordered_windows_cover_every_galaxy_once_over_the_ranks():
    parts = [np.concatenate(ordered_windows(23, 4, rank=r, world=3)) for r in range(3)]
    assert sorted(np.concatenate(parts)) == list(range(23))


def test_choose_data_mode_from_available_memory(monkeypatch):
    from cosmobench import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    assert choose_data_mode("auto", 500) == "stream"
    assert choose_data_mode("auto", 100) == "memory"
    assert choose_data_mode("memory", 10**12) == "memory"
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    assert choose_data_mode("auto", 10**12) == "memory"


# ------------------------------------------------------------------------------ reading


def test_read_rows_and_read_chunks_match_the_store(tmp_path):
    from cosmobench.store import open_dataset

    path = write_chunked(tmp_path / "s.zarr", 30, 8)
    ds = open_dataset(path)
    rows = np.array([29, 3, 4, 17, 3, 0])
    np.testing.assert_array_equal(read_rows(ds, "noisy", rows), ds.images("noisy", rows))
    got = list(read_chunks(ds, "noisy", workers=2))
    assert [s for s, _ in got] == [0, 8, 16, 24]
    np.testing.assert_array_equal(np.concatenate([c for _, c in got]), ds.images("noisy"))


def test_sample_positions_take_whole_chunks_of_the_split():
    pos = np.arange(0, 100, 2)  # 5 per chunk of 10
    s = sample_positions(pos, 10, 12, seed=0)
    assert len(s) == 15 and np.isin(s, pos).all()
    assert len(np.unique(s // 10)) == 3
    assert np.array_equal(s, sample_positions(pos, 10, 12, seed=0))


def test_batches_do_not_depend_on_the_number_of_loader_workers(tmp_path):
    path = write_chunked(tmp_path / "s.zarr", 60, 8)
    pos = np.arange(60)[np.arange(60) % 7 != 3]  # a split with holes
    runs = []
    for workers in (0, 2):
        split = _split(path, pos, workers)
        runs.append(list(split.epoch_batches(1, 9, 4, torch.device("cpu"))))
    assert len(runs[0]) == len(runs[1]) == split.steps(4, 1, False)
    for (xa, ya), (xb, yb) in zip(*runs, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    rows = torch.cat([y for _, y in runs[0]])[:, 0].long().numpy()
    assert sorted(rows) == sorted(pos)  # every galaxy once
    from cosmobench.store import open_dataset

    x = torch.cat([x for x, _ in runs[0]])
    assert torch.equal(x, torch.from_numpy(open_dataset(path).images("noisy", rows)))


# ------------------------------------------------------------------------------ DDP


def _rank_main(rank: int, world: int, init: str, path: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    pos = np.arange(70)
    split = _split(Path(path), pos, workers=0, window=12)
    seen = {}
    for epoch in (0, 1):
        ys = [
            y
            for _, y in split.epoch_batches(
                epoch, 3, 5, torch.device("cpu"), rank=rank, world=world
            )
        ]
        seen[epoch] = torch.cat(ys)[:, 0].long().tolist()
    val = [y for _, y in split.ordered_batches(5, torch.device("cpu"), rank=rank, world=world)]
    seen["val"] = torch.cat(val)[:, 0].long().tolist()
    gathered: list = [None] * world
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


def test_two_gloo_ranks_see_every_galaxy_once_per_epoch(tmp_path):
    import torch.multiprocessing as mp

    path = write_chunked(tmp_path / "s.zarr", 70, 8)
    out = tmp_path / "seen.json"
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank_main, args=(2, init, str(path), str(out)), nprocs=2, join=True)
    ranks = json.loads(out.read_text())
    for epoch in ("0", "1", "val"):
        a, b = ranks[0][epoch], ranks[1][epoch]
        assert not set(a) & set(b)  # disjoint shards
        assert sorted(a + b) == list(range(70))  # their union is the epoch
        assert len(a) == len(set(a)) and len(b) == len(set(b))
    assert ranks[0]["0"] != ranks[0]["1"]  # a new order each epoch
    assert len(ranks[0]["0"]) == len(ranks[1]["0"])  # same number of steps


# ------------------------------------------------------------------------------ training


def test_auto_streams_a_store_larger_than_the_memory_allowed(tmp_path, cli, monkeypatch):
    from cosmobench import memory, store
    from cosmobench.files import load_checkpoint
    from cosmobench.store import open_dataset

    path = write_chunked(tmp_path / "s.zarr", 48, 8, size=64)
    need = 48 * 6 * 64 * 64 * 4
    for module in (memory, store):  # the loader may hold half the store
        monkeypatch.setattr(module, "available_bytes", lambda: need // 2)
    with pytest.raises(Exception, match="needs"):
        open_dataset(path).tensor("noisy")  # the in-memory path would refuse it
    code, _, err = cli(
        "train",
        "cnn",
        "--data",
        path,
        "--out",
        tmp_path / "run",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--shuffle-buffer",
        "16",
        "--loader-workers",
        "1",
        "--no-progress",
    )
    assert code == 0, err
    assert "streamed (window 16" in err
    model = load_checkpoint(tmp_path / "run" / "model.pt")
    assert model["data_mode"] == "stream" and model["input_scaling"]["kind"] == "arcsinh"
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"]["data_mode"] == "stream"


_RSS_SCRIPT = """
import resource, sys, numpy as np, torch
from cosmobench.train.stream import StreamSplit
path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pos = np.arange(n)
if mode == "stream":
    split = StreamSplit(path, pos, pos, 25, shuffle_buffer=50, workers=1)
    total = sum(float(x[:, 0, 0, 0].sum()) for x, _ in split.epoch_batches(0, 0, 10,
                torch.device("cpu")))
else:
    from cosmobench.store import open_dataset
    x = open_dataset(path).tensor("noisy")
# the peak of this process's own memory map: VmHWM starts afresh at exec, while ru_maxrss
# keeps the RSS of the (large) pytest process this one was forked from
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(hwm + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_kib(path: Path, n: int, mode: str) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(path), str(n), mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.slow
def test_streaming_memory_is_bounded_by_the_window_not_the_store(tmp_path):
    small = write_chunked(tmp_path / "small.zarr", 200, 25, size=64, noise=False)
    large = write_chunked(tmp_path / "large.zarr", 2000, 25, size=64, noise=False)
    grow_mb = (2000 - 200) * 6 * 64 * 64 * 4 / 2**20  # 169 MiB more images
    stream = _peak_kib(large, 2000, "stream") - _peak_kib(small, 200, "stream")
    memory = _peak_kib(large, 2000, "memory") - _peak_kib(small, 200, "memory")
    assert memory / 1024 > 0.8 * grow_mb  # in memory the peak grows with the store
    # streamed it stays at the windows in flight (the worker's heap creeps a little)
    assert stream / 1024 < 0.25 * grow_mb


@pytest.mark.slow
def test_streamed_run_killed_and_resumed_matches_an_uninterrupted_run(
    tmp_path, cli, kill_inside_an_epoch
):

    from cosmobench.files import load_checkpoint

    path = write_chunked(tmp_path / "s.zarr", 64, 8, size=64)
    args = [
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--seed",
        "7",
        "--data-mode",
        "stream",
        "--shuffle-buffer",
        "16",
        "--loader-workers",
        "1",
        "--no-progress",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    kill_inside_an_epoch(killed, "train", "bnn", "--data", str(path), "--out", str(killed), *args)
    assert load_checkpoint(killed / "checkpoint.pt")["epoch"] < 3
    code, _, err = cli(
        "train",
        "bnn",
        "--data",
        path,
        "--out",
        killed,
        "--resume",
        "--loader-workers",
        "2",
        "--no-progress",
    )  # workers may change
    assert code == 0, err
    code, _, err = cli("train", "bnn", "--data", path, "--out", whole, *args)
    assert code == 0, err
    a, b = load_checkpoint(whole / "model.pt"), load_checkpoint(killed / "model.pt")
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert a["data_mode"] == b["data_mode"] == "stream"


def test_a_corrupt_chunk_is_a_one_line_error_from_the_loader_workers(tmp_path):
    from cosmobench.errors import CosmobenchError

    path = write_chunked(tmp_path / "s.zarr", 24, 8)
    victim = sorted((path / "noisy").rglob("c/*/0/0/0"))[1]
    victim.write_bytes(b"not a blosc frame")
    split = _split(path, np.arange(24), workers=1)
    with pytest.raises(CosmobenchError, match="corrupt chunk") as e:
        list(split.epoch_batches(0, 0, 4, torch.device("cpu")))
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


def test_memory_mode_on_a_store_too_large_says_to_stream(
    tmp_path, cli, monkeypatch, one_line_error
):
    from cosmobench import memory

    path = write_chunked(tmp_path / "s.zarr", 16, 8, size=64)
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    code, _, err = cli(
        "train",
        "cnn",
        "--data",
        path,
        "--out",
        tmp_path / "run",
        "--data-mode",
        "memory",
        "--no-progress",
    )
    assert "--data-mode stream" in one_line_error(code, err)


def test_loader_workers_default_reads_in_process_when_torch_takes_every_core(monkeypatch):
    from cosmobench.errors import CosmobenchError
    from cosmobench.train import TrainConfig
    from cosmobench.train.stream import auto_loader_workers

    assert TrainConfig().loader_workers == -1  # chosen per machine by fit()
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert auto_loader_workers(torch.device("cpu")) == 0  # a worker would preempt a thread
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert auto_loader_workers(torch.device("cpu")) == 1  # a core to spare
    assert auto_loader_workers(torch.device("cuda")) == 1
    with pytest.raises(CosmobenchError, match="loader workers must be an integer >= 0, or -1"):
        TrainConfig(loader_workers=-2)
