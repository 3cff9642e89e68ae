"""Shared fixtures. ``--device cuda`` runs the device-aware tests on a GPU (STYLE.md §10)."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


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
