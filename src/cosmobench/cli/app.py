"""The typer application and the one place errors become one-line messages.

Each ``cli/<stage>.py`` module registers its commands on :data:`app`; they parse options
into typed configs and call the library, nothing else. :func:`main` runs the app with click's
standalone mode off so that a :class:`~cosmobench.errors.CosmobenchError`, a usage error or
an interrupt becomes one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from cosmobench.errors import CosmobenchError

__all__ = ["app", "console", "err_console", "main"]

app = typer.Typer(
    name="cosmobench",
    help="Simulate LSST-like galaxies, train the Arcelin (2021) networks, generate galaxies, "
    "and benchmark it all on any hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

try:  # typer >= 0.25 vendors click; older releases use click itself
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as _click_exc


@app.callback()
def _root() -> None:
    """Simulate, train, generate and benchmark the Arcelin (2021) workloads."""


EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cosmobench`` console script."""
    try:
        app(args=argv, prog_name="cosmobench", standalone_mode=False)
    except CosmobenchError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except _click_exc.ClickException as e:
        msg = e.format_message().replace("\n", " ").strip()
        if not msg:  # `cosmobench` with no command: help was already printed
            sys.exit(EXIT_USER_ERROR)
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        err_console.print(f"[bold red]error:[/] {msg}{hint}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[bold red]interrupted[/]; rerun the same command to resume")
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # `cosmobench ... | head`
        sys.exit(0)
    except OSError as e:  # a write the output checks could not foresee (disk filled up, ...)
        from cosmobench.outputs import WRITE_ERRNOS, write_error

        if e.errno in WRITE_ERRNOS:
            msg = str(write_error(e.filename, e))
        else:
            msg = f"{e.filename or 'a file'}: {e.strerror or e}; check the path"
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except RuntimeError as e:
        from cosmobench.outputs import is_torch_write_failure, write_error

        if not is_torch_write_failure(e):
            raise
        err_console.print(f"[bold red]error:[/] {write_error(None, e)}", highlight=False,
                          soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except MemoryError:
        err_console.print("[bold red]error:[/] out of memory; use a smaller --n or --batch-size")
        sys.exit(EXIT_USER_ERROR)
