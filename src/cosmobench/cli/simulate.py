"""CLI commands: simulate (being written)."""

from cosmobench.cli.app import app  # noqa: F401
