"""Typed configuration dataclasses: the one source of truth for every stage.

Each stage owns a frozen dataclass deriving from :class:`Config` (``SimConfig``,
``TrainConfig``, ``BenchConfig`` ...). The CLI fills them from options; every data set,
checkpoint and results file stores ``cfg.to_dict()``, and ``from_dict`` rebuilds the config,
refusing unknown keys so that a file written by another version fails loudly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Self

from cosmobench.errors import CosmobenchError

__all__ = ["Config"]


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: JSON-friendly round trip and validated replacement."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists, nested configs dicts)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise CosmobenchError(
                f"{cls.__name__} has no field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(fields)}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce(hints.get(k), v) for k, v in data.items()}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (validation in ``__post_init__`` runs again)."""
        return dataclasses.replace(self, **changes)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    return x


def _coerce(hint: Any, value: Any) -> Any:
    """Turn JSON lists back into tuples and dicts back into nested configs."""
    if hint is None:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value) if len(args) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
        return hint.from_dict(value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if args else None
        return tuple(_coerce(inner, v) for v in value)
    return value


def field_docs(cls: type) -> dict[str, str]:
    """Each field's description from the ``Arguments:`` or ``Attributes:`` section of a
    config class's docstring, joined into one line.

    Example:
        >>> from cosmobench.train.config import FlowOptions
        >>> field_docs(FlowOptions)["vae_run"]
        'the run folder of the VAE whose latent space the flow models.'
    """
    import inspect

    docs: dict[str, str] = {}
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    names = {f.name for f in dataclasses.fields(cls)}
    current = None
    inside = False
    for line in lines:
        if line.strip() in ("Arguments:", "Attributes:"):
            inside = True
            continue
        if not inside:
            continue
        if line and not line.startswith(" "):
            break
        head, _, rest = line.strip().partition(": ")
        if line.startswith("    ") and not line.startswith("     ") and head in names:
            current = head
            docs[current] = rest.strip()
        elif current is not None and line.strip():
            docs[current] += " " + line.strip()
    return docs
