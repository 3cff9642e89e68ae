"""Merge results files into series: one per (machine, workload, mode, protocol).

Files from different machines sit side by side (their machine names differ); repeated
measurements of the same point on the same machine are pooled (raw times concatenated, as
``torch.utils.benchmark.Measurement.merge`` does), an ``ok`` record winning over a failed one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cosmobench.bench.env import machine_label
from cosmobench.bench.results import Record, Results
from cosmobench.bench.timing import RawTiming

__all__ = ["Series", "merge_series"]


@dataclasses.dataclass
class Series:
    """Records of one workload and mode on one machine, by size.

    Attributes:
        machine: :func:`~cosmobench.bench.env.machine_label` of the results' environment.
        workload, mode, protocol: what the series is.
        points: size -> (merged) record.
        peaks: the machine's measured peaks (for MFU).
        sources: results files that contributed.
    """

    machine: str
    workload: str
    mode: str
    protocol: str
    points: dict[int, Record] = dataclasses.field(default_factory=dict)
    peaks: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: list[str] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        """Legend label, e.g. ``NVIDIA H100 · cudagraph+bf16``."""
        proto = "" if self.protocol == "steady" else f" [{self.protocol}]"
        return f"{self.machine} · {self.mode}{proto}"

    def ok(self) -> list[tuple[int, Record]]:
        """Sizes measured successfully, ascending."""
        return sorted((s, r) for s, r in self.points.items() if r.status == "ok")

    def value(self, size: int, key: str) -> Any:
        """``summary()[key]`` of the point at ``size`` (``None`` when absent or not ok)."""
        r = self.points.get(size)
        if r is None or r.status != "ok":
            return None
        return r.summary(self.peaks).get(key)


def _merge_records(a: Record, b: Record) -> Record:
    if a.status != "ok" or b.status != "ok":
        return b if b.status == "ok" else a
    assert a.timing is not None and b.timing is not None
    merged = dataclasses.replace(a, timing=RawTiming.merge([a.timing, b.timing]))
    merged.info = {**a.info, "merged_runs": a.info.get("merged_runs", 1) + 1}
    return merged


def merge_series(results: list[Results]) -> list[Series]:
    """Group the records of all ``results`` into :class:`Series`, in first-seen order."""
    out: dict[tuple[str, str, str, str], Series] = {}
    for res in results:
        machine = machine_label(res.env)
        for rec in res.records:
            key = (machine, rec.workload, rec.mode, rec.protocol)
            series = out.setdefault(key, Series(machine, rec.workload, rec.mode, rec.protocol))
            if not series.peaks:
                series.peaks = dict(res.peaks)
            if res.source and res.source not in series.sources:
                series.sources.append(res.source)
            old = series.points.get(int(rec.size))
            series.points[int(rec.size)] = rec if old is None else _merge_records(old, rec)
    return list(out.values())
