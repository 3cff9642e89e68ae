"""What a ``train`` command asks for, resolved against the run it may resume.

A new run takes the options given and the configs' defaults for the rest. With ``resume``,
the run's stored settings (its ``config.json``) fill every option not given; only
:data:`~cosmobench.train.config.RESUMABLE_CHANGES` may differ from them, anything else is
a one-line error naming what differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cosmobench.errors import CosmobenchError
from cosmobench.train.config import RESUMABLE_CHANGES, split_legacy

__all__ = ["resolve_settings"]


def _same(key: str, old: Any, new: Any) -> bool:
    if key in ("data", "vae_run", "init_from") and old and new:  # paths: the same file
        return Path(old).resolve() == Path(new).resolve()
    return old == new


def resolve_settings(
    kind: str,
    out: str | Path,
    resume: bool,
    train: dict[str, Any],
    model: dict[str, Any],
    options: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``(train_config, model_config, task_options)`` dicts a run is started or resumed
    with, from the options given on the command line (only those given).

    Example:
        >>> resolve_settings("cnn", "no/such/run", False, {"epochs": 3}, {}, {})
        ({'epochs': 3}, {}, {})
    """
    stored = Path(out) / "config.json"
    if not (resume and stored.is_file()):
        return train, model, options
    from cosmobench.files import read_json

    rec = read_json(stored, "run config")
    if not isinstance(rec, dict) or rec.get("kind") != kind:
        return train, model, options  # the loop names what the folder holds
    old_train, old_options = split_legacy(kind, rec)
    old_model = rec.get("model_config") or {}
    clash = [
        k
        for k, v in train.items()
        if k not in RESUMABLE_CHANGES and k in old_train and not _same(k, old_train[k], v)
    ]
    clash += [k for k, v in options.items() if not _same(k, old_options.get(k), v)]
    clash += [k for k, v in model.items() if old_model.get(k) != v]
    if clash:
        raise CosmobenchError(
            f"cannot resume {out} with other settings ({', '.join(clash)}); only "
            f"{', '.join(RESUMABLE_CHANGES)} may change"
        )
    resumed = {**old_train, **{k: v for k, v in train.items() if k in RESUMABLE_CHANGES}}
    return resumed, old_model, old_options
