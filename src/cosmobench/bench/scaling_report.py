"""The scaling report: a projection to 8 GPUs and 64 nodes from the measurements of
:mod:`cosmobench.bench.scaling`, and the Markdown of both (``benchmarks/results/scaling.md``).

The projection rests on the paper's V100 rates (Arcelin 2021, arXiv:2106.02465: CNN training,
Fig. 2; generation, Sect. 3.3), the read rate of one process measured here, and the
bandwidth-optimal ring all-reduce time 2(W-1)/W x bytes / link bandwidth + 2(W-1) x latency
(Patarasuk & Yuan 2009, doi:10.1016/j.jpdc.2008.09.002). docs/scaling.md reads the numbers.
"""

from __future__ import annotations

from typing import Any

from cosmobench.bench.scaling import GALAXY_BYTES, MB, PARAMS

__all__ = ["projection", "scaling_markdown"]


def projection(res: dict[str, Any]) -> dict[str, Any]:
    """Where the time goes at 8 GPUs and 64 nodes, from the numbers measured here and the
    paper's V100 timings (Arcelin 2021, Fig. 2: 442.9 s for 100 epochs of 8,000
    images at batch 14, i.e. 1,806 images/s; CosmoDC2 generation at ~1.5e3 images/s)."""
    v100_train = 100 * 8000 / 442.94  # images/s, CNN, batch 14
    gen_rate = 2.26e9 / (18 * 86400)  # images/s, one V100 ("less than 18 days")
    read_1 = res["read"]["read_MB_per_s_workers_0"]  # decoded MB/s, one process
    out: dict[str, Any] = {
        "v100_train_images_per_s": v100_train,
        "v100_generate_images_per_s": gen_rate,
        "read_MB_per_s_per_process": read_1,
    }
    for gpus, label, link_GBps, lat_us in (
        (8, "8 GPUs (one node, NVLink)", 150.0, 10.0),
        (512, "64 nodes x 8 GPUs (InfiniBand HDR)", 25.0, 5.0),
    ):
        need = gpus * v100_train * GALAXY_BYTES / MB  # MB/s of decoded images
        p: dict[str, Any] = {
            "gpus": gpus,
            "read_MB_per_s_needed": need,
            "loader_processes_needed": need / read_1,
        }
        for kind, params in PARAMS.items():
            size = params * 4
            ring = 2 * (gpus - 1) / gpus * size / (link_GBps * 1e9) + 2 * (gpus - 1) * lat_us * 1e-6
            steps = {b: b / v100_train for b in (2, 14)}
            p[f"allreduce_{kind}_ms"] = ring * 1e3
            p[f"allreduce_{kind}_share_of_step_b14"] = ring / (ring + steps[14])
            p[f"allreduce_{kind}_share_of_step_b2"] = ring / (ring + steps[2])
        p["generate_write_GB_per_s"] = gpus * gen_rate * 2 * GALAXY_BYTES / 1e9
        p["billion_galaxies_hours"] = 1e9 / (gpus * gen_rate) / 3600
        out[label] = p
    return out


def scaling_markdown(res: dict[str, Any], cmd: str) -> str:
    """The Markdown report of a scaling result ``res`` (``machine``, ``train``, ``ddp``,
    ``simulate``, ``generate``, ``read``, ``rss``, ``projection``) made by ``cmd``."""
    m = res["machine"]
    L = [
        f"# Scaling on {m['cpu']} ({m['cores']} cores)",
        "",
        f"Command: `{cmd}`; load average before {m['load_before']:.2f}, after "
        f"{m.get('load_after', float('nan')):.2f}. Made by `benchmarks/scaling.py`.",
        "",
    ]
    if res.get("parts_measured_last"):
        L += [
            f"This command measured {', '.join(res['parts_measured_last'])}; the other "
            "sections are the previous full run's, on the same kind of machine.",
            "",
        ]
    L += [
        "## Streamed vs in-memory training (CNN, images/s after the first epoch)",
        "",
    ]
    if res["train"] and "stream0_images_per_s" in res["train"][0]:
        rounds = res["train"][0].get("repeats", 1)
        L += [
            "Streamed with the windows read in the training process (0 loader workers) and "
            "by one loader process; the three runs of a batch size one after another"
            + (
                f", {rounds} rounds of them: rates are medians over the rounds and each ratio "
                "the median of the rounds' ratios (each round's in brackets)."
                if rounds > 1
                else "."
            ),
            "",
            "| batch | in memory | streamed, 0 workers | / memory | streamed, 1 worker "
            "| / memory |",
            "|---|---|---|---|---|---|",
        ]
        for r in res["train"]:
            each0 = _rounds(r.get("stream0_over_memory_each"))
            each1 = _rounds(r.get("stream_over_memory_each"))
            L.append(
                f"| {r['batch_size']} | {r['memory_images_per_s']:.1f} | "
                f"{r['stream0_images_per_s']:.1f} | {r['stream0_over_memory']:.2f}{each0} | "
                f"{r['stream_images_per_s']:.1f} | {r['stream_over_memory']:.2f}{each1} |"
            )
        means = [
            sum(r[k] for r in res["train"]) / len(res["train"])
            for k in ("stream0_over_memory", "stream_over_memory")
        ]
        L += ["", f"Mean ratio over the batch sizes: {means[0]:.2f} (0 workers), "
              f"{means[1]:.2f} (1 worker)."]  # fmt: skip
    else:  # results of the first version (one loader worker only)
        L += ["| batch | in memory | streamed | streamed / memory |", "|---|---|---|---|"]
        for r in res["train"]:
            L.append(
                f"| {r['batch_size']} | {r['memory_images_per_s']:.1f} | "
                f"{r['stream_images_per_s']:.1f} | {r['stream_over_memory']:.2f} |"
            )
    d = res["ddp"]
    L += [
        "",
        "## Parallel runs",
        "",
        "| what | 1 | 2 | parallel efficiency |",
        "|---|---|---|---|",
        f"| torchrun CNN training, gloo (images/s) | {d['images_per_s']['1']:.1f} | "
        f"{d['images_per_s']['2']:.1f} | {d['efficiency']:.2f} |",
    ]
    s = res["simulate"]
    L.append(
        f"| simulate --workers (galaxies/s) | {s['workers-1']['galaxies_per_s']:.1f} | "
        f"{s['workers-2']['galaxies_per_s']:.1f} | {s['efficiency_workers']:.2f} |"
    )
    L.append(
        f"| simulate --scheduler local (galaxies/s) | "
        f"{s['dask-local-1']['galaxies_per_s']:.1f} | "
        f"{s['dask-local-2']['galaxies_per_s']:.1f} | {s['efficiency_dask']:.2f} |"
    )
    g = res["generate"]
    L.append(
        f"| generate, torchrun ranks (galaxies/s) | {g['ranks-1']['galaxies_per_s']:.1f} "
        f"| {g['ranks-2']['galaxies_per_s']:.1f} | {g['efficiency']:.2f} |"
    )
    r = res["read"]
    L += [
        "",
        "## Store bandwidth",
        "",
        f"Decoded read of `noisy` (LZ4 Blosc): {r['read_MB_per_s_workers_0']:.0f} MB/s in "
        f"one process, {r['read_MB_per_s_workers_1']:.0f} MB/s with 1 loader worker "
        "(its start-up included), "
        f"{r['read_MB_per_s_workers_2']:.0f} MB/s with 2; write (both image arrays, "
        f"compressed): {r['write_MB_per_s']:.0f} MB/s.",
        "",
        "## Peak memory vs store size (one streamed epoch, window 256, 1 worker)",
        "",
        "| galaxies | images (MB) | streamed: main + worker (MB) | in memory (MB) |",
        "|---|---|---|---|",
    ]
    for x in res["rss"]:
        L.append(
            f"| {x['n']} | {x['images_MB']:.0f} | {x['stream_main_MB']:.0f} + "
            f"{x['stream_worker_MB']:.0f} | {x['memory_peak_MB']:.0f} |"
        )
    L += [
        "",
        "The worker's peak RSS counts the pages it shares with the training process since "
        "the fork; what matters is that neither column grows with the store.",
    ]
    p = res["projection"]
    L += [
        "",
        "## Projection (on paper)",
        "",
        f"Rests on: the paper's V100 CNN training rate {p['v100_train_images_per_s']:.0f} "
        f"images/s (batch 14) and generation rate {p['v100_generate_images_per_s']:.0f} "
        f"images/s (CosmoDC2 in 18 days); one image array = {GALAXY_BYTES / 1e3:.0f} kB; "
        f"the read rate of one process measured above; ring all-reduce time "
        "2(W-1)/W x bytes / link + 2(W-1) x latency (NVLink 150 GB/s, 10 us; "
        "InfiniBand HDR 25 GB/s, 5 us).",
        "",
        "| | read needed (MB/s) | loader processes | all-reduce CNN / BNN (ms) | "
        "share of a batch-14 step (CNN / BNN) | share at batch 2 (CNN) | "
        "generation write (GB/s) | 10^9 galaxies (h) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in ("8 GPUs (one node, NVLink)", "64 nodes x 8 GPUs (InfiniBand HDR)"):
        q = p[label]
        L.append(
            f"| {label} | {q['read_MB_per_s_needed']:.0f} | "
            f"{q['loader_processes_needed']:.1f} | {q['allreduce_cnn_ms']:.2f} / "
            f"{q['allreduce_bnn_ms']:.2f} | {q['allreduce_cnn_share_of_step_b14']:.0%} / "
            f"{q['allreduce_bnn_share_of_step_b14']:.0%} | "
            f"{q['allreduce_cnn_share_of_step_b2']:.0%} | "
            f"{q['generate_write_GB_per_s']:.1f} | {q['billion_galaxies_hours']:.1f} |"
        )
    L += ["", "Reading: see docs/scaling.md for what these numbers imply."]
    return "\n".join(L) + "\n"


def _rounds(ratios: list[float] | None) -> str:
    """`` (a, b, ...)``: each round's ratio, when there was more than one round."""
    if not ratios or len(ratios) < 2:
        return ""
    return " (" + ", ".join(f"{x:.2f}" for x in ratios) + ")"
