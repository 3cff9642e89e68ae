"""Command-line options made from config dataclasses: one place for each default.

A command lists the config classes whose fields are its options; each field becomes
``--field-name`` with its help from the class's docstring (``Arguments:`` or
``Attributes:``, via :func:`cosmobench.config.field_docs`) and its default from the
dataclass. Options not given stay out of the config dict, so the dataclass default (or a
resumed run's stored value) applies. Adding a field with a docstring line adds the option.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from cosmobench.config import field_docs

__all__ = ["option", "config_options", "given", "command_with"]


def _help(doc: str, default: Any) -> str:
    """The first sentence of a field's description, without reST markup, and its default."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc).replace("``", "")
    first = re.split(r"(?<=[.)])\s+(?=[A-Z])", text, maxsplit=1)[0].rstrip(".")
    first = first[:1].upper() + first[1:]
    unset = default is None or default is False or default == "" or default is dataclasses.MISSING
    return first + ("." if unset else f" (default: {default}).")


def option(
    name: str,
    hint: Any,
    help_text: str,
    *,
    flag: str | None = None,
    required: bool = False,
    default: Any = None,
) -> inspect.Parameter:
    """A keyword parameter typer turns into ``--name`` (a bare flag for booleans; unset
    options are ``None``)."""
    decls = [flag or "--" + name.replace("_", "-")]
    if required:
        annotation, value = Annotated[hint, typer.Option(*decls, help=help_text)], inspect._empty
    elif hint is bool and default is not True:
        annotation, value = Annotated[bool, typer.Option(*decls, help=help_text)], False
    elif hint is bool:
        on = decls[0]
        annotation = Annotated[bool, typer.Option(f"{on}/--no-{on[2:]}", help=help_text)]
        value = True
    else:
        annotation, value = Annotated[hint | None, typer.Option(*decls, help=help_text)], None
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=annotation
    )


def config_options(
    cls: type,
    *,
    skip: Iterable[str] = (),
    flags: Mapping[str, str] = {},
    required: Iterable[str] = (),
    paths: Iterable[str] = (),
) -> list[inspect.Parameter]:
    """One option per field of config class ``cls`` (but ``skip``), help and default from the
    class; ``flags`` renames options, ``paths`` are parsed as paths."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    skip, required, paths = set(skip), set(required), set(paths)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = Path if f.name in paths else hints[f.name]
        out.append(
            option(
                f.name,
                hint,
                _help(docs.get(f.name, ""), f.default),
                flag=flags.get(f.name),
                required=f.name in required,
            )
        )
    return out


def given(values: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (unset ones and off flags left out),
    paths as strings."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {
        k: str(v) if isinstance(v, Path) else v
        for k, v in values.items()
        if k in names and v is not None and v is not False
    }


def command_with(
    params: list[inspect.Parameter], body: Callable[[dict[str, Any]], None], name: str, doc: str
) -> Callable[..., None]:
    """A function typer can register, taking ``params`` and passing them to ``body`` as one
    dict (required options first, as Python signatures want)."""
    params = sorted(params, key=lambda p: p.default is not inspect._empty)

    def command(**values: Any) -> None:
        body(values)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = doc
    command.__name__ = name
    return command
