"""The timed workloads: what one call is, how many images it handles, how many FLOPs.

Each workload turns ``(mode, size)`` into a ready-to-time :class:`Case`:

* ``train-cnn`` / ``train-bnn`` -- one optimisation step of the shape CNN / BNN, built by the
  trainer's own :func:`cosmobench.train.step.make_train_step` (the step ``cosmobench train``
  runs, not a copy), Adam from :func:`~cosmobench.train.step.make_optimizer`.
* ``infer-cnn`` -- a forward pass of the shape CNN in inference mode.
* ``generate`` and ``simulate`` -- in :mod:`cosmobench.bench.generation`.

Data are synthetic by default (a fixed batch on the device, as nanoGPT's ``bench.py``
separates loading from compute); with ``--data`` each call first gathers its batch from the
store held in host memory and copies it to the device -- the same step, loading included.
The ``paper`` protocol runs whole epochs over ``n_train`` images held in host memory, shuffled
every epoch (Keras ``fit``), each batch copied to the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from cosmobench.bench.modes import Mode, capture_step, mode_step
from cosmobench.devices import autocast, inductor_options
from cosmobench.errors import CosmobenchError

__all__ = [
    "BuildContext",
    "Case",
    "InferWorkload",
    "TrainWorkload",
    "Workload",
    "count_flops",
]


@dataclasses.dataclass
class BuildContext:
    """What every workload needs to build a case: device, seed, data, protocol settings."""

    device: torch.device
    seed: int = 0
    n_train: int = 8000
    protocol: str = "steady"
    data: str | None = None
    _cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    def host_data(self, columns: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        """Images and targets of ``data`` in host memory, scaled as the trainer scales them."""
        key = ",".join(columns)
        if key not in self._cache:
            self._cache[key] = _load_store(self.data, columns, self.n_train)
        return self._cache[key]


@dataclasses.dataclass
class Case:
    """A built point, ready to time.

    Attributes:
        call: one call (one training step, one forward, one generation of n galaxies).
        items_per_call: images handled by one call.
        flops_per_call: FLOPs of one call (``torch.utils.flop_counter``), ``None`` if unknown.
        events: time with CUDA events (the call replays a CUDA graph).
        run_epoch: ``paper`` protocol: one whole epoch (argument: epoch index).
        steps_per_epoch: calls in one epoch.
        info: extra facts stored in the record (parameters, graph capture ...).
        cleanup: called once the point is timed (temporary files ...).
    """

    call: Callable[[], Any]
    items_per_call: int
    flops_per_call: float | None = None
    events: bool = False
    run_epoch: Callable[[int], None] | None = None
    steps_per_epoch: int | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    cleanup: Callable[[], None] | None = None


class Workload:
    """Base class: a named workload sweeping a size (batch size, n ...) over modes."""

    name = "workload"
    size_name = "batch_size"
    #: The workload has a notion of "100 epochs of 8,000 images" (training).
    epochs_axis = False

    def unsupported(self, mode: Mode, device: torch.device) -> str | None:
        """Why this workload cannot run ``mode`` on ``device`` (``None``: it can)."""
        return None

    def build(self, mode: Mode, size: int, ctx: BuildContext) -> Case:
        """Build the case of ``size`` (batch size or n) in ``mode``."""
        raise NotImplementedError


def count_flops(fn: Callable[[], Any]) -> float | None:
    """FLOPs of one call of ``fn`` counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Matrix products and convolutions (forward and backward) are counted, elementwise work
    is not -- the convention of MFU (Chowdhery et al. 2022, Appendix B).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    total = counter.get_total_flops()
    return float(total) if total else None


def _load_store(path: str | None, columns: tuple[str, ...], n: int) -> tuple[Tensor, Tensor]:
    """The first ``n`` training galaxies of ``path`` as the trainer prepares them (finite
    ones, scaled by an input scaling fitted on them: the training split only), read without
    loading the rest of the store (:func:`cosmobench.train.sources.load_shape_data`)."""
    if path is None:
        raise CosmobenchError("no data store given")
    import warnings

    from cosmobench.train.sources import load_shape_data

    d = load_shape_data(path, columns, drop_nonfinite=True, max_train=n)
    if "dropped_nonfinite" in d.report:
        dropped = d.report["dropped_nonfinite"]
        warnings.warn(f"{path}: left out {dropped['galaxies']} of {dropped['of']} galaxies "
                      "with NaN or infinite values", stacklevel=2)
    return d.train.x.contiguous(), d.train.y.contiguous()


def _synthetic(n: int, targets: int, image: tuple[int, int, int], seed: int) -> tuple[Tensor, ...]:
    """Host tensors shaped like scaled images and (e1, e2, z) labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *image, generator=g)
    y = torch.rand(n, targets, generator=g) - 0.5  # e1, e2 in (-0.5, 0.5)
    if targets == 3:
        y[:, 2] = 3 * (y[:, 2] + 0.5)  # z in (0, 3)
    return x, y


class _ShapeWorkload(Workload):
    """Shared parts of the shape-network workloads."""

    def __init__(self, name: str, *, bayesian: bool, model_config: dict | None = None) -> None:
        self.name = name
        self.bayesian = bayesian
        self.model_config = dict(model_config or {})

    def make_model(self) -> nn.Module:
        """The paper's network (``ShapeConfig`` defaults), or the configured variant."""
        from cosmobench.models import ShapeConfig, ShapeNet

        return ShapeNet(ShapeConfig(bayesian=self.bayesian, **self.model_config))

    def _pool(self, model: nn.Module, ctx: BuildContext, n: int) -> tuple[Tensor, Tensor]:
        cfg = model.config
        if ctx.data is not None:
            return ctx.host_data(tuple(cfg.columns))
        shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
        return _synthetic(n, len(cfg.targets), shape, ctx.seed + 1)


class TrainWorkload(_ShapeWorkload):
    """One optimisation step of the shape CNN or BNN (Arcelin 2021, §3.1-3.2)."""

    epochs_axis = True

    def build(self, mode: Mode, size: int, ctx: BuildContext) -> Case:
        """Model, Adam and the trainer's step; compiled or captured as ``mode`` says."""
        from cosmobench.train.step import make_optimizer, make_train_step

        dev, batch = ctx.device, size
        torch.manual_seed(ctx.seed)
        model = self.make_model().to(dev).train()
        fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
        opt = make_optimizer(model, capturable=mode.cudagraph)
        step = make_train_step(  # lays the model out channels-last when the mode says so
            model,
            opt,
            n_train=ctx.n_train,
            precision=mode.precision,
            channels_last=mode.channels_last,
        )

        pool_n = min(ctx.n_train, 1024) if ctx.protocol == "paper" else batch
        hx, hy = self._pool(model, ctx, max(pool_n, batch))
        x = hx[:batch].to(dev).contiguous(memory_format=fmt)  # (B, 6, 64, 64) static input
        y = hy[:batch].to(dev)  # (B, T)
        flops = count_flops(lambda: step(x, y))  # one eager step (also a first warm-up)

        info: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
        step = mode_step(step, mode, opt)  # what `cosmobench train --mode` trains with
        if mode.cudagraph:
            step(x, y)  # capture now, not in the first timed call
            info["cuda_graph"] = "whole step: forward, backward, Adam, weight noise"

        def run() -> Tensor:
            return step(x, y)

        loader = _Loader(hx, hy, x, y, batch, ctx.seed)
        call = run if ctx.data is None else loader.wrap(run)
        steps = max(1, ctx.n_train // batch)  # whole batches (drop_last)

        def run_epoch(epoch: int) -> None:
            for idx in loader.epoch_order(epoch, steps):
                loader.load(idx)
                run()

        return Case(
            call=call, items_per_call=batch, flops_per_call=flops, events=mode.cudagraph,
            run_epoch=run_epoch, steps_per_epoch=steps, info=info,
        )


class InferWorkload(_ShapeWorkload):
    """A forward pass of the shape network, in inference mode (predictions at scale)."""

    def build(self, mode: Mode, size: int, ctx: BuildContext) -> Case:
        """Model in eval mode; forward compiled or captured as ``mode`` says."""
        dev, batch = ctx.device, size
        torch.manual_seed(ctx.seed)
        fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
        model = self.make_model().to(dev).eval().to(memory_format=fmt)
        hx, hy = self._pool(model, ctx, batch)
        x = hx[:batch].to(dev).contiguous(memory_format=fmt)
        cast = autocast(dev.type, mode.precision)

        def forward(inp: Tensor) -> Tensor:
            with torch.inference_mode(), cast:
                loc, scale_tril = model(inp)  # (B, T), (B, T, T)
            return loc

        flops = count_flops(lambda: forward(x))
        options = inductor_options(dev.type) or None
        fn = torch.compile(forward, options=options) if mode.compile else forward
        info: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
        if mode.cudagraph:
            run = capture_step(fn, (x,)).replay
        else:
            def run() -> Tensor:
                return fn(x)
        loader = _Loader(hx, hy, x, None, batch, ctx.seed)
        call = run if ctx.data is None else loader.wrap(run)
        return Case(call=call, items_per_call=batch, flops_per_call=flops,
                    events=mode.cudagraph, info=info)


class _Loader:
    """Feeds batches from host memory into the static device buffers of a step."""

    def __init__(self, hx: Tensor, hy: Tensor, x: Tensor, y: Tensor | None, batch: int,
                 seed: int) -> None:
        self.hx, self.hy, self.x, self.y, self.batch = hx, hy, x, y, batch
        self.seed = seed
        self.cursor = 0

    def load(self, idx: Tensor) -> None:
        """Gather rows ``idx`` on the host and copy them into the device buffers."""
        self.x.copy_(self.hx[idx], non_blocking=True)
        if self.y is not None:
            self.y.copy_(self.hy[idx], non_blocking=True)

    def wrap(self, run: Callable[[], Any]) -> Callable[[], Any]:
        """``run`` preceded by loading the next batch in order (steady protocol with data)."""
        n = len(self.hx)

        def call() -> Any:
            idx = torch.arange(self.cursor, self.cursor + self.batch) % n
            self.cursor = (self.cursor + self.batch) % n
            self.load(idx)
            return run()

        return call

    def epoch_order(self, epoch: int, steps: int) -> list[Tensor]:
        """Batches of one epoch: a fresh permutation of the pool, cycled if it is small."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        n, need = len(self.hx), steps * self.batch
        order = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-need // n))])
        return list(order[:need].view(steps, self.batch))
