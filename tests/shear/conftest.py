"""A small shear-test store (8 galaxies, 32 images), made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shear_store(tiny_dataset_factory) -> Path:
    return tiny_dataset_factory(
        8, 77, shear_test=0.02, chunk_size=16, constants="arcelin2021", measure=False
    )
