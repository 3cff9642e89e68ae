"""The data set store: a chunked Zarr v3 group with a versioned schema, written chunk by chunk.

Layout of ``DATA.zarr/`` (see ``docs/architecture.md``, section Store):

- image arrays (``noiseless``, ``noisy``): (N, bands, S, S) float32, electrons per pixel,
  chunked along N only;
- one array per column, first axis N, same chunking;
- ``done``: one bool per chunk, set once the chunk is written (its own file, written
  atomically by Zarr's ``LocalStore``), so a killed job resumes where it stopped;
- attributes: ``schema``, ``schema_version``, ``kind``, ``bands``, ``pixel_scale``,
  ``stamp_size``, ``n``, ``chunk_size``, ``images``, ``columns`` (name → dtype, shape),
  ``config`` (the resolved config), ``versions`` and whatever the writer's caller adds.

A new store is built in a hidden sibling folder and renamed into place, so a path holding a
store always holds a whole schema. Workers (processes, Dask tasks, DDP ranks) each write
their own chunks; no locks are needed. :func:`open_dataset` validates what it opens and
refuses an incomplete store unless asked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.errors import CosmobenchError, check_choice
from cosmobench.memory import available_bytes
from cosmobench.store_check import DONE, done_chunks, missing_chunks, open_array, read_rows

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "KINDS",
    "require",
    "ColumnSpec",
    "StoreWriter",
    "Dataset",
    "create_or_resume",
    "open_writer",
    "open_dataset",
    "software_versions",
]

SCHEMA = "cosmobench.dataset"
SCHEMA_VERSION = 1
KINDS: tuple[str, ...] = ("simulation", "generation")
DEFAULT_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """A column: numpy dtype name and the shape of one row (``()`` for a scalar)."""

    dtype: str
    shape: tuple[int, ...] = ()

    @classmethod
    def of(cls, spec: ColumnSpec | str | Sequence[Any] | Mapping[str, Any]) -> ColumnSpec:
        """Accept ``ColumnSpec``, ``"float32"``, ``("float32", (6,))`` or ``{"dtype", "shape"}``."""
        if isinstance(spec, ColumnSpec):
            return spec
        if isinstance(spec, str):
            return cls(np.dtype(spec).name)
        if isinstance(spec, Mapping):
            return cls(np.dtype(spec["dtype"]).name, tuple(int(s) for s in spec.get("shape", ())))
        dtype, shape = spec
        return cls(np.dtype(dtype).name, tuple(int(s) for s in shape))


def software_versions() -> dict[str, str]:
    """Versions recorded in every store (read from package metadata: no heavy imports)."""
    out = {}
    for pkg in ("cosmobench", "galsim", "numpy", "zarr", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def _fill(dtype: str) -> Any:
    kind = np.dtype(dtype).kind
    return np.nan if kind in "fc" else (False if kind == "b" else 0)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


class StoreWriter:
    """Writes the chunks of one store: from :func:`create_or_resume` or :func:`open_writer`."""

    def __init__(self, path: Path, group: Any) -> None:
        self.path = path
        self._group = group
        attrs = dict(group.attrs)
        self.n: int = attrs["n"]
        self.chunk_size: int = attrs["chunk_size"]
        self.n_chunks = -(-self.n // self.chunk_size)
        self.image_names: tuple[str, ...] = tuple(attrs["images"])
        self.columns = {k: ColumnSpec.of(v) for k, v in attrs["columns"].items()}
        self.image_shape = (len(attrs["bands"]), attrs["stamp_size"], attrs["stamp_size"])
        # array handles opened once (each group lookup re-reads zarr.json)
        self._arrays = {
            k: open_array(group, path, k) for k in (*self.image_names, *self.columns, DONE)
        }

    def chunk_range(self, k: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of chunk ``k``."""
        if not 0 <= k < self.n_chunks:
            raise IndexError(f"chunk {k} out of range 0..{self.n_chunks - 1}")
        return k * self.chunk_size, min(self.n, (k + 1) * self.chunk_size)

    def pending_chunks(self) -> list[int]:
        """Chunks not yet marked done, in order. A chunk marked done whose image files are
        missing (deleted, or lost with a disk) is unmarked here, so it is written again."""
        done = set(done_chunks(self.path, self._group, self.n_chunks).tolist())
        for k in missing_chunks(self.path, sorted(done), self.image_names):
            self._arrays[DONE][k] = False
            done.discard(k)
        return [k for k in range(self.n_chunks) if k not in done]

    def write_chunk(
        self, k: int, images: Mapping[str, np.ndarray], columns: Mapping[str, np.ndarray]
    ) -> None:
        """Write every image array and column of chunk ``k``, then mark it done.

        Arguments:
            k: chunk index.
            images: name → (m, bands, S, S) array for every image name of the store.
            columns: name → (m, *shape) array for every column of the store.
        """
        start, stop = self.chunk_range(k)
        m = stop - start
        missing = sorted((set(self.image_names) - set(images)) | (set(self.columns) - set(columns)))
        extra = sorted((set(images) - set(self.image_names)) | (set(columns) - set(self.columns)))
        if missing or extra:
            raise ValueError(f"chunk {k}: missing {missing}, unexpected {extra}")
        for name in self.image_names:
            arr = np.asarray(images[name], dtype=np.float32)
            if arr.shape != (m, *self.image_shape):
                raise ValueError(f"{name}: shape {arr.shape}, expected {(m, *self.image_shape)}")
            self._arrays[name][start:stop] = arr
        for name, spec in self.columns.items():
            arr = np.asarray(columns[name], dtype=spec.dtype)
            if arr.shape != (m, *spec.shape):
                raise ValueError(f"{name}: shape {arr.shape}, expected {(m, *spec.shape)}")
            self._arrays[name][start:stop] = arr
        self._arrays[DONE][k] = True  # after the data: a chunk marked done is whole

    def finalize(self) -> Path:
        """Check that every chunk is done and return the store's path."""
        pending = self.pending_chunks()
        if pending:
            raise CosmobenchError(
                f"{self.path} is incomplete: {len(pending)} of {self.n_chunks} chunks missing; "
                "rerun the same command to finish it"
            )
        return self.path


def create_or_resume(
    path: str | Path,
    n: int,
    chunk_size: int,
    kind: str,
    config: Mapping[str, Any],
    columns_spec: Mapping[str, Any],
    image_names: Sequence[str] = ("noiseless", "noisy"),
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    pixel_scale: float = 0.2,
    stamp_size: int = 64,
    extra_attrs: Mapping[str, Any] | None = None,
) -> StoreWriter:
    """Create a new store at ``path``, or reopen one written with the same settings.

    Arguments:
        path: the store folder (conventionally ``*.zarr``).
        n: number of rows (galaxies).
        chunk_size: rows per chunk.
        kind: ``"simulation"`` or ``"generation"``.
        config: the resolved config dict; a resume requires an equal one.
        columns_spec: column name → :class:`ColumnSpec` (or ``("float32", (6,))``).
        image_names: the image arrays, each (n, len(bands), stamp_size, stamp_size).
        bands, pixel_scale, stamp_size: image geometry (arcsec per pixel, pixels).
        extra_attrs: more JSON attributes (e.g. the run folders of a generation).

    Raises:
        CosmobenchError: the path exists with other settings, is not a cosmobench store,
            or cannot be written.
    """
    check_choice("kind", kind, KINDS)
    path = Path(path)
    attrs = _jsonable(
        {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "bands": list(bands),
            "pixel_scale": float(pixel_scale),
            "stamp_size": int(stamp_size),
            "n": int(n),
            "chunk_size": int(chunk_size),
            "images": list(image_names),
            "columns": {k: dataclasses.asdict(ColumnSpec.of(v)) for k, v in columns_spec.items()},
            "config": dict(config),
            "versions": software_versions(),
            **(dict(extra_attrs) if extra_attrs else {}),
        }
    )
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        return _resume(path, attrs)
    return _create(path, attrs)


def _create(path: Path, attrs: dict[str, Any]) -> StoreWriter:
    import zarr
    from zarr.codecs import BloscCodec

    tmp = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.partial-*"):  # left by a killed creation
            shutil.rmtree(stale, ignore_errors=True)
        group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        group.attrs.update(attrs)
        n, c = attrs["n"], attrs["chunk_size"]
        shape = (len(attrs["bands"]), attrs["stamp_size"], attrs["stamp_size"])
        # Images: Blosc LZ4 with bit shuffle, ~10x faster to write and read than zarr's
        # default zstd for noisy float32 stamps, at 85 % of the raw size (zstd: 80 %).
        images_codec = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")
        for name in attrs["images"]:
            group.create_array(
                name,
                shape=(n, *shape),
                chunks=(c, *shape),
                dtype="float32",
                fill_value=np.nan,
                compressors=[images_codec],
            )
        for name, spec in attrs["columns"].items():
            rest = tuple(spec["shape"])
            group.create_array(
                name,
                shape=(n, *rest),
                chunks=(c, *rest),
                dtype=spec["dtype"],
                fill_value=_fill(spec["dtype"]),
            )
        group.create_array(DONE, shape=(-(-n // c),), chunks=(1,), dtype="bool", fill_value=False)
        if path.exists():
            path.rmdir()  # an empty folder the user made
        os.rename(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CosmobenchError(f"cannot write {path}: {e.strerror or e}") from None
    return open_writer(path)


def _resume(path: Path, attrs: dict[str, Any]) -> StoreWriter:
    group = _open_group(path, mode="r+")
    old = dict(group.attrs)
    _check_schema(path, old)
    diffs = []
    old_cfg, new_cfg = old.get("config", {}), attrs["config"]
    for key in sorted(set(old_cfg) | set(new_cfg)):
        if old_cfg.get(key) != new_cfg.get(key):
            diffs.append(f"{key}: {old_cfg.get(key)!r} → {new_cfg.get(key)!r}")
    for key in (
        "kind",
        "n",
        "chunk_size",
        "bands",
        "pixel_scale",
        "stamp_size",
        "images",
        "columns",
    ):
        if old.get(key) != attrs[key] and key not in new_cfg:
            diffs.append(f"{key}: {old.get(key)!r} → {attrs[key]!r}")
    if diffs:
        raise CosmobenchError(
            f"{path} exists with another config ({'; '.join(diffs[:4])}"
            f"{' ...' if len(diffs) > 4 else ''}); "
            "use another output or delete it"
        )
    if old.get("versions") != attrs["versions"]:
        raise CosmobenchError(
            f"{path} was started with other software ({old.get('versions')}); finish it with "
            "those versions, or use another output"
        )
    return StoreWriter(path, group)


def open_writer(path: str | Path) -> StoreWriter:
    """Reopen an existing store to write chunks (what each worker does)."""
    path = Path(path)
    group = _open_group(path, mode="r+")
    _check_schema(path, dict(group.attrs))
    return StoreWriter(path, group)


def _open_group(path: Path, mode: str) -> Any:
    import zarr

    if not path.exists():
        raise CosmobenchError(f"data set {path} does not exist")
    if not (path / "zarr.json").is_file():
        raise CosmobenchError(
            f"{path} is not a cosmobench data set (no zarr.json); choose another path"
        )
    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as e:  # zarr raises JSONDecodeError, ValueError, KeyError, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise CosmobenchError(f"{path} is corrupt or not a Zarr v3 store ({first})") from None


def _check_schema(path: Path, attrs: Mapping[str, Any]) -> None:
    if attrs.get("schema") != SCHEMA:
        raise CosmobenchError(
            f"{path} is a Zarr store but not a cosmobench data set (no schema '{SCHEMA}')"
        )
    version = attrs.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise CosmobenchError(
            f"{path} has schema version {version!r}; this cosmobench reads up to "
            f"{SCHEMA_VERSION}: upgrade it"
        )
    missing = [
        k
        for k in ("kind", "bands", "n", "chunk_size", "images", "columns", "stamp_size",
                  "pixel_scale")
        if k not in attrs
    ]
    if missing:
        raise CosmobenchError(
            f"{path} is a corrupt cosmobench data set (attributes missing: {', '.join(missing)})"
        )
    check_choice("data set kind", attrs["kind"], KINDS)


class Dataset:
    """A validated, opened store. Get it with :func:`open_dataset`.

    Example:
        >>> ds = open_dataset("data.zarr")                           # doctest: +SKIP
        >>> x = ds.tensor("noisy")  # (N, 6, 64, 64) float32, electrons  # doctest: +SKIP
        >>> y = np.stack([ds.column("e1"), ds.column("e2")], 1)          # doctest: +SKIP
    """

    def __init__(self, path: Path, group: Any) -> None:
        self.path = path
        self._group = group
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.n: int = self.attrs["n"]
        self.kind: str = self.attrs["kind"]
        self.bands: tuple[str, ...] = tuple(self.attrs["bands"])
        self.pixel_scale: float = self.attrs["pixel_scale"]
        self.stamp_size: int = self.attrs["stamp_size"]
        self.chunk_size: int = self.attrs["chunk_size"]
        self.config: dict[str, Any] = self.attrs.get("config", {})
        self.image_names: tuple[str, ...] = tuple(self.attrs["images"])
        self.columns: tuple[str, ...] = tuple(self.attrs["columns"])
        self.n_chunks: int = -(-self.n // self.chunk_size)
        marked = done_chunks(path, group, self.n_chunks)
        #: chunks marked done whose image files are missing (left out of ``done_chunks``)
        self.missing_chunks: list[int] = missing_chunks(path, marked, self.image_names)
        #: indices of the chunks written and whole, sorted
        self.done_chunks: np.ndarray = np.setdiff1d(marked, self.missing_chunks)
        self._arrays: dict[str, Any] = {}
        self.complete = self.done_chunks.size == self.n_chunks

    @property
    def rows_written(self) -> int:
        """Galaxies in the chunks written and whole (arithmetic on the chunk indices)."""
        k = self.done_chunks
        rows = int(k.size) * self.chunk_size
        if k.size and k[-1] == self.n_chunks - 1:
            rows -= self.n_chunks * self.chunk_size - self.n
        return rows

    @property
    def done(self) -> np.ndarray:
        """One bool per chunk: written and whole (built on demand: n / chunk_size entries)."""
        mask = np.zeros(self.n_chunks, dtype=bool)
        mask[self.done_chunks] = True
        return mask

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"{self.done_chunks.size}/{self.n_chunks} chunks"
        bands = "".join(self.bands)
        return f"Dataset({str(self.path)!r}, kind={self.kind}, n={self.n}, bands={bands}, {state})"

    def _array(self, name: str, allowed: Sequence[str]) -> Any:
        check_choice("array", name, allowed)
        if name not in self._arrays:  # opened once: each lookup re-reads zarr.json
            self._arrays[name] = open_array(self._group, self.path, name)
        return self._arrays[name]

    def column(self, name: str, index: Any = None) -> np.ndarray:
        """Column ``name`` as numpy, shape (N,) or (N, 6); ``index``: rows (sorted, unique
        ints) to read instead of all."""
        arr = self._array(name, self.columns)
        if index is None:
            return self._read(name, lambda: arr[:])
        rows = np.asarray(index, dtype=np.int64)
        return self._read(name, lambda: read_rows(arr, rows))

    def images(self, name: str = "noisy", index: Any = None) -> np.ndarray:
        """Images as float32 numpy (n, bands, S, S).

        ``index``: None (all), an int, a slice, an int array (any order, repeats) or a mask.
        """
        arr = self._array(name, self.image_names)
        if index is None:
            return self._read(name, lambda: arr[:])
        if isinstance(index, int | np.integer | slice):
            return self._read(name, lambda: arr[index])
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.where(idx < 0, idx + self.n, idx).astype(np.int64)
        uniq, inverse = np.unique(idx, return_inverse=True)  # zarr wants sorted selections
        return self._read(name, lambda: read_rows(arr, uniq)[inverse])

    def tensor(self, name: str = "noisy", index: Any = None, device: Any = "cpu") -> Any:
        """Images loaded into memory as a float32 ``torch.Tensor`` on ``device``.

        Raises:
            CosmobenchError: the selection would not fit in the free memory; stream it with
                :meth:`iter_chunks` instead.
        """
        import torch

        rows = (
            self.n
            if index is None
            else len(range(self.n)[index])
            if isinstance(index, slice)
            else np.size(index)
        )
        need = rows * len(self.bands) * self.stamp_size**2 * 4
        free = available_bytes()
        if free is not None and need > 0.8 * free:
            raise CosmobenchError(
                f"{name} of {self.path} needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free; "
                "stream it with Dataset.iter_chunks or select fewer galaxies"
            )
        return torch.from_numpy(self.images(name, index)).to(device)

    def iter_chunks(self, name: str = "noisy") -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, array)`` chunk by chunk for an image array or a column."""
        arr = self._array(name, (*self.image_names, *self.columns))
        for start in range(0, self.n, self.chunk_size):
            stop = min(self.n, start + self.chunk_size)
            yield start, self._read(name, lambda s=start, e=stop: arr[s:e])

    def _read(self, name: str, fn: Any) -> np.ndarray:
        try:
            return np.asarray(fn())
        except (IndexError, TypeError):
            raise
        except Exception as e:  # a truncated or garbled chunk file
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
            raise CosmobenchError(f"{self.path}/{name} has a corrupt chunk ({first})") from None


def require(
    ds: Dataset,
    *,
    columns: Mapping[str, str] | None = None,
    images: Sequence[str] = (),
    bands: int | None = None,
    stamp_size: int | None = None,
    hint: str = "train on a simulated store",
) -> None:
    """Check that a store holds what a consumer reads, with one-line errors naming it.

    Arguments:
        ds: the opened store.
        columns: column -> what asks for it (``{"redshift": "target z"}``).
        images: image arrays that must be present (``("noisy",)``).
        bands, stamp_size: the number of bands and the stamp size the consumer takes.
        hint: what to do instead, appended to the missing-images error.

    Raises:
        CosmobenchError: a column or image array is missing, the shapes differ, or the
            store is empty.
    """
    have = set(ds.columns)
    missing = [f"{col!r} (for {why})" for col, why in (columns or {}).items() if col not in have]
    if missing:
        raise CosmobenchError(
            f"data set {ds.path} has no column {', '.join(missing)}; it has "
            f"{', '.join(sorted(have))}"
        )
    lacking = [n for n in images if n not in ds.image_names]
    if lacking:
        raise CosmobenchError(
            f"data set {ds.path} has no {' or '.join(lacking)} images (it has "
            f"{', '.join(ds.image_names) or 'none'}); {hint}"
        )
    if bands is not None or stamp_size is not None:
        have_shape = (len(ds.bands), int(ds.stamp_size))
        want = (bands or have_shape[0], stamp_size or have_shape[1])
        if have_shape != want:
            raise CosmobenchError(
                f"data set {ds.path} has {have_shape[0]} bands of {have_shape[1]}x"
                f"{have_shape[1]} pixels; the model takes {want[0]} bands of {want[1]}x{want[1]}"
            )
    if ds.n == 0:
        raise CosmobenchError(f"data set {ds.path} is empty")


def open_dataset(path: str | Path, *, allow_incomplete: bool = False) -> Dataset:
    """Open and validate a store (schema, version, kind, arrays, completeness).

    Raises:
        CosmobenchError: missing, corrupt, foreign, newer-schema or (unless
            ``allow_incomplete``) incomplete store.
    """
    path = Path(path)
    group = _open_group(path, mode="r")
    attrs = dict(group.attrs)
    _check_schema(path, attrs)
    want = [*attrs["images"], *attrs["columns"], DONE]
    absent = [k for k in want if not (path / k / "zarr.json").is_file()]
    if absent:
        raise CosmobenchError(
            f"{path} is a corrupt data set (arrays missing: {', '.join(sorted(absent))})"
        )
    arrays = {k: open_array(group, path, k) for k in want}
    n, shape = attrs["n"], (len(attrs["bands"]), attrs["stamp_size"], attrs["stamp_size"])
    for name in attrs["images"]:
        if tuple(arrays[name].shape) != (n, *shape):
            raise CosmobenchError(
                f"{path}/{name} has shape {arrays[name].shape}, expected {(n, *shape)}"
            )
    for name in attrs["columns"]:
        if arrays[name].shape[0] != n:
            raise CosmobenchError(f"{path}/{name} has {arrays[name].shape[0]} rows, expected {n}")
    ds = Dataset(path, group)
    ds._arrays.update({k: v for k, v in arrays.items() if k != DONE})
    if ds.missing_chunks and not allow_incomplete:
        k = ds.missing_chunks[0]
        more = f" (and {len(ds.missing_chunks) - 1} more)" if len(ds.missing_chunks) > 1 else ""
        raise CosmobenchError(
            f"{path}: chunk {k} (galaxies {k * ds.chunk_size}-"
            f"{min(ds.n, (k + 1) * ds.chunk_size) - 1}){more} is marked written but its image "
            "files are missing; rerun the command that made the data set (same options) to "
            "write it again"
        )
    if not ds.complete and not allow_incomplete:
        raise CosmobenchError(
            f"{path} is incomplete ({ds.done_chunks.size} of {ds.n_chunks} chunks written); "
            "rerun the command that made it to finish it"
        )
    return ds
