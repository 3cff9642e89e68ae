"""``BenchConfig``: everything that decides what the benchmark measures, stored in results.

Defaults follow Arcelin (2021) §3 and ``docs/benchmarking.md``: batch sizes 2-14 for the
CNN and 2-8 for the BNN, generation of n = 1 ... 5000 galaxies (and more on accelerators),
8,000 training images, 110 epochs of which the first 10 are not timed under the ``paper``
protocol.
"""

from __future__ import annotations

import dataclasses

import torch

from cosmobench.bench.modes import parse_modes
from cosmobench.config import Config
from cosmobench.errors import CosmobenchError, check_choice, check_positive

__all__ = [
    "PAPER_BATCH_SIZES",
    "PAPER_N",
    "PROTOCOLS",
    "WORKLOAD_NAMES",
    "BenchConfig",
]

WORKLOAD_NAMES = ("train-cnn", "train-bnn", "infer-cnn", "generate", "simulate")
PROTOCOLS = ("steady", "paper")
#: The paper's batch sizes (Figures 2 and 3) and generation sizes (Figure 4).
PAPER_BATCH_SIZES = {
    "train-cnn": (2, 4, 8, 10, 12, 14),
    "train-bnn": (2, 4, 6, 8),
    "infer-cnn": (1, 2, 8, 14, 64, 256),
}
PAPER_N = (1, 10, 100, 500, 1000, 5000)
#: Larger generation sizes added on accelerators ("5000 and larger", ``docs/benchmarking.md``).
LARGE_N = (20_000, 50_000)


@dataclasses.dataclass(frozen=True)
class BenchConfig(Config):
    """What the benchmark measures and how.

    Attributes:
        workloads: among train-cnn, train-bnn, infer-cnn, generate, simulate.
        device: torch device string (cpu, cuda, cuda:1 ...).
        modes: among eager, compile, cudagraph, bf16, channels-last and their combinations
            (``+``), or ``all``; a mode the device cannot run is recorded as unsupported, and
            so is one it would only emulate (bf16 on a CPU without bf16 instructions) unless
            named explicitly (it then runs, with a warning).
        batch_sizes: batch sizes of train/infer workloads; ``None``: the paper's.
        n: generation sizes; ``None``: the paper's (plus 20,000 and 50,000 off CPU).
        protocol: ``steady`` (warm-up, synchronised repeats) or ``paper`` (whole epochs).
        repeats: timed blocks per point (steady).
        min_block_s: a steady block repeats the call until it lasts this long (seconds).
        epochs, untimed_epochs, n_train: the paper protocol (110, 10, 8,000); ``n_train`` is
            also the data-set size weighting the BNN's KL and the "100 epochs" axis.
        data: a data store (``cosmobench simulate`` output) to read batches from, instead of
            synthetic tensors -- the same step, loading included.
        max_batch: also search the largest batch that fits in memory (train/infer).
        max_batch_limit: stop the search there.
        sim_galaxies: galaxies per timed call of the ``simulate`` workload.
        threads: torch intra-op threads; ``None``: torch's default.
        seed: seed of the synthetic data and model initialisation.
        budget_s: wall-clock limit of the whole run, peak measurement included; a point
            that cannot finish inside what is left is cut and recorded as ``skipped``
            (``None``: no budget).
        warmup_max_s: cap on each point's warm-up.
    """

    workloads: tuple[str, ...] = ("train-cnn",)
    device: str = "cpu"
    modes: tuple[str, ...] = ("eager",)
    batch_sizes: tuple[int, ...] | None = None
    n: tuple[int, ...] | None = None
    protocol: str = "steady"
    repeats: int = 10
    min_block_s: float = 0.05
    epochs: int = 110
    untimed_epochs: int = 10
    n_train: int = 8000
    data: str | None = None
    max_batch: bool = False
    max_batch_limit: int = 4096
    sim_galaxies: int = 32
    threads: int | None = None
    seed: int = 0
    budget_s: float | None = None
    warmup_max_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.workloads:
            raise CosmobenchError(f"give at least one workload among {', '.join(WORKLOAD_NAMES)}")
        for w in self.workloads:
            check_choice("workload", w, WORKLOAD_NAMES)
        check_choice("protocol", self.protocol, PROTOCOLS)
        parse_modes(self.modes)  # validates
        for name in ("repeats", "epochs", "n_train", "max_batch_limit", "sim_galaxies"):
            check_positive(name, getattr(self, name))
        check_positive("min_block_s", self.min_block_s, strict=False)
        check_positive("warmup_max_s", self.warmup_max_s)
        if not 0 <= self.untimed_epochs < self.epochs:
            raise CosmobenchError(
                f"untimed_epochs must be >= 0 and < epochs ({self.epochs}); "
                f"got {self.untimed_epochs}"
            )
        for name in ("batch_sizes", "n"):
            values = getattr(self, name)
            if values is not None:
                if not values:
                    raise CosmobenchError(f"{name} must not be empty")
                for v in values:
                    check_positive(name, v)
        if self.threads is not None:
            check_positive("threads", self.threads)
        if self.budget_s is not None:
            check_positive("budget_s", self.budget_s)

    @property
    def explicit_modes(self) -> frozenset[str]:
        """Canonical names of the modes the user named (not reached through ``all``): a mode
        the device only emulates runs when named, with a warning."""
        return frozenset(str(m) for m in parse_modes([t for t in self.modes
                                                      if t.strip().lower() != "all"] or
                                                     ["eager"])
                         if any(t.strip().lower() != "all" for t in self.modes))

    @property
    def mode_list(self) -> tuple[str, ...]:
        """Canonical mode names, ``all`` expanded."""
        return tuple(str(m) for m in parse_modes(self.modes))

    def sizes_for(self, workload: str, device: torch.device) -> tuple[int, ...]:
        """Batch sizes (train/infer), n (generate) or galaxies per call (simulate)."""
        if workload == "generate":
            if self.n is not None:
                return self.n
            return PAPER_N if device.type == "cpu" else PAPER_N + LARGE_N
        if workload == "simulate":
            return (self.sim_galaxies,)
        return self.batch_sizes if self.batch_sizes is not None else PAPER_BATCH_SIZES[workload]


