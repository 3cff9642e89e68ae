"""Short measurements that choose how to train on this machine, before a long run.

* :func:`time_threads` -- how fast a training step runs at each of several torch thread
  counts, timed in interleaved rounds (so that a drift of a shared machine's speed hits
  every count alike); :func:`choose_threads` sets the faster of one thread and every
  core (``cosmobench train --threads -1`` on the run's own step), and
  ``benchmarks/threads.py`` tabulates it for the paper's networks (:func:`paper_step`);
* :func:`fastest_threads` -- the same choice for the paper's CNN, eager (on a loaded
  machine one thread often wins, since the threads of an oversubscribed pool wait on each
  other);
* :func:`bf16_check` -- does bf16 autocast leave the CNN's loss unchanged, and is it faster?
  Mixed precision (Micikevicius et al. 2018, arXiv:1710.03740; bf16: Kalamkar et al. 2019,
  arXiv:1905.12322) is taken only when both hold.

Both time with :func:`cosmobench.train.make_train_step`, the step training runs.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "bf16_check",
    "choose_threads",
    "fastest_threads",
    "paper_step",
    "time_threads",
    "usable_cores",
]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity masks (macOS, Windows)
        return os.cpu_count() or 1


def time_threads(
    step: Callable[[], object],
    counts: Sequence[int],
    *,
    rounds: int = 3,
    steps: int = 2,
) -> dict[int, float]:
    """Steps per second of ``step`` at each torch thread count of ``counts``.

    One untimed call per count first (one-off work: oneDNN primitives, allocator pools),
    then ``rounds`` rounds, each timing ``steps`` calls at every count in turn, the order
    reversed every other round; a count's rate is from its median call. Torch's thread
    count is restored afterwards. ``step`` must tolerate being called repeatedly (a copy
    of the model, not the one being trained: the calls train it).
    """
    counts = sorted({int(c) for c in counts})
    if not counts or counts[0] < 1:
        raise ValueError(f"thread counts must be >= 1; got {list(counts)}")
    before = torch.get_num_threads()
    times: dict[int, list[float]] = {c: [] for c in counts}
    try:
        for c in counts:
            torch.set_num_threads(c)
            step()
        for r in range(rounds):
            for c in counts if r % 2 == 0 else counts[::-1]:
                torch.set_num_threads(c)
                for _ in range(steps):
                    t0 = time.perf_counter()
                    step()
                    times[c].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return {c: 1.0 / statistics.median(t) for c, t in times.items()}


def paper_step(net: str, batch: int, precision: str = "fp32") -> Callable[[], object]:
    """One training step (``make_train_step``, eager) of the paper's ``net`` (``cnn`` or
    ``bnn``) at its initial weights (seed 0) on a fixed synthetic batch, as a callable."""
    from cosmobench.models import build_model
    from cosmobench.train.step import make_optimizer, make_train_step

    torch.manual_seed(0)
    model = build_model(net, {})
    step = make_train_step(model, make_optimizer(model), n_train=10_000, precision=precision)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 6, 64, 64, generator=g)
    y = 0.1 * torch.randn(batch, 3, generator=g)
    return lambda: step(x, y)


def choose_threads(step: Callable[[], object]) -> dict[str, Any]:
    """Time ``step`` at one thread and at every usable core (:func:`time_threads`), set
    torch's thread count to the faster; returns it and the rates (steps/s by count)."""
    rates = time_threads(step, (1, usable_cores()))
    best = max(rates, key=rates.get)
    torch.set_num_threads(best)
    return {"threads": best, "steps_per_s": {str(k): round(v, 3) for k, v in rates.items()}}


def fastest_threads(batch_size: int, threads: int = 0) -> dict[str, Any]:
    """Set torch's thread count: ``threads`` if given, else whichever of 1 and every usable
    core steps the paper's CNN (eager fp32, ``batch_size`` images) faster
    (:func:`choose_threads`); returns what was chosen and how."""
    if threads:
        torch.set_num_threads(threads)
        return {"threads": threads, "how": "--threads"}
    chosen = choose_threads(paper_step("cnn", batch_size))
    return {"threads": chosen["threads"], "how": "measured (eager CNN steps/s)",
            "steps_per_s": chosen["steps_per_s"]}


def bf16_check(
    train: Path,
    *,
    val_fraction: float,
    batch_size: int,
    seed: int = 0,
    n: int = 512,
    steps: int = 40,
) -> dict[str, Any]:
    """Does bf16 autocast keep the CNN's loss unchanged, and is it faster?

    Same initial weights, same batches of ``n`` training galaxies of the store ``train``
    (the training split of :func:`cosmobench.train.data.split_by_index`, arcsinh-scaled as in
    training): the loss at initialisation under fp32 and bf16, then ``steps`` optimisation
    steps in each precision and the loss of the result (evaluated in fp32 both times).
    ``bf16_ok``: the losses agree within 1 % at initialisation and 5 % after training, and
    the bf16 step is more than 5 % faster.
    """
    from cosmobench.models import build_model
    from cosmobench.store import open_dataset
    from cosmobench.train.data import split_by_index
    from cosmobench.train.scaling import ArcsinhScaler
    from cosmobench.train.step import autocast, make_optimizer, make_train_step

    ds = open_dataset(train)
    pos = split_by_index(ds.column("index"), val_fraction)[0][:n]
    n = len(pos)
    x = ds.tensor("noisy", index=pos)
    x = ArcsinhScaler.fit(x)(x)
    y = torch.from_numpy(np.stack([ds.column(c)[pos] for c in ("e1", "e2", "redshift")], 1))
    torch.manual_seed(seed)
    init = build_model("cnn", {})
    b = batch_size

    @torch.no_grad()
    def mean_loss(model: torch.nn.Module, precision: str) -> float:
        model.eval()
        with autocast("cpu", precision):
            out = (
                sum(
                    float(model.loss(x[i : i + b], y[i : i + b], n)) * len(x[i : i + b])
                    for i in range(0, n, b)
                )
                / n
            )
        model.train()
        return out

    res: dict[str, Any] = {"n": n, "steps": steps, "batch_size": b}
    res["init_loss"] = {p: mean_loss(init, p) for p in ("fp32", "bf16")}
    for p in ("fp32", "bf16"):
        model = copy.deepcopy(init)
        step = make_train_step(model, make_optimizer(model), n_train=n, precision=p)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
        step(x[order[:b]], y[order[:b]])  # warm-up
        t0 = time.monotonic()
        for k in range(steps):
            idx = order[(k * b) % (n - b) :][:b]
            step(x[idx], y[idx])
        res[f"{p}_step_s"] = (time.monotonic() - t0) / steps
        res[f"{p}_trained_loss"] = mean_loss(model, "fp32")
    i32, i16 = res["init_loss"]["fp32"], res["init_loss"]["bf16"]
    t32, t16 = res["fp32_trained_loss"], res["bf16_trained_loss"]
    res["init_rel_diff"] = abs(i16 - i32) / abs(i32)
    res["trained_rel_diff"] = abs(t16 - t32) / max(abs(t32), 1e-3)
    res["speedup"] = res["fp32_step_s"] / res["bf16_step_s"]
    res["bf16_ok"] = bool(
        res["init_rel_diff"] < 0.01 and res["trained_rel_diff"] < 0.05 and res["speedup"] > 1.05
    )
    return res
