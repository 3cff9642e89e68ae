"""Validation of a store against its files: readable array metadata, and done marks that
match the chunk files on disk (see docs/architecture.md, section Store).

Zarr v3 (default chunk key encoding) keeps chunk ``k`` of array ``a`` in ``a/c/k/0/...``.
The done marks are read by listing ``done/c/`` (the cost follows the chunks written, not the
``n`` a store declares); a chunk marked done whose image file is gone is reported by
:func:`missing_chunks`, so that readers refuse it and writers write it again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.errors import CosmobenchError

__all__ = ["DONE", "open_array", "chunk_file", "done_chunks", "read_rows", "missing_chunks"]

#: the array of done marks, one bool per chunk
DONE = "done"


def open_array(group: Any, path: Path, name: str) -> Any:
    """Array ``name`` of the store; unreadable or foreign metadata is a one-line error naming
    the array and its file."""
    meta = path / name / "zarr.json"
    if not meta.is_file():
        raise CosmobenchError(
            f"{path} is a corrupt data set (array {name} missing: no {meta}); recreate it"
        )
    try:
        return group[name]
    except Exception as e:  # JSONDecodeError, zarr's UnknownCodecError, KeyError, ...
        if isinstance(e, json.JSONDecodeError):
            why = f"not valid JSON: {e.msg}"
        elif "codec" in type(e).__name__.lower() or "codec" in str(e).lower():
            why = f"unknown or unsupported codec ({str(e)[:80]})"
        else:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:100]
        raise CosmobenchError(
            f"{path} is corrupt: the metadata of array {name} ({meta}) cannot be read ({why}); "
            "recreate the data set with the command that made it"
        ) from None


def chunk_file(path: Path, name: str, coords: Sequence[int]) -> Path | None:
    """The file of chunk ``coords`` of array ``name`` under Zarr v3's default key encoding
    (``c/i/j/...``); ``None`` under another encoding."""
    try:
        meta = json.loads((path / name / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    enc = meta.get("chunk_key_encoding") or {}
    sep = (enc.get("configuration") or {}).get("separator", "/")
    if enc.get("name") != "default" or sep != "/":
        return None
    return path / name / "c" / Path(*[str(int(c)) for c in coords])


def done_chunks(path: Path, group: Any, n_chunks: int) -> np.ndarray:
    """Indices of the chunks marked done, sorted. Only the marks written are read (one file
    each): the cost follows what was written, not the size the store declares."""
    folder = path / DONE / "c"
    if chunk_file(path, DONE, (0,)) is None:  # another key encoding: read the whole array
        return np.flatnonzero(group[DONE][:]).astype(np.int64)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return np.zeros(0, np.int64)
    idx = np.array(sorted(int(f) for f in names if f.isdigit() and int(f) < n_chunks), np.int64)
    if idx.size == 0:
        return idx
    marks = np.asarray(read_rows(group[DONE], idx), dtype=bool)
    return idx[marks]


def read_rows(arr: Any, rows: np.ndarray) -> np.ndarray:
    """``arr[rows]`` for sorted unique ``rows``. Zarr's orthogonal indexing (one read per
    chunk touched) allocates per chunk of the whole array: a store declaring 1e11 rows would
    need hundreds of GiB to read four. Past 100,000 chunks, read one slice per contiguous run
    instead."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return arr[:0]
    if arr.nchunks <= 100_000:
        return arr.oindex[rows]
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], cuts])
    stops = np.concatenate([cuts, [rows.size]])
    return np.concatenate(
        [arr[rows[a] : rows[b - 1] + 1] for a, b in zip(starts, stops, strict=True)]
    )


def missing_chunks(path: Path, done: Sequence[int], image_names: Sequence[str]) -> list[int]:
    """Chunks marked done whose image file is missing. Images are never all fill value
    (NaN), so a chunk written has a file for each image array. (Columns may legitimately
    have no file: Zarr skips a chunk equal to the fill value, e.g. ``rot90`` all False.)"""
    missing: set[int] = set()
    for name in image_names:
        first = chunk_file(path, name, (0, 0, 0, 0))
        if first is None:
            continue
        base, rest = first.parent.parent.parent.parent, Path("0", "0", "0")
        missing.update(int(k) for k in done if not (base / str(int(k)) / rest).is_file())
    return sorted(missing)
