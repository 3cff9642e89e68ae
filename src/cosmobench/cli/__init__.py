"""The ``cosmobench`` command line: one module per stage, all registered on one app."""

# Importing a stage module registers its commands on ``app``.
from cosmobench.cli import bench, demo, evaluate, generate, shear, simulate, train  # noqa: F401
from cosmobench.cli.app import app, main

__all__ = ["app", "main"]
