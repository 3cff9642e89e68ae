"""CLI commands: demo (being written)."""

from cosmobench.cli.app import app


@app.command()
def version() -> None:
    """Print the cosmobench version."""
    from cosmobench import __version__

    print(__version__)
