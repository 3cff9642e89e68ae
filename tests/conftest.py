"""Shared fixtures. ``--device cuda`` runs the device-aware tests on a GPU (STYLE.md §10)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parents[1]  # the repository


def _load_script(path: str | Path, name: str | None = None):
    """A script of the repository (``benchmarks/...``: not a package) imported as a module;
    ``path`` is absolute or relative to the repository root."""
    import importlib.util

    path = ROOT / path
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def load_script():
    """``load_script(path, name=None)``: a repository script imported as a module."""
    return _load_script


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default="cpu",
        help="torch device for device-aware tests (cpu, cuda, cuda:N); default cpu",
    )


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> str:
    """The torch device named by ``--device``; CUDA tests skip cleanly without CUDA."""
    import torch

    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda given but CUDA is not available")
    return name


@pytest.fixture(scope="session")
def cosmos_dir() -> Path:
    """GalSim's 23.5 example COSMOS catalog, carried as a fixture."""
    return FIXTURES / "cosmos"


# --- Simulated data sets (simulator engineer) -------------------------------------------------
# `tiny_dataset`: a path to a complete store of 128 builtin galaxies (seed 1234, two chunks of
# 64), made once per test session. `tiny_dataset_factory(n, seed, **overrides)`: the same for
# other settings (any SimConfig field), cached per session by its arguments.


@pytest.fixture(scope="session")
def tiny_dataset_factory(tmp_path_factory: pytest.TempPathFactory):
    """Make (once per session and per arguments) a small simulated store; returns its path."""
    from cosmobench.sim import SimConfig, simulate

    made: dict[str, Path] = {}

    def make(n: int = 128, seed: int = 1234, **overrides) -> Path:
        cfg = SimConfig(n=n, seed=seed, **{"chunk_size": 64, **overrides})
        key = repr(sorted(cfg.to_dict().items()))
        if key not in made:
            out = tmp_path_factory.mktemp("sim") / "tiny.zarr"
            made[key] = simulate(cfg, out, workers=1, progress=False)
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_dataset(tiny_dataset_factory) -> Path:
    """A complete store of 128 builtin galaxies, seed 1234 (``cosmobench.store.open_dataset``)."""
    return tiny_dataset_factory(128, 1234)


@pytest.fixture
def cli(capsys):
    """Run ``cosmobench ARGS...`` in-process; returns ``(exit_code, stdout, stderr)``."""
    from cosmobench.cli import main

    def run(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _one_line_error(code: int, err: str) -> str:
    assert code != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    return lines[0]


@pytest.fixture(scope="session")
def one_line_error():
    """``one_line_error(code, stderr)``: assert a failed exit with one ``error:`` line, no
    traceback; returns the line."""
    return _one_line_error
