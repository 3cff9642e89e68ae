"""Resumable shear measurement: each finished block of estimates is kept on disk.

Measuring a large shear-test store (metacalibration makes ~30 GalSim FFT draws per
six-band stamp) takes hours; a killed ``cosmobench shear`` must not start again from zero.
:class:`UnitCache` keeps every finished work unit's estimates in one ``.npz`` file of a
folder (``DIR/estimates`` for the CLI), written atomically, and answers them back on the
next run if everything the estimates depend on is unchanged: the store (path, size and
simulation config), the estimators (names, kinds, and the size and modification time of
each file of a run folder), the seed, the BNN weight samples and the block size; each
file's name says its galaxies and whether they were metacalibrated. Anything else found
there (another key, an unreadable or truncated file, wrong shapes) is measured again,
never trusted; a changed key empties the folder first.

The statistics are always recomputed from the estimates, so a changed statistic (error
method, bins, resamples) reuses every measured block.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from cosmobench.files import atomic_write, write_json

__all__ = ["UnitCache", "unit_key"]

_KEY = "key.json"


def _run_files(path: str | None) -> list[tuple[str, int, int]]:
    """``(name, size, mtime_ns)`` of the files of a run folder: retraining changes them."""
    if path is None:
        return []
    out = []
    for p in sorted(Path(path).iterdir()):
        if p.is_file():
            st = p.stat()
            out.append((p.name, st.st_size, st.st_mtime_ns))
    return out


def unit_key(store: str, ds: Any, specs: list[Any], cfg: Any) -> dict[str, Any]:
    """Everything a block's estimates depend on, as JSON-comparable data. Whether a block
    was metacalibrated is in its file name, so measuring more galaxies with
    metacalibration later reuses every raw block."""
    return json.loads(
        json.dumps(
            {
                "store": str(store),
                "n_images": int(len(ds)),
                "store_config": ds.config,
                "estimators": [[s.name, s.kind, s.path, _run_files(s.path)] for s in specs],
                "seed": cfg.seed,
                "samples": cfg.samples,
                "block": cfg.block,
            },
            default=str,
        )
    )


class UnitCache:
    """A folder of finished work units' estimates, valid for one :func:`unit_key`.

    Arguments:
        folder: where the unit files live (created).
        key: the :func:`unit_key` of this measurement.
    """

    def __init__(self, folder: str | Path, key: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / _KEY
        try:
            old = json.loads(key_file.read_text())
        except (OSError, ValueError):
            old = None
        if old != key:
            for p in self.folder.glob("unit-*.npz"):
                p.unlink()
            write_json(key_file, key)

    def _file(self, unit: tuple[int, int, bool]) -> Path:
        a, b, m = unit
        return self.folder / f"unit-{a:09d}-{b:09d}-{int(m)}.npz"

    def get(
        self, unit: tuple[int, int, bool], names: list[str], variants: list[str]
    ) -> dict[str, dict[str, np.ndarray]] | None:
        """The unit's estimates ``{name: {variant: (4n, 2)}}``, or ``None`` if not usable."""
        a, b, _ = unit
        path = self._file(unit)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {n: {v: np.asarray(z[f"{n}/{v}"]) for v in variants} for n in names}
        except (OSError, ValueError, KeyError, EOFError):
            return None
        ok = all(x.shape == (4 * (b - a), 2) for d in out.values() for x in d.values())
        return out if ok else None

    def put(self, unit: tuple[int, int, bool], res: dict[str, dict[str, np.ndarray]]) -> None:
        """Keep a finished unit's estimates (atomically: a kill leaves no partial file)."""
        arrays = {f"{n}/{v}": np.asarray(x) for n, d in res.items() for v, x in d.items()}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        atomic_write(self._file(unit), lambda f: f.write(data))
