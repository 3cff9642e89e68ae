"""Merge results files into series, like with like only.

A series is one (machine, workload, mode, precision, protocol, data source): the machine is
the device's name (GPU name, or CPU model with threads and instruction set). Records that
differ in any of these stay in separate series, and the report says which series share a
workload and mode but were kept apart, and why (:func:`kept_apart`). Repeated measurements
of the same point in the same series are pooled (raw times concatenated, as
``torch.utils.benchmark.Measurement.merge`` does), an ``ok`` record winning over a failed
one; the pooled peak memory is the largest of the runs and the energy is integrated over all
of them, so no row shows another run's memory or energy alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cosmobench.bench.env import machine_label
from cosmobench.bench.results import Record, Results
from cosmobench.bench.timing import RawTiming

__all__ = ["Series", "kept_apart", "merge_series", "series_key"]


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
    precision: str = "fp32"
    data: str = "synthetic"
    points: dict[int, Record] = dataclasses.field(default_factory=dict)
    peaks: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: list[str] = dataclasses.field(default_factory=list)

    @property
    def label(self) -> str:
        """Legend label naming machine, mode, precision, protocol and where the data lived,
        e.g. ``NVIDIA H100 · cudagraph+bf16 [bf16, steady, synthetic on device]``."""
        data = "synthetic on device" if self.data == "synthetic" else "read from store"
        return f"{self.machine} · {self.mode} [{self.precision}, {self.protocol}, {data}]"

    def ok(self) -> list[tuple[int, Record]]:
        """Sizes measured successfully, ascending."""
        return sorted((s, r) for s, r in self.points.items() if r.status == "ok")

    def value(self, size: int, key: str) -> Any:
        """``summary()[key]`` of the point at ``size`` (``None`` when absent or not ok)."""
        r = self.points.get(size)
        if r is None or r.status != "ok":
            return None
        return r.summary(self.peaks).get(key)


def _data(rec: Record) -> str:
    return "synthetic" if rec.info.get("data") in (None, "synthetic") else "store"


def series_key(machine: str, rec: Record) -> tuple[str, ...]:
    """What must be equal for two records to be pooled."""
    return (machine, rec.workload, rec.mode, rec.precision, rec.protocol, _data(rec))


def _pool_energy(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    if not (a and a.get("available") and b and b.get("available")):
        return {"available": False, "reason": "pooled runs without energy in each of them"}
    items = sum(e["joules"] / e["j_per_image"] for e in (a, b) if e.get("j_per_image"))
    joules, seconds = a["joules"] + b["joules"], a["seconds"] + b["seconds"]
    return {"available": True, "joules": joules, "seconds": seconds,
            "mean_power_w": joules / seconds if seconds else None,
            "j_per_image": joules / items if items else None, "pooled": True}


def _merge_records(a: Record, b: Record) -> Record:
    if a.status != "ok" or b.status != "ok":
        return b if b.status == "ok" else a
    assert a.timing is not None and b.timing is not None
    mems = [m for m in (a.peak_memory_bytes, b.peak_memory_bytes) if m is not None]
    merged = a.replace(
        timing=RawTiming.merge([a.timing, b.timing]),
        peak_memory_bytes=max(mems) if mems else None,
        energy=_pool_energy(a.energy, b.energy),
    )
    merged.info = {**a.info, "merged_runs": a.info.get("merged_runs", 1) + 1}
    return merged


def merge_series(results: list[Results]) -> list[Series]:
    """Group the records of all ``results`` into :class:`Series`, in first-seen order."""
    out: dict[tuple[str, ...], Series] = {}
    for res in results:
        machine = machine_label(res.env)
        for rec in res.records:
            key = series_key(machine, rec)
            series = out.setdefault(key, Series(machine, rec.workload, rec.mode, rec.protocol,
                                                rec.precision, _data(rec)))
            if not series.peaks:
                series.peaks = dict(res.peaks)
            if res.source and res.source not in series.sources:
                series.sources.append(res.source)
            old = series.points.get(int(rec.size))
            series.points[int(rec.size)] = rec if old is None else _merge_records(old, rec)
    return list(out.values())


def kept_apart(series: list[Series]) -> list[str]:
    """One line per workload and mode measured in several series that were not pooled,
    saying what differs (machine, protocol, data source)."""
    groups: dict[tuple[str, str], list[Series]] = {}
    for s in series:
        groups.setdefault((s.workload, s.mode), []).append(s)
    lines = []
    for (workload, mode), group in groups.items():
        if len(group) < 2:
            continue
        differ = [name for name in ("machine", "protocol", "data")
                  if len({getattr(s, name) for s in group}) > 1]
        lines.append(f"{workload} {mode}: {len(group)} series kept apart "
                     f"(they differ in {', '.join(differ)})")
    return lines
