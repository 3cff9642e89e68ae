"""Safe file I/O: atomic writes and checkpoints that load as data, never code.

A file is written to a temporary sibling and renamed into place (``os.replace`` is atomic on
POSIX), so a killed job never leaves a half-written file under the final name. Checkpoints
are loaded with ``torch.load(weights_only=True)``; a truncated or foreign file becomes a
one-line :class:`~cosmobench.errors.CosmobenchError`.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from cosmobench.errors import CosmobenchError

__all__ = ["atomic_write", "write_json", "read_json", "save_checkpoint", "load_checkpoint"]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temporary file, fsync it, and rename it to ``path``.

    A failed write (full disk, read-only file system, no permission; torch's zip writer
    reports a full disk as a ``RuntimeError``) leaves nothing behind and raises a one-line
    :class:`~cosmobench.errors.CosmobenchError` (:func:`cosmobench.outputs.write_error`).
    """
    from cosmobench.outputs import is_torch_write_failure, write_error

    path = Path(path)
    tmp: str | None = None
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) or is_torch_write_failure(e):
            raise write_error(path, e) from None
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    data = (json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n").encode()
    return atomic_write(path, lambda f: f.write(data))


def read_json(path: str | Path, what: str = "file") -> Any:
    """Read JSON, turning a missing or corrupt file into a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise CosmobenchError(f"{what} {path} is a folder, not a file; give the file's path")
    if not path.is_file():
        raise CosmobenchError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
        raise CosmobenchError(f"{what} {path} is not valid JSON ({reason})") from None


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` a dict of tensors and plain Python data."""
    import torch

    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; corrupt or foreign files raise one line."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CosmobenchError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickles before it refuses them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise CosmobenchError(
            f"checkpoint {path} is truncated, corrupt or not a cosmobench checkpoint "
            f"({_checkpoint_reason(e)}); retrain it or give the right file"
        ) from None
    if not isinstance(state, dict):
        raise CosmobenchError(f"checkpoint {path} does not hold a cosmobench state dict")
    return state


def _checkpoint_reason(e: BaseException) -> str:
    """Why torch could not load a file, in words (no opcodes, offsets or C++ locations)."""
    text = str(e)
    if "Unsupported global" in text or "GLOBAL" in text:
        return "it holds Python objects, not only tensors and plain data; it is not loaded"
    if "central directory" in text or "zip archive" in text or isinstance(e, EOFError):
        return "not a complete torch zip file"
    if any(
        s in text
        for s in ("legacy .tar", "Unsupported operand", "invalid load key", "magic number")
    ) or isinstance(e, KeyError):
        return "not a torch checkpoint: a raw pickle or another format; it is not loaded"
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return "".join(c for c in first if not c.isdigit()).strip()[:100] or type(e).__name__
