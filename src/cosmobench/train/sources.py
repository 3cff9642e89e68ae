"""Training data from a store: checked, filtered, split and scaled once, for every caller.

Training (:mod:`cosmobench.train.tasks`), the benchmark's ``--data`` and the science
scripts all need the same thing from a simulated store: the galaxies whose images and
labels are finite (or a refusal naming how many are not), the validation split fixed by
galaxy index (:func:`cosmobench.train.data.split_by_index`), and the input scaling of the
shape networks fitted on the *training* split only. :func:`load_shape_data` does it in
memory; :func:`stream_positions` does the checking and splitting for a streamed store
(:mod:`cosmobench.train.stream`) without loading its images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cosmobench.errors import CosmobenchError
from cosmobench.train.data import TensorSplit, nonfinite_rows, split_by_index

__all__ = [
    "ShapeData",
    "load_shape_data",
    "stream_positions",
    "open_store",
    "store_index",
    "finite_filter",
    "split_positions",
    "target_array",
    "apply_inplace",
    "SCALER_SAMPLE",
]

#: Training galaxies (whole chunks) the input scaling is fitted on when streaming.
SCALER_SAMPLE = 4096


def open_store(path: str) -> Any:
    """The validated store at ``path`` (:func:`cosmobench.store.open_dataset`)."""
    from cosmobench.store import open_dataset

    return open_dataset(path)


def store_index(ds: Any) -> np.ndarray:
    """The key the validation split hashes, int64 ``(N,)``: the galaxy index (row numbers
    when the store has none), except that the images of one galaxy share a key so that they
    fall on the same side of the split — a ring pair (rows 2k, 2k+1) shares ``index // 2``,
    a shear-test galaxy its four rows' ``group`` (Pujol et al. 2019, A&A 621, A2)."""
    if "group" in ds.columns:
        return np.asarray(ds.column("group"), dtype=np.int64)
    index = (
        np.asarray(ds.column("index"), dtype=np.int64)
        if "index" in ds.columns
        else np.arange(ds.n, dtype=np.int64)
    )
    return index // 2 if (getattr(ds, "config", None) or {}).get("ring") else index


def target_array(ds: Any, columns: Sequence[str]) -> Tensor:
    """Columns ``columns`` stacked as float32 targets ``(N, T)``."""
    return torch.from_numpy(
        np.stack([np.asarray(ds.column(c), dtype=np.float32) for c in columns], axis=1)
    )


def finite_filter(
    path: str, bad_rows: Mapping[str, np.ndarray], drop: bool, report: dict[str, Any]
) -> np.ndarray | None:
    """Combine per-array masks of rows holding NaN/inf (name → bool ``(N,)``).

    Returns a keep-mask ``(N,)`` (``None`` when all are finite); refuses the data set, with
    counts per array, unless ``drop`` (then ``report["dropped_nonfinite"]`` counts them).
    """
    counts, bad = {}, None
    for name, rows in bad_rows.items():
        rows = np.asarray(rows, bool)
        if rows.any():
            counts[name] = int(rows.sum())
            bad = rows if bad is None else bad | rows
    if bad is None:
        return None
    total, n_all = int(bad.sum()), len(bad)
    detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
    if not drop:
        raise CosmobenchError(
            f"data set {path}: {total} of {n_all} galaxies have NaN or infinite values "
            f"({detail}); refusing to train on them — pass --drop-nonfinite to leave them out"
        )
    report["dropped_nonfinite"] = {"galaxies": total, "of": n_all, **counts}
    return ~bad


def split_positions(
    path: str, index: np.ndarray, keep: np.ndarray | None, val_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted store rows of the training and validation galaxies (kept ones only)."""
    train_pos, val_pos = split_by_index(index, val_fraction)
    if keep is not None:
        train_pos, val_pos = train_pos[keep[train_pos]], val_pos[keep[val_pos]]
    if len(train_pos) < 2:
        raise CosmobenchError(
            f"data set {path} leaves {len(train_pos)} training galaxies "
            "after the validation split; simulate more"
        )
    return train_pos, val_pos


@torch.no_grad()
def apply_inplace(fn: nn.Module, x: Tensor, chunk: int = 1024) -> None:
    """``x[:] = fn(x)``, ``chunk`` rows at a time (bounds the temporary memory)."""
    for s in range(0, len(x), chunk):
        x[s : s + chunk] = fn(x[s : s + chunk])


def _label_masks(y: Tensor, columns: Sequence[str]) -> dict[str, np.ndarray]:
    return {c: nonfinite_rows(y[:, i : i + 1]).numpy() for i, c in enumerate(columns)}


@dataclasses.dataclass
class ShapeData:
    """The shape networks' data, in memory: scaled images → targets.

    Attributes:
        train, val: the splits (images ``(N, C, S, S)`` scaled by ``scaler``; targets).
        scaler: the input scaling applied (fitted on ``train`` unless given), or ``None``.
        report: what filtering found (``dropped_nonfinite``).
    """

    train: TensorSplit
    val: TensorSplit
    scaler: nn.Module | None
    report: dict[str, Any]


def load_shape_data(
    path: str,
    columns: Sequence[str],
    *,
    val_fraction: float = 0.1,
    drop_nonfinite: bool = False,
    scaling: str | nn.Module | None = "arcsinh",
    max_train: int | None = None,
    image_shape: tuple[int, int] | None = None,
) -> ShapeData:
    """Noisy images and target columns of a store, filtered, split by index and scaled.

    Arguments:
        path: the store.
        columns: target columns (e.g. ``("e1", "e2", "redshift")``).
        val_fraction: share held out by galaxy index (the trainer's split).
        drop_nonfinite: leave out galaxies with NaN/inf pixels or labels (counted in
            ``report``) instead of refusing the store.
        scaling: ``"arcsinh"`` (fit :class:`~cosmobench.train.scaling.ArcsinhScaler` on the
            training split), ``"none"``/``None``, or a fitted scaler to apply.
        max_train: keep only the first ``max_train`` training galaxies (and read only
            those); the validation split is then empty.
        image_shape: (bands, pixels) the caller's model takes, checked.

    Example:
        >>> d = load_shape_data("train.zarr", ("e1", "e2", "redshift"))  # doctest: +SKIP
        >>> d.train.x.shape, d.scaler  # doctest: +SKIP
    """
    from cosmobench.train.scaling import ArcsinhScaler

    path = str(path)
    ds = open_store(path)
    from cosmobench.store import require

    bands, size = (None, None) if image_shape is None else image_shape
    require(ds, images=("noisy",), bands=bands, stamp_size=size)  # images first, then targets
    require(ds, columns={c: "a target" for c in columns})
    report: dict[str, Any] = {}
    index = store_index(ds)
    y = target_array(ds, columns)  # (N, T)
    if max_train is not None:
        rows = split_by_index(index, val_fraction)[0]
        keep_y = (
            ~nonfinite_rows(y[torch.from_numpy(rows)]).numpy()
            if drop_nonfinite
            else np.ones(len(rows), bool)
        )
        rows = rows[keep_y][:max_train]
        x = ds.tensor("noisy", index=rows)
        keep = finite_filter(
            path,
            {
                "noisy": nonfinite_rows(x).numpy(),
                **_label_masks(y[torch.from_numpy(rows)], columns),
            },
            drop_nonfinite,
            report,
        )
        sel = np.arange(len(rows)) if keep is None else np.flatnonzero(keep)
        x_train, y_train, idx_train = (
            x[torch.from_numpy(sel)],
            y[torch.from_numpy(rows[sel])],
            index[rows[sel]],
        )
        x_val, y_val, idx_val = x_train[:0], y_train[:0], idx_train[:0]
    else:
        x = ds.tensor("noisy")  # (N, 6, 64, 64) counts
        keep = finite_filter(
            path,
            {"noisy": nonfinite_rows(x).numpy(), **_label_masks(y, columns)},
            drop_nonfinite,
            report,
        )
        train_pos, val_pos = split_positions(path, index, keep, val_fraction)
        x_train = x.index_select(0, torch.from_numpy(train_pos))
        x_val = x.index_select(0, torch.from_numpy(val_pos))
        del x
        y_train, y_val = y[torch.from_numpy(train_pos)], y[torch.from_numpy(val_pos)]
        idx_train, idx_val = index[train_pos], index[val_pos]
    if len(x_train) == 0:
        raise CosmobenchError(f"data store {path} has no finite images and targets")
    if isinstance(scaling, str) and scaling == "arcsinh":
        scaler: nn.Module | None = ArcsinhScaler.fit(x_train)
    elif scaling is None or isinstance(scaling, str):
        scaler = None
    else:
        scaler = scaling
    if scaler is not None:
        apply_inplace(scaler, x_train)
        apply_inplace(scaler, x_val)
    return ShapeData(
        TensorSplit(x_train, y_train, idx_train), TensorSplit(x_val, y_val, idx_val), scaler, report
    )


def stream_positions(
    path: str,
    ds: Any,
    image_names: Sequence[str],
    y: Tensor | None,
    columns: Sequence[str],
    *,
    val_fraction: float,
    drop_nonfinite: bool,
    workers: int,
    report: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train_pos, val_pos, index)`` of a store that is streamed: the non-finite check
    reads the images once, chunk by chunk, in ``workers`` background processes."""
    from cosmobench.train.stream import scan_nonfinite

    n_chunks = -(-ds.n // ds.chunk_size)
    bad = scan_nonfinite(path, image_names, n_chunks, workers)
    if y is not None:
        bad.update(_label_masks(y, columns))
    keep = finite_filter(path, bad, drop_nonfinite, report)
    index = store_index(ds)
    train_pos, val_pos = split_positions(path, index, keep, val_fraction)
    return train_pos, val_pos, index
