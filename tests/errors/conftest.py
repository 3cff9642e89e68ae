"""Fixtures of the bad-input corpus: small stores, runs and results made once per session,
and broken copies of them (corrupt metadata, missing chunks, NaN pixels, raw pickles).

Read-only and full file systems are real small tmpfs mounts when the tests run as root and
``mount`` works (a read-only mount is what root cannot write: chmod is no obstacle to it);
elsewhere those cases are skipped and the injected-``OSError`` tests still run.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from cosmobench.cli import main

FAST = ["--epochs", "1", "--batch-size", "4", "--no-progress"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process through ``main`` (as the console script does)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _mount(target: Path, size: str, ro: bool) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    target.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)], capture_output=True
    )
    return r.returncode == 0


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@dataclass
class World:
    """Paths to everything the corpus needs."""

    root: Path
    sim: Path = None  # type: ignore[assignment]
    sim_b: Path = None  # type: ignore[assignment]
    gen: Path = None  # type: ignore[assignment]
    cnn: Path = None  # type: ignore[assignment]
    bnn: Path = None  # type: ignore[assignment]
    vae: Path = None  # type: ignore[assignment]
    flow: Path = None  # type: ignore[assignment]
    results: Path = None  # type: ignore[assignment]
    ro: Path | None = None
    full: Path | None = None
    broken: dict[str, Path] = field(default_factory=dict)


def _edit_json(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def _broken(w: World) -> dict[str, Path]:
    """Broken copies of the simulation store and of the runs, and odd files."""
    b = w.root / "broken"
    b.mkdir()
    out: dict[str, Path] = {}

    def copy(name: str) -> Path:
        p = b / f"{name}.zarr"
        shutil.copytree(w.sim, p)
        out[name] = p
        return p

    (copy("garbage_array") / "e1" / "zarr.json").write_text("garbage{")
    (copy("garbage_root") / "zarr.json").write_text("{not json")
    _edit_json(
        copy("codec") / "noisy" / "zarr.json",
        lambda d: d["codecs"].__setitem__(1, {"name": "numcodecs.pickle", "configuration": {}}),
    )
    (copy("missing_chunk") / "noisy" / "c" / "1" / "0" / "0" / "0").unlink()
    (copy("missing_done") / "done" / "c" / "1").unlink()  # an interrupted run
    shutil.rmtree(copy("missing_array") / "e1")
    _edit_json(
        copy("newer") / "zarr.json", lambda d: d["attributes"].__setitem__("schema_version", 99)
    )
    _edit_json(
        copy("foreign") / "zarr.json",
        lambda d: d["attributes"].__setitem__("schema", "someone.else"),
    )
    _edit_json(
        copy("bad_kind") / "zarr.json", lambda d: d["attributes"].__setitem__("kind", "photos")
    )
    nan = copy("nan_pixels")
    import zarr

    arr = zarr.open_array(str(nan / "noisy"), mode="r+")
    x = arr[0:1]
    x[0, 2, 10, 10] = np.nan
    arr[0:1] = x
    arr = zarr.open_array(str(copy("nan_label") / "e1"), mode="r+")
    arr[3] = np.nan

    plain = b / "plain.zarr"
    zarr.open_group(str(plain), mode="w", zarr_format=3).attrs["x"] = 1
    out["plain_zarr"] = plain
    out["text"] = b / "notes.txt"
    out["text"].write_text("hello\n")
    out["json_list"] = b / "list.json"
    out["json_list"].write_text("[1, 2]")
    out["not_json"] = b / "bad.json"
    out["not_json"].write_text("{oops")
    out["nonempty"] = b / "stuff"
    out["nonempty"].mkdir()
    (out["nonempty"] / "thesis.tex").write_text("x")
    out["empty_dir"] = b / "empty"
    out["empty_dir"].mkdir()
    out["png_dir"] = b / "folder.png"
    out["png_dir"].mkdir()

    # model files
    def run_copy(name: str, src: Path) -> Path:
        p = b / name
        shutil.copytree(src, p)
        out[name] = p
        return p

    pkl = run_copy("pickle_run", w.cnn) / "model.pt"
    with open(pkl, "wb") as f:  # a raw pickle of a Python object: must never be loaded
        pickle.dump({"format": "x", "obj": Path("/")}, f)
    objs = run_copy("objects_run", w.cnn) / "model.pt"
    torch.save({"format": "x", "obj": Path("/")}, objs)  # a zip holding a Python object
    trunc = run_copy("truncated_run", w.cnn) / "model.pt"
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    (run_copy("garbage_run", w.cnn) / "model.pt").write_bytes(b"\x00" * 1000)
    torch.save({"hello": torch.zeros(2)}, run_copy("foreign_run", w.cnn) / "model.pt")
    ck = run_copy("unfinished_run", w.cnn)
    (ck / "model.pt").rename(ck / "checkpoint.pt")
    out["no_run"] = b / "no_run"

    # results files
    res = json.loads(w.results.read_text())
    for name, fn in {
        "records_string": lambda d: d.__setitem__("records", "oops"),
        "records_ints": lambda d: d.__setitem__("records", [1, 2]),
        "foreign_schema": lambda d: d.__setitem__("schema", "other"),
        "newer_results": lambda d: d.__setitem__("schema_version", 999),
        "no_env": lambda d: d.pop("env"),
        "unfinished": lambda d: d.__setitem__("complete", False),
    }.items():
        d = json.loads(json.dumps(res))
        fn(d)
        out[name] = b / f"{name}.json"
        out[name].write_text(json.dumps(d))
    out["ref_wrong"] = b / "ref_wrong.json"
    out["ref_wrong"].write_text(json.dumps({"source": "me", "hello": 1}))
    out["ref_bad_lengths"] = b / "ref_bad.json"
    out["ref_bad_lengths"].write_text(
        json.dumps({"generate": {"n": [1, 2], "gpu_s": [1.0], "ipu_s": [1.0, 2.0]}})
    )
    return out


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Everything made once: two simulation stores, a generation store, four runs, a results
    file, broken copies, and (as root) a read-only and a 3 MiB tmpfs."""
    import importlib.util

    # tests/generate/conftest.py makes small random VAE + flow run folders
    spec = importlib.util.spec_from_file_location(
        "_generate_fixtures", Path(__file__).parents[1] / "generate" / "conftest.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    write_runs = mod.write_runs
    from cosmobench.bench import BenchConfig, run_bench
    from cosmobench.generate import GenerateConfig, generate
    from cosmobench.sim import SimConfig, simulate

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world")
    w = World(root=root)
    w.sim = simulate(
        SimConfig(n=16, seed=1, chunk_size=8, measure=False), root / "sim.zarr", progress=False
    )
    w.sim_b = simulate(
        SimConfig(n=24, seed=2, chunk_size=8, measure=False), root / "sim_b.zarr", progress=False
    )
    w.vae, w.flow = write_runs(root / "gruns")
    w.gen = generate(
        GenerateConfig(
            vae_run=str(w.vae), flow_run=str(w.flow), n=16, seed=0, chunk_size=8, noise=True
        ),
        root / "gen.zarr",
        progress=False,
    )
    for kind in ("cnn", "bnn"):
        main(["train", kind, "--data", str(w.sim), "--out", str(root / kind), *FAST])
    w.cnn, w.bnn = root / "cnn", root / "bnn"
    w.results = root / "results.json"
    cfg = BenchConfig(
        workloads=("simulate",),
        device="cpu",
        sim_galaxies=1,
        repeats=1,
        min_block_s=0.001,
        warmup_max_s=0.1,
    )
    run_bench(cfg, w.results, progress=False)
    w.broken = _broken(w)
    mounts = []
    if _mount(root / "ro", "1m", ro=True):
        w.ro = root / "ro"
        mounts.append(w.ro)
    if _mount(root / "full", "3m", ro=False):
        w.full = root / "full"
        mounts.append(w.full)
    yield w
    for m in mounts:
        _umount(m)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """``cli(args) -> (exit code, stdout, stderr)`` through ``cosmobench.cli.main``."""
    return lambda args: run_cli(args, capsys)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A fresh folder per case (its ``{tmp}``)."""
    return tmp_path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
