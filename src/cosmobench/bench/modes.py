"""Execution modes of a benchmarked step: eager, compile, CUDA graph, bf16, channels-last.

A mode is a ``+``-joined set of parts (``"cudagraph+bf16"``). :func:`parse_mode` validates
and normalises it into a frozen :class:`Mode`; :func:`unsupported_reason` says why a mode
cannot run on a device, so the runner records it as ``unsupported`` instead of skipping it.

The CUDA-graph mode captures one whole optimisation step -- forward, backward, optimiser and
the BNN's weight noise -- following PyTorch's "whole network capture" recipe
(https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture): warm up on a side
stream, set gradients to ``None`` so that backward allocates them from the graph's private
pool, capture once, then replay with inputs copied into static buffers. Adam must be built
with ``capturable=True``; random numbers drawn inside the graph (the variational layers'
noise) advance with every replay, as the CUDA generator is graph-safe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from cosmobench.errors import CosmobenchError

__all__ = [
    "ALL_MODES",
    "PARTS",
    "CapturedStep",
    "Mode",
    "GraphedStep",
    "capture_step",
    "mode_step",
    "not_native_reason",
    "parse_mode",
    "parse_modes",
    "supported_modes",
    "unsupported_reason",
]

PARTS = ("eager", "compile", "cudagraph", "bf16", "channels-last")
#: Every mode and every combination that makes sense, in display order (``--modes all``).
ALL_MODES = (
    "eager",
    "bf16",
    "channels-last",
    "channels-last+bf16",
    "compile",
    "compile+bf16",
    "compile+channels-last",
    "compile+channels-last+bf16",
    "cudagraph",
    "cudagraph+bf16",
    "compile+cudagraph",
    "compile+cudagraph+bf16",
)


@dataclasses.dataclass(frozen=True)
class Mode:
    """How a step is executed; ``str(mode)`` is its canonical name (e.g. ``cudagraph+bf16``)."""

    compile: bool = False
    cudagraph: bool = False
    bf16: bool = False
    channels_last: bool = False

    @property
    def precision(self) -> str:
        """``"bf16"`` (autocast) or ``"fp32"``."""
        return "bf16" if self.bf16 else "fp32"

    def __str__(self) -> str:
        parts = [
            name
            for name, on in (
                ("compile", self.compile),
                ("cudagraph", self.cudagraph),
                ("channels-last", self.channels_last),
                ("bf16", self.bf16),
            )
            if on
        ]
        return "+".join(parts) or "eager"


def parse_mode(text: str) -> Mode:
    """Parse ``"eager"``, ``"bf16"``, ``"compile+bf16"`` ... into a :class:`Mode`.

    ``eager`` stands alone; ``compile+cudagraph`` compiles the step (inductor, default
    mode) and captures the compiled step whole in one CUDA graph.
    """
    parts = [p.strip().lower().replace("_", "-") for p in text.split("+") if p.strip()]
    if not parts:
        raise CosmobenchError(f"mode must be built from {', '.join(PARTS)}; got {text!r}")
    for p in parts:
        if p not in PARTS:
            raise CosmobenchError(
                f"mode parts must be among {', '.join(PARTS)} (joined with '+'); got {p!r} "
                f"in {text!r}"
            )
    if len(set(parts)) != len(parts):
        raise CosmobenchError(f"mode {text!r} repeats a part")
    if "eager" in parts and len(parts) > 1:
        raise CosmobenchError(f"mode 'eager' cannot be combined; got {text!r}")
    return Mode(
        compile="compile" in parts,
        cudagraph="cudagraph" in parts,
        bf16="bf16" in parts,
        channels_last="channels-last" in parts,
    )


def parse_modes(texts: tuple[str, ...] | list[str]) -> tuple[Mode, ...]:
    """Parse a list of modes; ``all`` expands to :data:`ALL_MODES`; duplicates dropped."""
    out: list[Mode] = []
    for text in texts:
        for mode in ALL_MODES if text.strip().lower() == "all" else (text,):
            m = parse_mode(mode)
            if m not in out:
                out.append(m)
    if not out:
        raise CosmobenchError(f"at least one mode is needed; allowed: all, {', '.join(ALL_MODES)}")
    return tuple(out)


def unsupported_reason(mode: Mode, device: torch.device) -> str | None:
    """Why ``mode`` cannot run on ``device`` at all (``None`` when it can)."""
    if mode.cudagraph and device.type != "cuda":
        return (
            f"CUDA graphs need a CUDA device; {device.type} has none "
            "(use compile or eager on this device)"
        )
    if mode.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU does not support bf16 (needs compute capability >= 8.0); use fp32"
    if mode.compile and not _compile_available(device):
        return f"torch.compile has no backend for {device.type} in this torch build"
    return None


def not_native_reason(mode: Mode, device: torch.device) -> str | None:
    """Why ``mode`` would run on ``device`` only emulated (bf16 on a CPU without bf16
    instructions, :mod:`cosmobench.bench.hardware`); ``None`` when it runs natively."""
    if mode.bf16 and device.type == "cpu":
        from cosmobench.bench.hardware import cpu_info

        return cpu_info().bf16_reason()
    return None


def supported_modes(modes: tuple[str, ...] | list[str], device: torch.device) -> tuple[str, ...]:
    """The modes among ``modes`` that ``device`` runs natively (what ``demo`` picks)."""
    return tuple(
        str(m) for m in parse_modes(modes)
        if unsupported_reason(m, device) is None and not_native_reason(m, device) is None
    )


def _compile_available(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda", "xpu", "mps") and hasattr(torch, "compile")


@dataclasses.dataclass
class CapturedStep:
    """A whole step captured in a CUDA graph: ``replay()`` reruns it on the static buffers.

    Attributes:
        graph: the captured ``torch.cuda.CUDAGraph``.
        static_inputs: the tensors the graph reads; copy new data into them before replaying.
        static_output: what the step returned during capture, refreshed by every replay.
    """

    graph: Any
    static_inputs: tuple[torch.Tensor | None, ...]
    static_output: Any

    def replay(self) -> Any:
        """Rerun the captured step; returns the static output (no host synchronisation)."""
        self.graph.replay()
        return self.static_output


def capture_step(
    step: Callable[..., Any],
    static_inputs: tuple[torch.Tensor | None, ...],
    *,
    warmup: int = 3,
    before_capture: Callable[[], None] | None = None,
) -> CapturedStep:
    """Capture ``step(*static_inputs)`` whole in a CUDA graph (PyTorch's recipe).

    Arguments:
        step: the function to capture, e.g. one training step (forward, backward, Adam with
            ``capturable=True``); it must not synchronise with the host.
        static_inputs: CUDA tensors the step reads (``None`` allowed, passed through).
        warmup: eager calls on a side stream before capture, so that lazily-created state
            (optimiser moments, cuDNN workspaces, autograd buffers) exists before capturing.
        before_capture: called just before capture, e.g. ``optimizer.zero_grad(set_to_none=
            True)`` so that backward allocates gradients from the graph's private pool.

    Returns:
        A :class:`CapturedStep`.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step(*static_inputs)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    if before_capture is not None:
        before_capture()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step(*static_inputs)
    return CapturedStep(graph=graph, static_inputs=static_inputs, static_output=out)


class GraphedStep:
    """A training step replayed from CUDA graphs, one captured per input shape.

    The first call with a new shape captures ``step`` whole (:func:`capture_step`) with the
    call's own tensors as the static buffers; later calls copy their batch into those
    buffers (nothing is copied when they are the buffers themselves, as in the benchmark)
    and replay. The optimiser must be capturable (``make_optimizer(capturable=True)``).
    """

    def __init__(self, step: Callable[..., Any], optimizer: torch.optim.Optimizer) -> None:
        if not all(g.get("capturable") for g in optimizer.param_groups):
            raise CosmobenchError("a CUDA-graph step needs an optimiser built with "
                                  "capturable=True")
        self.step, self.optimizer = step, optimizer
        self.graphs: dict[tuple, CapturedStep] = {}

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None) -> Any:
        key = (tuple(x.shape), None if y is None else tuple(y.shape))
        captured = self.graphs.get(key)
        if captured is None:
            captured = capture_step(
                self.step, (x, y),
                before_capture=lambda: self.optimizer.zero_grad(set_to_none=True),
            )
            self.graphs[key] = captured
            return captured.replay()
        sx, sy = captured.static_inputs
        if x is not sx:
            sx.copy_(x, non_blocking=True)
        if y is not None and y is not sy:
            sy.copy_(y, non_blocking=True)
        return captured.replay()


def mode_step(step: Callable[..., Any], mode: Mode | str,
              optimizer: torch.optim.Optimizer | None = None) -> Callable[..., Any]:
    """The step as ``mode`` runs it -- what ``cosmobench bench`` times and what
    ``cosmobench train --mode`` trains with: eager as is; ``compile``:
    ``torch.compile(step, dynamic=False)`` (one graph per batch shape, with the inductor
    options the step carries in ``step.compile_options``, see
    :func:`cosmobench.train.step.compile_options`); ``cudagraph``: a :class:`GraphedStep`;
    ``compile+cudagraph``: the compiled step captured in CUDA graphs. Precision (bf16) and
    memory format are the step's and the model's business."""
    mode = parse_mode(mode) if isinstance(mode, str) else mode
    if mode.compile:
        options = getattr(step, "compile_options", None) or None
        step = torch.compile(step, dynamic=False, options=options)
    if mode.cudagraph:
        if optimizer is None:
            raise CosmobenchError("a CUDA-graph step needs its optimiser")
        step = GraphedStep(step, optimizer)
    return step
