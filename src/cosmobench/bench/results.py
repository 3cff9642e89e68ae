"""The results file: a versioned JSON schema, one record per (workload, mode, size).

Layout (``schema: "cosmobench.bench"``, ``schema_version: 2``; version 1 files, whose
records were flat and whose peak was one matrix product, are still read)::

    {"schema", "schema_version", "complete",      # complete: false while a run is going
     "env": {...},                                 # cosmobench.bench.env.capture_env
     "config": {...},                              # BenchConfig.to_dict(), resolved
     "peaks": {"fp32": {"flops_per_s", "kernels", "theoretical", ...}, ...}, # roofline
     "records": [{"spec": {"workload", "mode", "size", "size_name", "device", "protocol",
                           "precision", "epochs_axis"},          # what (CaseSpec)
                  "status", "reason",
                  "measured": {"timing": {"number_per_run", "raw_times_s", ...},
                               "flops_per_call", "peak_memory_bytes", "energy", ...},  # raw
                  "info": {...},                                  # the point's environment
                  "summary": {...}}],                             # derived, for people
     "max_batch": [{"workload", "mode", "largest", "tried": [[size, status], ...]}]}

Raw times are the data; each record's ``summary`` (median, IQR, images/s, the derived
"seconds for 100 epochs of 8,000 images", MFU) is recomputed from them by :meth:`Record.summary`
and written for people reading the file. :func:`load_results` refuses a foreign file or one
written by a newer schema with a one-line error.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cosmobench.bench.timing import RawTiming, Stats
from cosmobench.errors import CosmobenchError
from cosmobench.files import read_json, write_json

__all__ = [
    "PAPER_EPOCHS",
    "PAPER_IMAGES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "STATUSES",
    "CaseSpec",
    "Measured",
    "Record",
    "Results",
    "load_results",
]

SCHEMA = "cosmobench.bench"
SCHEMA_VERSION = 2
STATUSES = ("ok", "oom", "unsupported", "error", "skipped")
#: The paper's axis: seconds for 100 epochs of 8,000 training images (Figures 2-3).
PAPER_EPOCHS, PAPER_IMAGES = 100, 8000


@dataclasses.dataclass(frozen=True)
class CaseSpec:
    """*What* was timed: one point of the sweep, independent of how it went.

    Attributes:
        workload, mode, size: the point; ``size_name`` says whether ``size`` is a batch
            size, a number of generated galaxies (``n``) or simulated galaxies.
        device, protocol, precision: where and how.
        epochs_axis: training workload (has the "100 epochs of 8,000 images" axis).
    """

    workload: str
    mode: str
    size: int
    size_name: str
    device: str
    protocol: str = "steady"
    precision: str = "fp32"
    epochs_axis: bool = False


@dataclasses.dataclass
class Measured:
    """The *raw* measurements of a point (statistics are derived on demand).

    Attributes:
        items_per_call: images per timed call.
        timing: the raw times (``None`` unless ok).
        flops_per_call: counted FLOPs of one call.
        peak_key: which measured roofline MFU is computed against (fp32, tf32, bf16).
        peak_memory_bytes: the point's peak above its own baseline; memory_kind says which
            counter (``cuda_max_allocated_above_baseline``, ``rss_high_water_above_baseline``;
            files of schema 1: absolute ``cuda_max_allocated`` / ``rss_high_water``).
        energy: energy over a window of >= 2 s (``{"available": False, "reason"}`` else).
    """

    items_per_call: int | None = None
    timing: RawTiming | None = None
    flops_per_call: float | None = None
    peak_key: str | None = None
    peak_memory_bytes: int | None = None
    memory_kind: str | None = None
    energy: dict[str, Any] | None = None


_SPEC = tuple(f.name for f in dataclasses.fields(CaseSpec))
_MEASURED = tuple(f.name for f in dataclasses.fields(Measured))


def _delegate(part: str, name: str) -> property:
    def get(self: Record) -> Any:
        return getattr(getattr(self, part), name)

    def put(self: Record, value: Any) -> None:
        if part == "spec":
            self.spec = dataclasses.replace(self.spec, **{name: value})
        else:
            setattr(self.measured, name, value)

    return property(get, put, doc=f"``{part}.{name}``")


class Record:
    """One point: its :class:`CaseSpec` (what), ``status`` and ``reason`` (how it went), its
    :class:`Measured` raw data, and ``info``, the point's environment (data source, load
    average, wall time, memory baseline, warnings, parameters ...); the run's environment is
    in :attr:`Results.env`. ``status`` is ok, oom, unsupported, error or skipped.

    Built from flat keywords (``Record(workload=..., mode=..., status=..., timing=...)``);
    every spec and measured field reads (and writes) as an attribute.
    """

    def __init__(self, *, status: str, reason: str | None = None,
                 info: dict[str, Any] | None = None, **fields: Any) -> None:
        unknown = set(fields) - set(_SPEC) - set(_MEASURED)
        if unknown:
            raise TypeError(f"Record got unknown fields {sorted(unknown)}")
        self.spec = CaseSpec(**{k: fields[k] for k in _SPEC if k in fields})
        self.measured = Measured(**{k: fields[k] for k in _MEASURED if k in fields})
        self.status, self.reason = status, reason
        self.info: dict[str, Any] = dict(info or {})
        if self.status not in STATUSES:
            raise CosmobenchError(
                f"status must be one of {', '.join(STATUSES)}; got {self.status!r}"
            )
        if self.status == "ok" and self.timing is None:
            raise CosmobenchError(f"record {self.key} has status ok but no timing")

    def flat(self) -> dict[str, Any]:
        """Every field as keywords of the constructor."""
        return {**dataclasses.asdict(self.spec), **{k: getattr(self.measured, k)
                                                   for k in _MEASURED},
                "status": self.status, "reason": self.reason, "info": dict(self.info)}

    def replace(self, **changes: Any) -> Record:
        """A copy with ``changes`` (flat field names)."""
        return Record(**{**self.flat(), **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self.flat() == other.flat()

    def __repr__(self) -> str:
        return f"Record({self.workload} {self.mode} {self.size_name}={self.size}: {self.status})"

    @property
    def key(self) -> tuple[str, str, int]:
        """``(workload, mode, size)``: what identifies a point within one machine's run."""
        return (self.workload, self.mode, int(self.size))

    def stats(self) -> Stats | None:
        """Per-call statistics from the raw times."""
        return self.timing.stats() if self.timing is not None else None

    def summary(self, peaks: dict[str, Any] | None = None) -> dict[str, Any]:
        """Derived numbers for tables and figures, from the raw times.

        ``s_per_100_epochs`` is on the paper's axis: under ``steady`` it is derived from the
        median step time as ``100 x 8000 / batch x t_step`` (``s_per_100_epochs_derived``
        True); under ``paper`` it is the measured epochs, scaled when fewer than 100 epochs
        or other than 8,000 images were run (then also marked derived).
        """
        st = self.stats()
        if st is None:
            return {}
        items = self.items_per_call or self.size
        out: dict[str, Any] = {
            "median_ms": st.median_s * 1e3,
            "iqr_ms": st.iqr_s * 1e3,
            "min_ms": st.min_s * 1e3,
            "iqr_pct": 100 * st.iqr_s / st.median_s if st.median_s > 0 else None,
            "iqr_warning": st.iqr_warning,
            "blocks": st.blocks,
            "images_per_s": items / st.median_s if st.median_s > 0 else None,
        }
        if self.epochs_axis:
            out.update(self._epochs_axis(st))
        if self.flops_per_call:
            out["tflops_per_s"] = self.flops_per_call / st.median_s / 1e12
            entry = (peaks or {}).get(self.peak_key or "", {})
            peak = entry.get("flops_per_s")
            mfu = self.flops_per_call / st.median_s / peak if peak else None
            if entry.get("roofline"):
                out["mfu"] = mfu
                out["mfu_above_roofline"] = bool(mfu is not None and mfu > 1.0)
                theory = (entry.get("theoretical") or {}).get("flops_per_s")
                out["mfu_theoretical"] = (self.flops_per_call / st.median_s / theory
                                          if theory else None)
            else:  # schema 1: the peak was one matrix product, not a roofline
                out["mfu"] = None
                out["mfu_vs_single_matmul"] = mfu
        if self.energy and self.energy.get("available"):
            out["j_per_image"] = self.energy.get("j_per_image")
        return out

    def _epochs_axis(self, st: Stats) -> dict[str, Any]:
        images_per_step = self.items_per_call or self.size
        if self.protocol == "paper" and self.timing is not None:
            timed_epochs = len(self.timing.raw_times_s)
            images = self.timing.number_per_run * images_per_step
            seconds = sum(self.timing.raw_times_s) * PAPER_EPOCHS / timed_epochs
            seconds *= PAPER_IMAGES / images
            exact = timed_epochs == PAPER_EPOCHS and abs(images - PAPER_IMAGES) < images_per_step
            return {"s_per_100_epochs": seconds, "s_per_100_epochs_derived": not exact}
        seconds = PAPER_EPOCHS * PAPER_IMAGES / images_per_step * st.median_s
        return {"s_per_100_epochs": seconds, "s_per_100_epochs_derived": True}

    def to_dict(self, peaks: dict[str, Any] | None = None) -> dict[str, Any]:
        """JSON form (schema 2): ``spec``, ``status``, ``reason``, ``measured``, ``info`` and
        the derived ``summary``."""
        measured = {k: getattr(self.measured, k) for k in _MEASURED}
        measured["timing"] = self.timing.to_dict() if self.timing is not None else None
        return {"spec": dataclasses.asdict(self.spec), "status": self.status,
                "reason": self.reason, "measured": measured, "info": self.info,
                "summary": self.summary(peaks)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        """Inverse of :meth:`to_dict`; also reads the flat records of schema 1 (the stored
        summary is ignored: recomputed on demand)."""
        if "spec" in d:
            flat = {**d["spec"], **d.get("measured", {}), "status": d["status"],
                    "reason": d.get("reason"), "info": d.get("info", {})}
        else:
            flat = dict(d)
        keep = set(_SPEC) | set(_MEASURED) | {"status", "reason", "info"}
        kwargs = {k: v for k, v in flat.items() if k in keep}
        if kwargs.get("timing") is not None:
            kwargs["timing"] = RawTiming.from_dict(kwargs["timing"])
        return cls(**kwargs)


for _name in _SPEC:
    setattr(Record, _name, _delegate("spec", _name))
for _name in _MEASURED:
    setattr(Record, _name, _delegate("measured", _name))


@dataclasses.dataclass
class Results:
    """A whole run: environment, resolved config, measured peaks, records, max-batch searches."""

    env: dict[str, Any]
    config: dict[str, Any]
    records: list[Record] = dataclasses.field(default_factory=list)
    peaks: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_batch: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    complete: bool = False
    source: str | None = None

    def __repr__(self) -> str:
        ok = sum(r.status == "ok" for r in self.records)
        return (
            f"Results({len(self.records)} records, {ok} ok, device={self.env.get('device')}, "
            f"complete={self.complete})"
        )

    def find(self, workload: str, mode: str, size: int) -> Record | None:
        """The record of one point, if present."""
        for r in self.records:
            if r.key == (workload, mode, int(size)):
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (schema and version first)."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "complete": self.complete,
            "env": self.env,
            "config": self.config,
            "peaks": self.peaks,
            "records": [r.to_dict(self.peaks) for r in self.records],
            "max_batch": self.max_batch,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (a killed run leaves the previous complete write)."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, where: str = "results", source: str | None = None) -> Results:
        """Validate the schema and rebuild; foreign or newer files are one-line errors."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise CosmobenchError(
                f"{where} is not a cosmobench benchmark results file "
                f"(schema {found!r}, expected {SCHEMA!r})"
            )
        version = data.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise CosmobenchError(f"{where} has an invalid schema_version {version!r}")
        if version > SCHEMA_VERSION:
            raise CosmobenchError(
                f"{where} was written by a newer cosmobench (schema_version {version} > "
                f"{SCHEMA_VERSION}); upgrade cosmobench to read it"
            )
        try:
            raw = data.get("records", [])
            if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
                raise TypeError("records must be a list of objects")
            records = [Record.from_dict(r) for r in raw]
            return cls(
                env=dict(data["env"]),
                config=dict(data["config"]),
                records=records,
                peaks=dict(data.get("peaks", {})),
                max_batch=list(data.get("max_batch", [])),
                complete=bool(data.get("complete", False)),
                source=source,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CosmobenchError(
                f"{where} is a damaged results file ({type(e).__name__}: {e})"
            ) from None


def load_results(path: str | Path) -> Results:
    """Read and validate a results file written by ``cosmobench bench``."""
    path = Path(path)
    return Results.from_dict(
        read_json(path, "results file"), where=f"results file {path}", source=str(path)
    )
