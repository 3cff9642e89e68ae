"""The scaling benchmark's library parts: the blob store and its read bandwidth, the
projection and the Markdown report, on tiny inputs (no training, no subprocess)."""

from __future__ import annotations

import json
import sys

import pytest

from cosmobench.bench.scaling import (
    GALAXY_BYTES,
    PARAMS,
    bench_read,
    blob_store,
    last_rate,
    run_timed,
    train_cmd,
)
from cosmobench.bench.scaling_report import projection, scaling_markdown
from cosmobench.errors import CosmobenchError
from cosmobench.store import open_dataset

NVLINK, IB = "8 GPUs (one node, NVLink)", "64 nodes x 8 GPUs (InfiniBand HDR)"


def test_blob_store_and_read(tmp_path):
    path = tmp_path / "blobs.zarr"
    write_s = blob_store(path, 20, 8, seed=3)
    ds = open_dataset(path)
    assert ds.n == 20 and write_s > 0
    x = ds.tensor("noisy")
    assert tuple(x.shape) == (20, 6, 64, 64)
    assert float(x[:, :, 31:33, 31:33].mean()) > 10 * float(x[:, :, :4, :4].std())  # a blob
    r = bench_read(path, 20, write_s)
    assert r["write_MB_per_s"] == pytest.approx(2 * 20 * GALAXY_BYTES / 1e6 / write_s)
    for w in (0, 1, 2):
        assert r[f"read_galaxies_per_s_workers_{w}"] > 0
        assert r[f"read_MB_per_s_workers_{w}"] == pytest.approx(
            r[f"read_galaxies_per_s_workers_{w}"] * GALAXY_BYTES / 1e6
        )
    assert 0 < r["store_MB_on_disk"] < 2 * 20 * GALAXY_BYTES / 1e6


def test_last_rate_and_train_cmd(tmp_path):
    rows = [
        {"epoch": 0, "images_per_s": None},  # the validation before training
        {"epoch": 1, "images": 100, "seconds": 20.0},  # warm-up: left out
        {"epoch": 2, "images": 100, "seconds": 10.0},
        {"epoch": 3, "images": 100, "seconds": 6.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert last_rate(tmp_path) == 200 / 16  # all images of the later epochs over their time
    cmd = train_cmd(tmp_path / "d.zarr", tmp_path / "out", 14, "stream", epochs=3, workers=0)
    assert cmd[:4] == ["-m", "cosmobench", "train", "cnn"]
    assert cmd[cmd.index("--batch-size") + 1] == "14"
    assert cmd[cmd.index("--data-mode") + 1] == "stream"
    assert cmd[cmd.index("--loader-workers") + 1] == "0"
    assert cmd[cmd.index("--epochs") + 1] == "3"


def test_run_timed_raises_with_stderr():
    assert run_timed([sys.executable, "-c", "pass"], 1) > 0
    with pytest.raises(CosmobenchError, match="boom"):
        run_timed([sys.executable, "-c", "import sys; sys.exit('boom')"], 1)


def test_projection_numbers():
    p = projection({"read": {"read_MB_per_s_workers_0": 100.0}})
    v100 = 100 * 8000 / 442.94
    assert p["v100_train_images_per_s"] == pytest.approx(v100)
    q = p[NVLINK]
    assert q["read_MB_per_s_needed"] == pytest.approx(8 * v100 * GALAXY_BYTES / 1e6)
    assert q["loader_processes_needed"] == pytest.approx(q["read_MB_per_s_needed"] / 100)
    ring = 2 * 7 / 8 * PARAMS["cnn"] * 4 / 150e9 + 2 * 7 * 10e-6  # ring all-reduce, s
    assert q["allreduce_cnn_ms"] == pytest.approx(ring * 1e3)
    assert q["allreduce_cnn_share_of_step_b14"] == pytest.approx(ring / (ring + 14 / v100))
    # more GPUs across a slower link: a larger all-reduce, more data to read
    assert p[IB]["allreduce_bnn_ms"] > q["allreduce_bnn_ms"] > q["allreduce_cnn_ms"]
    assert p[IB]["read_MB_per_s_needed"] == pytest.approx(64 * q["read_MB_per_s_needed"])


def fake_result() -> dict:
    rate = {"galaxies_per_s": 10.0}
    return {
        "machine": {"cpu": "Fake CPU", "cores": 2, "load_before": 0.5, "load_after": 1.5},
        "train": [
            {
                "batch_size": 2,
                "memory_images_per_s": 40.0,
                "stream_images_per_s": 38.0,
                "stream_over_memory": 0.95,
            }
        ],
        "ddp": {"images_per_s": {"1": 40.0, "2": 60.0}, "efficiency": 0.75},
        "simulate": {
            "workers-1": rate,
            "workers-2": {"galaxies_per_s": 18.0},
            "dask-local-1": rate,
            "dask-local-2": {"galaxies_per_s": 16.0},
            "efficiency_workers": 0.9,
            "efficiency_dask": 0.8,
        },
        "generate": {"ranks-1": rate, "ranks-2": {"galaxies_per_s": 15.0}, "efficiency": 0.75},
        "read": {
            "read_MB_per_s_workers_0": 300.0,
            "read_MB_per_s_workers_1": 200.0,
            "read_MB_per_s_workers_2": 350.0,
            "write_MB_per_s": 50.0,
        },
        "rss": [
            {
                "n": 500,
                "images_MB": 49.0,
                "stream_main_MB": 400.0,
                "stream_worker_MB": 300.0,
                "memory_peak_MB": 450.0,
            }
        ],
    }


def test_scaling_markdown():
    res = fake_result()
    res["projection"] = projection(res)
    md = scaling_markdown(res, "python benchmarks/scaling.py --quick")
    assert md.startswith("# Scaling on Fake CPU (2 cores)\n")
    assert "load average before 0.50, after 1.50" in md
    assert "| 2 | 40.0 | 38.0 | 0.95 |" in md
    assert "| torchrun CNN training, gloo (images/s) | 40.0 | 60.0 | 0.75 |" in md
    assert "| simulate --workers (galaxies/s) | 10.0 | 18.0 | 0.90 |" in md
    assert "| 500 | 49 | 400 + 300 | 450 |" in md
    q = res["projection"][NVLINK]
    assert f"| {NVLINK} | {q['read_MB_per_s_needed']:.0f} |" in md
    assert md.count(f"| {IB} |") == 1 and md.endswith("\n")


def test_scaling_markdown_with_both_loader_settings():
    res = fake_result()
    res["train"][0].update(stream0_images_per_s=39.0, stream0_over_memory=0.975)
    res["projection"] = projection(res)
    res["parts_measured_last"] = ["train"]
    md = scaling_markdown(res, "python benchmarks/scaling.py --parts train")
    assert "| 2 | 40.0 | 39.0 | 0.97 | 38.0 | 0.95 |" in md
    assert "This command measured train; the other sections are the previous" in md


def test_scaling_markdown_with_rounds():
    res = fake_result()
    res["train"][0].update(
        repeats=2,
        stream0_images_per_s=39.0,
        stream0_over_memory=0.975,
        stream0_over_memory_each=[0.95, 1.0],
        stream_over_memory_each=[0.9, 1.0],
    )
    res["projection"] = projection(res)
    md = scaling_markdown(res, "python benchmarks/scaling.py --parts train --train-repeats 2")
    assert "| 2 | 40.0 | 39.0 | 0.97 (0.95, 1.00) | 38.0 | 0.95 (0.90, 1.00) |" in md
    assert "2 rounds of them" in md
    assert "Mean ratio over the batch sizes: 0.97 (0 workers), 0.95 (1 worker)." in md


def test_bench_training_interleaves_rounds_and_takes_medians(monkeypatch, tmp_path):
    """Each round runs memory, stream (0 workers), stream (1 worker) back to back; rates are
    medians over rounds, ratios medians of each round's own ratio."""
    import cosmobench.bench.scaling as sc

    order, rates = [], iter([10.0, 9.0, 8.0, 20.0, 19.0, 10.0, 30.0, 30.0, 30.0])
    monkeypatch.setattr(sc, "run_timed", lambda cmd, threads: order.append(cmd) or 0.0)
    monkeypatch.setattr(sc, "last_rate", lambda out: next(rates))
    monkeypatch.setattr(sc.shutil, "rmtree", lambda path: None)
    (row,) = sc.bench_training(tmp_path, tmp_path / "d.zarr", (4,), 2, repeats=3)
    modes = [(c[c.index("--data-mode") + 1], c[c.index("--loader-workers") + 1]) for c in order]
    assert modes == [("memory", "0"), ("stream", "0"), ("stream", "1")] * 3
    assert row["memory_images_per_s"] == 20.0 and row["stream0_images_per_s"] == 19.0
    assert row["stream0_over_memory_each"] == [0.9, 0.95, 1.0]
    assert row["stream0_over_memory"] == 0.95
    assert row["stream_over_memory"] == pytest.approx(0.8)  # median of 0.8, 0.5, 1.0
    assert row["repeats"] == 3
