"""``compare(paths, out)``: the paper's figures and a Markdown report from results files.

Any number of results files (from any machines) are merged into series
(:mod:`cosmobench.bench.series`), drawn in the paper's format with its V100 and IPU numbers
overlaid (:mod:`cosmobench.bench.figures`), and tabulated in ``report.md``: the machines and
their measured peaks, one table per workload on the paper's axis, the details of every
series (median, IQR, images/s, MFU, memory, energy), every point that did not run with its
reason, the largest batches that fit, and the measurements whose IQR exceeded 10 %.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cosmobench.bench.env import machine_label
from cosmobench.bench.figures import REFERENCE_SECTIONS, draw_all
from cosmobench.bench.meters import RSS_GROWTH, RSS_GROWTH_NOTE
from cosmobench.bench.results import Results, load_results
from cosmobench.bench.series import Series, kept_apart, merge_series
from cosmobench.errors import CosmobenchError
from cosmobench.files import atomic_write
from cosmobench.reference import load_reference

__all__ = ["compare", "format_report"]


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x == 0:
            return "0"
        if abs(x) >= 1e7 or abs(x) < 1e-3:
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}g}" if abs(x) < 100 else f"{x:,.0f}"
    return str(x)


def _apart(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` at the fewest significant digits (3 to 6) that print them differently,
    so that a comparison of close numbers never reads "0.157 > 0.157"."""
    for digits in range(3, 7):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb:
            break
    return sa, sb


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |"
              for row in rows]
    return lines + [""]


def _machines(results: list[Results]) -> list[str]:
    rows = []
    for res in results:
        env = res.env
        gpu = env.get("gpu") or {}
        rows.append([
            f"`{res.source}`" if res.source else "–", machine_label(env), env.get("device", "–"),
            str(env.get("threads", "–")), gpu.get("driver") or "–", gpu.get("cuda") or "–",
            env.get("torch", "–"), f"{env.get('cosmobench', '–')} ({env.get('git_commit') or '–'})",
            res.config.get("protocol", "–"), ", ".join(map(str, env.get("load_average_start") or
                                                          ["–"])),
            env.get("created", "–"), "yes" if res.complete else "**no (partial)**",
        ])
    lines = ["## Machines", ""]
    lines += _table(["file", "machine", "device", "threads", "driver", "CUDA", "torch",
                     "cosmobench (commit)", "protocol", "load avg at start", "created",
                     "complete"], rows)
    peaks, below = [], []
    for res in results:
        for key, p in sorted(res.peaks.items()):
            tf = p.get("flops_per_s")
            theory = (p.get("theoretical") or {})
            if tf and theory.get("flops_per_s") and tf > theory["flops_per_s"]:
                meas, peak = _apart(tf / 1e12, theory["flops_per_s"] / 1e12)
                below.append(f"- `{Path(res.source).name if res.source else '?'}` {key}: "
                             f"measured {meas} > theoretical {peak} TFLOP/s "
                             f"(+{100 * (tf / theory['flops_per_s'] - 1):.1f} %; "
                             f"{theory.get('source', '?')})")
            if p.get("roofline"):
                how = ", ".join(f"{k} {_fmt(v / 1e12)}" for k, v in p.get("kernels", {}).items())
            else:
                how = f"one {p.get('size', '?')}² matmul (schema 1: not a roofline, no MFU)"
            peaks.append([f"`{Path(res.source).name}`" if res.source else "–",
                          machine_label(res.env), key,
                          _fmt(tf / 1e12) if tf else p.get("error", "–"), how,
                          _fmt(theory["flops_per_s"] / 1e12) if theory.get("flops_per_s")
                          else "–", theory.get("source", "–")])
    if peaks:
        lines += ["Roofline measured in the same run (best of the kernels, TFLOP/s; MFU divides "
                  "by it) next to the theoretical peak:", ""]
        lines += _table(["file", "machine", "precision", "roofline TFLOP/s", "kernels",
                         "theoretical TFLOP/s", "theory from"], peaks)
    if below:
        lines += ["**Theoretical peak below the measured roofline**: the clock it was computed "
                  "from is below the one the cores ran at (a boost clock the machine does not "
                  "report): that peak is too low, and the MFU against it too high, to trust:", "",
                  *below, ""]
    over = [f"- `{Path(res.source).name if res.source else '?'}` {r.workload} {r.mode} "
            f"{r.size_name}={r.size}: MFU {r.summary(res.peaks)['mfu']:.2f}"
            for res in results for r in res.records
            if r.status == "ok" and r.summary(res.peaks).get("mfu_above_roofline")]
    if over:
        lines += ["**Instrument error: steps faster than the measured roofline (MFU > 1); "
                  "their MFU is not to be trusted:**", "", *over, ""]
    return lines


def _axis_table(workload: str, series: list[Series], reference: dict[str, Any] | None
                ) -> list[str]:
    section, xkey, ykey, title, xlabel, ylabel = REFERENCE_SECTIONS[workload]
    mine = [s for s in series if s.workload == workload]
    ref = (reference or {}).get(section)
    if not mine and not ref:
        return []
    sizes = sorted({int(x) for x in (ref or {}).get(xkey, [])} |
                   {x for s in mine for x in s.points})
    ref_t = dict(zip(ref[xkey], ref["gpu_s"], strict=True)) if ref else {}
    ref_i = dict(zip(ref[xkey], ref["ipu_s"], strict=True)) if ref else {}
    header = [xlabel] + (["paper V100", "paper IPU"] if ref else []) + [s.label for s in mine]
    rows, ratio_rows = [], []
    for x in sizes:
        row: list[Any] = [x] + ([_fmt(ref_t.get(x)), _fmt(ref_i.get(x))] if ref else [])
        rrow: list[Any] = [x] + ([_fmt(ref_t[x] / ref_i[x]) if x in ref_t else "–"] if ref else [])
        for s in mine:
            rec = s.points.get(x)
            if rec is None:
                row.append("")
                rrow.append("")
                continue
            if rec.status != "ok":
                row.append(rec.status)
                rrow.append("")
                continue
            y = rec.summary(s.peaks).get("median_ms") / 1e3 if ykey == "median_s" else \
                rec.summary(s.peaks).get(ykey)
            mark = "†" if rec.summary(s.peaks).get("s_per_100_epochs_derived") else ""
            row.append(_fmt(y) + mark)
            rrow.append(_fmt(y / ref_i[x]) if ref_i.get(x) and y else "–")
        rows.append(row)
        ratio_rows.append(rrow)
    lines = [f"## {title}", "", f"{ylabel}; † derived from the median step time "
             "(100 × 8,000 / batch × t_step), not a timed 100 epochs." if ykey ==
             "s_per_100_epochs" else f"{ylabel}.", ""]
    lines += _table(header, rows)
    if ref:
        keep = [k for k, s in enumerate(mine) if s.ok()]  # series with a measured point
        ratio_rows = [r[:2] + [r[2 + k] or "–" for k in keep] for r in ratio_rows]
        lines += ["Speed ratio R = t / t(paper IPU) (the paper's R = t_GPU / t_IPU; "
                  "R < 1: faster than the IPU):", ""]
        lines += _table([xlabel, "paper V100"] + [mine[k].label for k in keep], ratio_rows)
    return lines


def _details(series: list[Series]) -> list[str]:
    lines = ["## Details of every series", ""]
    for s in series:
        rows = []
        for size, rec in sorted(s.points.items()):
            if rec.status != "ok":
                continue
            sm = rec.summary(s.peaks)
            rows.append([size, sm.get("median_ms"), sm.get("iqr_pct"), sm.get("min_ms"),
                         sm.get("images_per_s"), sm.get("tflops_per_s"),
                         100 * sm["mfu"] if sm.get("mfu") else None,
                         rec.peak_memory_bytes / 2**20 if rec.peak_memory_bytes else None,
                         sm.get("j_per_image"), sm.get("blocks"),
                         "⚠" if sm.get("iqr_warning") else ""])
        if not rows:
            continue
        unit = "ms/call" if s.workload in ("generate", "simulate") else "ms/step"
        kinds = {rec.memory_kind for rec in s.points.values()}
        growth = RSS_GROWTH in kinds
        memory = ("RSS growth MiB" if growth else
                  "RSS peak MiB" if "rss_high_water" in kinds else "peak MiB")  # schema 1
        lines += [f"### {s.workload} — {s.label}", ""]
        if growth:
            lines += [f"RSS growth: the {RSS_GROWTH_NOTE}.", ""]
        lines += _table([s.points[next(iter(s.points))].size_name, f"median {unit}", "IQR %",
                         f"min {unit}", "images/s", "TFLOP/s", "MFU %", memory, "J/image",
                         "blocks", "IQR>10%"], rows)
    return lines


def _failures(series: list[Series]) -> list[str]:
    rows = [[s.machine, s.workload, s.mode, size, rec.status, rec.reason or ""]
            for s in series for size, rec in sorted(s.points.items()) if rec.status != "ok"]
    if not rows:
        return []
    return ["## Points not measured", ""] + _table(
        ["machine", "workload", "mode", "size", "status", "reason"], rows)


def _max_batch(results: list[Results]) -> list[str]:
    rows = [[machine_label(r.env), m["workload"], m["mode"], m.get("largest"), m.get("status"),
             m.get("reason") or ""] for r in results for m in r.max_batch]
    if not rows:
        return []
    return ["## Largest batch that fits", ""] + _table(
        ["machine", "workload", "mode", "largest batch", "search ended", "why"], rows)


def _pooling(series: list[Series]) -> list[str]:
    """What was pooled and what was kept apart: only like with like is merged."""
    apart = kept_apart(series)
    pooled = [f"{s.workload} — {s.label}: pooled from {len(s.sources)} files "
              f"({', '.join(f'`{Path(p).name}`' for p in s.sources)})"
              for s in series if len(s.sources) > 1]
    if not apart and not pooled:
        return []
    lines = ["## Series pooled and kept apart", "",
             "Records are pooled only when machine, workload, mode, precision, protocol and "
             "data source all agree; peak memory is then the largest of the runs.", ""]
    return lines + [f"- {t}" for t in pooled + apart] + [""]


def format_report(results: list[Results], reference: dict[str, Any] | None,
                  figures: list[Path]) -> str:
    """The Markdown report (see the module docstring)."""
    series = merge_series(results)
    lines = ["# cosmobench: benchmark comparison", "",
             "Timings measured by `cosmobench bench`, in the format of Arcelin (2021), "
             "*Comparison of Graphcore IPUs and Nvidia GPUs for cosmology applications* "
             "(arXiv:2106.02465), whose V100 and IPU numbers are overlaid"
             + (" (reference: " + reference.get("source", "?") + ")." if reference else "."),
             ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures] + [""]
    lines += _machines(results)
    lines += _pooling(series)
    for workload in REFERENCE_SECTIONS:
        lines += _axis_table(workload, series, reference)
    lines += _details(series)
    lines += _failures(series)
    lines += _max_batch(results)
    warned = [f"- {s.workload} {s.label} at {size}: IQR {r.summary(s.peaks)['iqr_pct']:.0f} % "
              "of the median" for s in series for size, r in sorted(s.points.items())
              if r.status == "ok" and r.summary(s.peaks).get("iqr_warning")]
    if warned:
        lines += ["## Noisy measurements (IQR > 10 % of the median)", "",
                  "The machine was not quiet; compare these as ratios measured in one run.",
                  ""] + warned + [""]
    return "\n".join(lines)


def compare(paths: list[str | Path], out: str | Path,
            reference: str | Path | None = "arcelin2021") -> Path:
    """Figures and ``report.md`` in ``out`` from results files; returns the report's path.

    Arguments:
        paths: results files written by ``cosmobench bench`` (any machines).
        out: output folder (created).
        reference: ``arcelin2021`` (shipped), a JSON file of that format, or ``None``/``"none"``.
    """
    if not paths:
        raise CosmobenchError("compare needs at least one results file")
    ref = None if reference in (None, "none") else load_reference(reference)
    results = [load_results(p) for p in paths]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = draw_all(merge_series(results), ref, out)
    text = format_report(results, ref, figures)
    report = out / "report.md"
    atomic_write(report, lambda f: f.write(text.encode()))
    return report
