"""User-facing errors: one line saying what is wrong and what is allowed.

The CLI catches :class:`CosmobenchError` and prints its message without a traceback,
exiting non-zero. Library code raises it for anything a user can fix (bad option, missing or
corrupt file, NaNs in data); programming errors stay ordinary exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CosmobenchError", "check_choice", "check_positive"]


class CosmobenchError(Exception):
    """An error caused by input the user can correct; its message is one line."""


def check_choice(name: str, value: object, allowed: Iterable[object]) -> None:
    """Raise a :class:`CosmobenchError` listing ``allowed`` if ``value`` is not among them.

    Example:
        >>> check_choice("psf", "gauss", ["kolmogorov", "moffat"])
        Traceback (most recent call last):
        ...
        cosmobench.errors.CosmobenchError: psf must be one of kolmogorov, moffat; got 'gauss'
    """
    allowed = list(allowed)
    if value not in allowed:
        choices = ", ".join(str(a) for a in allowed)
        raise CosmobenchError(f"{name} must be one of {choices}; got {value!r}")


def check_positive(name: str, value: float, *, strict: bool = True) -> None:
    """Raise a :class:`CosmobenchError` unless ``value`` > 0 (or >= 0 when not ``strict``)."""
    ok = value > 0 if strict else value >= 0
    if not ok:
        bound = "> 0" if strict else ">= 0"
        raise CosmobenchError(f"{name} must be {bound}; got {value!r}")
