"""A console table of a run's records (rich), printed by ``cosmobench bench``."""

from __future__ import annotations

from typing import Any

from cosmobench.bench.meters import RSS_GROWTH, RSS_GROWTH_NOTE
from cosmobench.bench.results import Results

__all__ = ["print_results"]


def _num(x: Any, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def print_results(results: Results, console: Any) -> None:
    """One row per record: status, median, IQR, images/s, paper axis, MFU, memory."""
    from rich.console import Console
    from rich.table import Table

    if not console.is_terminal:  # a pipe or a log file: do not squeeze into 80 columns
        console = Console(file=console.file, width=150)

    table = Table(title=f"cosmobench bench on {results.env.get('device')}", show_lines=False)
    for col in ("workload", "mode", "size", "status", "ms", "IQR%", "img/s", "s/100ep",
                "MFU%", "MiB"):
        table.add_column(col, justify="right" if col not in ("workload", "mode", "status")
                         else "left")
    for r in results.records:
        s = r.summary(results.peaks)
        epochs = s.get("s_per_100_epochs")
        mark = "†" if s.get("s_per_100_epochs_derived") else ""
        iqr = _num(s.get("iqr_pct"), ".1f") + (" ⚠" if s.get("iqr_warning") else "")
        table.add_row(
            r.workload, r.mode, str(r.size),
            r.status,
            _num(s.get("median_ms"), ".3g"), iqr, _num(s.get("images_per_s"), ".4g"),
            _num(epochs, ",.0f") + mark, _num(100 * s["mfu"] if s.get("mfu") else None, ".1f"),
            _num(r.peak_memory_bytes / 2**20 if r.peak_memory_bytes else None, ",.0f"),
        )
    console.print(table)
    if any(r.summary(results.peaks).get("s_per_100_epochs_derived") for r in results.records):
        console.print("ms: median per call; s/100ep: seconds for 100 epochs of 8,000 images, "
                      "† derived from the median step time (100 × 8,000 / batch × t_step)")
    if any(r.memory_kind == RSS_GROWTH for r in results.records):
        console.print(f"MiB: {RSS_GROWTH_NOTE}")
    for r in results.records:
        if r.status != "ok":
            console.print(f"{r.workload} {r.mode} {r.size}: {r.status}: {r.reason}",
                          highlight=False)
    for m in results.max_batch:
        console.print(f"largest batch {m['workload']} {m['mode']}: {m.get('largest')} "
                      f"({m.get('status')}: {m.get('reason')})")
