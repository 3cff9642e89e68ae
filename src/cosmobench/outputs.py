"""Output paths: checked before any work starts, and write failures as one line.

Every command calls :func:`check_output` on each path it will write, before its first stage:
the path must be of the expected sort (a file, a folder, or a store folder), its folder must
accept a new file (tested by creating and removing one: permission bits say nothing to root
or about a read-only mount), and the file system must have room for what will be written
(an estimate the caller gives). :func:`write_error` is the one place an ``OSError`` from
writing becomes a :class:`~cosmobench.errors.CosmobenchError` saying what to do; the CLI's
``main`` and :func:`cosmobench.files.atomic_write` both use it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from cosmobench.errors import CosmobenchError

__all__ = [
    "KINDS",
    "check_output",
    "free_bytes",
    "store_bytes",
    "write_error",
    "human_bytes",
    "check_store_output",
    "check_image_path",
    "IMAGE_SUFFIXES",
]

KINDS = ("file", "dir", "store")

# What to do, by errno, after "cannot write PATH: REASON".
_ADVICE = {
    errno.ENOSPC: "free some space or choose another output",
    errno.EDQUOT: "free some space (disk quota) or choose another output",
    errno.EFBIG: "the file system cannot hold a file this large; choose another output",
    errno.EROFS: "choose another output, on a writable file system",
    errno.EACCES: "no permission; choose another output or fix its permissions",
    errno.EPERM: "no permission; choose another output or fix its permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another output",
    errno.EISDIR: "it is a folder; give a file path",
    errno.EEXIST: "it exists; remove it or choose another output",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}
#: errnos that mean the write itself failed (reported as "cannot write")
WRITE_ERRNOS = frozenset(_ADVICE)


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def write_error(path: str | Path | None, e: BaseException) -> CosmobenchError:
    """The one-line error for a failed write of ``path`` (``e``: an ``OSError``, or torch's
    ``RuntimeError`` from its zip writer when the disk is full)."""
    if isinstance(e, OSError):
        where = path if path is not None else (e.filename or "the output")
        reason = e.strerror or str(e) or type(e).__name__
        advice = _ADVICE.get(e.errno or 0, "check the path and choose another output")
        return CosmobenchError(f"cannot write {where}: {reason}; {advice}")
    free = free_bytes(Path(path)) if path is not None else None
    room = f", {human_bytes(free)} free" if free is not None else ""
    return CosmobenchError(
        f"cannot write {path or 'the output'}: the write failed (disk full or not writable{room}); "
        "free some space or choose another output"
    )


def is_torch_write_failure(e: BaseException) -> bool:
    """torch.save reports a failed write (e.g. a full disk) as a ``RuntimeError``."""
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "PytorchStreamWriter" in text or "inline_container" in text or "file write failed" in text
    )


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing ancestor)."""
    try:
        return shutil.disk_usage(_existing_ancestor(Path(path))).free
    except OSError:
        return None


def store_bytes(rows: int, images: int, bands: int = 6, stamp: int = 64) -> int:
    """Estimated bytes of ``rows`` galaxies of a store: ``images`` float32 arrays of
    (bands, stamp, stamp) per galaxy at 85 % of their raw size (Blosc LZ4 with bit shuffle on
    noisy stamps; see docs/architecture.md), plus ~0.5 KiB of columns."""
    return int(rows * (images * bands * stamp * stamp * 4 * 0.85 + 512))


def _probe(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a file in ``folder``: the only test that a mount or ACL allows it."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cosmobench-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        err = write_error(path, e)
        raise CosmobenchError(str(err).replace("another output", f"another {flag}")) from None


def check_output(
    path: str | Path,
    kind: str,
    *,
    flag: str = "--out",
    need_bytes: int = 0,
    exists_ok: bool = True,
    example: str | None = None,
    override: str | None = None,
) -> Path:
    """Check, before any work, that ``path`` can be written as a ``kind``; return it.

    Arguments:
        path: the output path.
        kind: ``"file"`` (a JSON, a PNG), ``"dir"`` (a report or run folder) or ``"store"``
            (a Zarr folder).
        flag: the option's name, for the message.
        need_bytes: estimated bytes the command will write there (0: no space check).
        exists_ok: ``False`` refuses an existing path.
        example: a file name to suggest when a folder is given for a file.
        override: the option that skips the space check, named in its message.

    Raises:
        CosmobenchError: the path is of another sort, cannot be written, or its file system
            has less free space than ``need_bytes``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not exists_ok:
            raise CosmobenchError(f"{flag} {path} exists; remove it or choose another {flag}")
        if kind == "file" and path.is_dir():
            name = example or "results.json"
            raise CosmobenchError(
                f"{flag} {path} is a folder, not a file; give a file path such as {path / name}"
            )
        if kind in ("dir", "store") and not path.is_dir():
            sort = "store folder" if kind == "store" else "folder"
            raise CosmobenchError(
                f"{flag} {path} exists and is not a {sort} (a file); remove it or choose "
                f"another {flag}"
            )
    anc = _existing_ancestor(path.parent if kind == "file" else path)
    if not anc.is_dir():
        raise CosmobenchError(
            f"cannot write {flag} {path}: {anc} is a file, not a folder; choose another {flag}"
        )
    _probe(anc, path, flag)
    if need_bytes > 0:
        free = free_bytes(anc)
        if free is not None and need_bytes > free:
            skip = f", or pass {override} if the estimate is wrong" if override else ""
            raise CosmobenchError(
                f"{flag} {path} needs about {human_bytes(need_bytes)} and its file system has "
                f"{human_bytes(free)} free; free some space or choose another {flag}{skip}"
            )
    return path


def check_store_output(
    path: str | Path,
    n: int,
    images: int,
    *,
    flag: str = "--out",
    space_check: bool = True,
    override: str | None = None,
) -> Path:
    """:func:`check_output` for a store of ``n`` galaxies with ``images`` image arrays: the
    space check counts only the galaxies a resumed store still lacks."""
    path = Path(path)
    rows = n
    if (path / "zarr.json").is_file():
        from cosmobench.store import open_dataset

        try:
            rows = max(0, n - open_dataset(path, allow_incomplete=True).rows_written)
        except CosmobenchError:
            pass  # the writer says what is wrong with it (another config, corrupt, ...)
    need = store_bytes(rows, images) if space_check else 0
    return check_output(path, "store", flag=flag, need_bytes=need, override=override)


#: image formats matplotlib writes (``savefig`` picks the format from the suffix)
IMAGE_SUFFIXES = (
    ".png",
    ".pdf",
    ".svg",
    ".svgz",
    ".jpg",
    ".jpeg",
    ".webp",
    ".tif",
    ".tiff",
    ".eps",
    ".ps",
)


def check_image_path(path: str | Path, flag: str = "--png") -> Path:
    """A figure path: a known image suffix, and writable (:func:`check_output`)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise CosmobenchError(
            f"{flag} {path}: unsupported image format {path.suffix or '(no suffix)'!r}; use a "
            f"name ending in {', '.join(IMAGE_SUFFIXES[:4])}, ..."
        )
    return check_output(path, "file", flag=flag, example="grid.png")
