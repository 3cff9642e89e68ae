"""The ``cosmobench`` command line: one module per stage, all registered on one app."""

from cosmobench.cli.app import app, main

# Importing a stage module registers its commands on ``app``.
from cosmobench.cli import simulate, train, evaluate, generate, bench, demo  # noqa: E402, F401, I001

__all__ = ["app", "main"]
