"""Writes that fail: the one output check and the one write-error message, injected
(``OSError`` from a patched call, works anywhere) and real (small tmpfs mounts, as root)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmobench.errors import CosmobenchError
from cosmobench.files import atomic_write, save_checkpoint, write_json


def _one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2 and "Traceback" not in out + err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


def test_atomic_write_disk_full_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("cosmobench.files.os.fsync", full)
    with pytest.raises(
        CosmobenchError, match="cannot write .*a.json: No space left on device; free some space"
    ):
        write_json(tmp_path / "a.json", {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_over_a_folder_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(CosmobenchError, match="it is a folder"):
        atomic_write(tmp_path / "d", lambda f: f.write(b"x"))


def test_torch_disk_full_becomes_one_line(world):
    """torch's zip writer reports a full disk as a RuntimeError (inline_container.cc)."""
    if world.full is None:
        pytest.skip("no small tmpfs (needs root and mount)")
    filler = world.full / "filler"
    try:
        free = os.statvfs(world.full).f_bavail * os.statvfs(world.full).f_frsize
        filler.write_bytes(b"\0" * max(0, free - 64 * 1024))
        with pytest.raises(CosmobenchError, match="cannot write .*model.pt"):
            save_checkpoint(world.full / "run" / "model.pt", {"w": torch.zeros(200_000)})
        assert not (world.full / "run" / "model.pt").exists()
        assert not [p for p in (world.full / "run").iterdir() if p.suffix == ".tmp"]
    finally:
        filler.unlink(missing_ok=True)


def test_main_turns_a_late_torch_write_failure_into_one_line(world, tmp_path, cli, monkeypatch):
    def fit(*a, **k):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
            "failed writing file data/0: file write failed"
        )

    monkeypatch.setattr("cosmobench.train.fit", fit)
    line = _one_error_line(
        *cli(["train", "cnn", "--data", world.sim, "--out", tmp_path / "r", "--no-progress"])
    )
    assert "cannot write" in line and "free some space" in line and "inline" not in line


def test_main_turns_a_late_oserror_into_one_line(world, tmp_path, cli, monkeypatch):
    """A disk that fills up after the checks: the store writer's OSError reaches main."""

    def write_chunk(self, k, images, columns):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "noisy" / "c"))

    monkeypatch.setattr("cosmobench.store.StoreWriter.write_chunk", write_chunk)
    out = tmp_path / "a.zarr"
    line = _one_error_line(
        *cli(["simulate", "--n", "4", "--no-measure", "--out", out, "--no-progress"])
    )
    assert "cannot write" in line and "No space left on device" in line
    from cosmobench.store import open_dataset

    with pytest.raises(CosmobenchError, match="incomplete"):
        open_dataset(out)  # what is left is refused, not passed off as whole


READ_ONLY_CASES = {
    "simulate": ["simulate", "--n", "4", "--out", "{ro}/a.zarr", "--no-progress"],
    "inspect": ["inspect", "{sim}", "--png", "{ro}/g.png"],
    "train": ["train", "cnn", "--data", "{sim}", "--out", "{ro}/run", "--no-progress"],
    "evaluate": ["evaluate", "{cnn}", "--data", "{sim}", "--out", "{ro}/ev", "--no-progress"],
    "generate": [
        "generate",
        "--vae",
        "{vae}",
        "--flow",
        "{flow}",
        "--n",
        "4",
        "--out",
        "{ro}/g.zarr",
        "--no-progress",
    ],
    "evaluate-generation": [
        "evaluate-generation",
        "{gen}",
        "--reference",
        "{sim}",
        "--out",
        "{ro}/e",
        "--no-progress",
    ],
    "bench": ["bench", "simulate", "--out", "{ro}/r.json", "--no-progress"],
    "compare": ["compare", "{results}", "--out", "{ro}/rep"],
    "demo": ["demo", "--out", "{ro}/d"],
}


@pytest.mark.parametrize("name", list(READ_ONLY_CASES))
def test_injected_read_only_output(name, world, tmp_path, cli, monkeypatch):
    """Where no mount is possible: the probe's OSError(EROFS), injected, for every command."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve().is_relative_to(ro):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr("cosmobench.outputs.tempfile.mkstemp", mkstemp)
    argv = [
        a.format(
            ro=ro,
            sim=world.sim,
            cnn=world.cnn,
            vae=world.vae,
            flow=world.flow,
            gen=world.gen,
            results=world.results,
        )
        for a in READ_ONLY_CASES[name]
    ]
    line = _one_error_line(*cli(argv))
    assert "Read-only file system" in line and "choose another --" in line
    assert list(ro.iterdir()) == []


def test_real_disk_full_during_simulate(world, cli):
    """The estimate skipped: the real ENOSPC in the middle of the writes is one line."""
    if world.full is None:
        pytest.skip("no small tmpfs (needs root and mount)")
    out = world.full / "big.zarr"
    try:
        line = _one_error_line(
            *cli(
                [
                    "simulate",
                    "--n",
                    "96",
                    "--chunk-size",
                    "8",
                    "--no-measure",
                    "--ignore-free-space",
                    "--out",
                    out,
                    "--no-progress",
                ]
            )
        )
        assert "No space left on device" in line and "free some space" in line
    finally:
        import shutil

        shutil.rmtree(out, ignore_errors=True)


def test_bench_whose_every_point_fails_is_a_failed_run(world, tmp_path, cli):
    out = tmp_path / "r.json"
    line = _one_error_line(
        *cli(
            [
                "bench",
                "train-cnn",
                "--batch-sizes",
                "2,4",
                "--repeats",
                "1",
                "--min-block",
                "0.001",
                "--warmup-max",
                "0.1",
                "--data",
                world.gen,
                "--out",
                out,
                "--no-progress",
            ]
        )
    )
    assert "every point of the benchmark failed (2" in line
    saved = json.loads(out.read_text())
    assert saved["complete"] is False and {r["status"] for r in saved["records"]} == {"error"}


def test_inspect_cost_follows_what_it_shows(tmp_path, cli):
    """A store declaring 1e11 galaxies with one chunk written: inspect reads that chunk only."""
    import tracemalloc

    from cosmobench.sim import SimConfig, Simulator
    from cosmobench.sim.run import COLUMNS, IMAGE_NAMES
    from cosmobench.store import create_or_resume

    cfg = SimConfig(n=10**11, seed=3, chunk_size=4, measure=False)
    w = create_or_resume(
        tmp_path / "huge.zarr",
        cfg.n,
        cfg.chunk_size,
        "simulation",
        cfg.to_dict(),
        COLUMNS,
        IMAGE_NAMES,
    )
    w.write_chunk(0, *Simulator(cfg).chunk(0, 4))
    tracemalloc.start()
    code, out, err = cli(["inspect", tmp_path / "huge.zarr"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 0, err
    assert "4 of 100,000,000,000 written" in out
    assert peak < 200 * 2**20, f"inspect took {peak / 2**20:.0f} MiB"


def test_missing_chunk_is_rewritten_by_a_rerun(world, tmp_path, cli):
    import shutil

    from cosmobench.store import open_dataset

    d = tmp_path / "m.zarr"
    shutil.copytree(world.broken["missing_chunk"], d)
    code, out, err = cli(
        [
            "simulate",
            "--n",
            "16",
            "--seed",
            "1",
            "--chunk-size",
            "8",
            "--no-measure",
            "--out",
            d,
            "--no-progress",
        ]
    )
    assert code == 0, err
    a, b = open_dataset(world.sim), open_dataset(d)
    assert np.array_equal(a.images("noisy"), b.images("noisy"))
    assert np.array_equal(a.column("e1"), b.column("e1"))


def test_evaluate_excluding_nan_says_so_first(world, tmp_path, cli):
    code, out, err = cli(
        [
            "evaluate",
            world.cnn,
            "--data",
            world.broken["nan_pixels"],
            "--out",
            tmp_path / "ev",
            "--no-figures",
            "--no-progress",
            "--exclude-nonfinite",
        ]
    )
    assert code == 0, err
    assert err.lstrip().startswith("warning: 1 of 16 galaxies with NaN/inf pixels")
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_excluded"] == 1


def test_raw_pickle_checkpoint_prints_only_the_error(world, cli, tmp_path):
    code, out, err = cli(
        [
            "evaluate",
            world.broken["pickle_run"],
            "--data",
            world.sim,
            "--out",
            tmp_path / "ev",
            "--no-progress",
        ]
    )
    line = _one_error_line(code, out, err)
    assert "not a torch checkpoint" in line and "weights_only" not in err
    assert not any(ch.isdigit() for ch in line.split("(", 1)[1])  # no opaque numbers
