"""Fast sampling of a zuko masked autoregressive flow: the same function, less overhead.

Sampling a MAF inverts each MADE transform autoregressively (Papamakarios et al. 2017,
arXiv:1705.07057): zuko's ``AutoregressiveTransform._inverse`` runs the whole MADE network
once per feature — 32 passes for a 32-d latent, 8 transforms, 256 passes in all — and builds
new ``Transform`` objects, masks the weights (``mask * weight``) and allocates every tensor on
every pass. :class:`FastMAF` computes exactly the same function with that overhead removed:

* masked weights are multiplied once, in inference mode, and laid out for plain ``addmm``;
* features are permuted into their sampling order, so pass *k* writes one contiguous column;
* hidden units are sorted by the first pass that needs them; pass *k* then multiplies only
  the prefix of units that the feature it determines depends on (≈ k/32 of each layer, so a
  third of the second layer's work on average) and only the two output rows it needs
  (shift and scale) — the other rows are masked to zero in zuko and would be discarded;
* the first layer's pre-activation is updated by one rank-``m`` product per pass (the
  feature just determined) instead of recomputed;
* every buffer is allocated once per batch size and reused (``out=`` and in-place ops), so
  the loop does no allocation and no Python work beyond issuing its ops; that also makes it
  capturable whole in a CUDA graph (:class:`~cosmobench.generate.sampler.GalaxySampler`).

The masked contributions skipped here are exact zeros in zuko's computation, so the result
equals ``flow().transform.inv(z)`` up to floating-point summation order (tested).

Batches of up to 256 on a CPU are instead solved by **Jacobi sweeps** (Song et al. 2021,
"Accelerating feedforward computation via parallel nonlinear equation solving",
arXiv:2002.03629; Wiggers & Hoogeboom 2020, arXiv:2002.09928): every feature is updated at
once from the current guess, ``x ← (y - b(x)) / s(x)``, with the whole MADE network. A
feature's parameters depend only on the features before it, and the masked weights
contribute exact zeros, so after sweep *k* the first *k* features hold their final bits: a
sweep that changes no bit is the exact solution,
reached in at most ``D + 1`` sweeps and in practice far fewer (per transform, 5–8 for the
paper's flow with its initial weights or after the demo's training, 6–16 for one fitted to
strongly chained data: ``benchmarks/results/flow_jacobi.md``). At batch 1 a sweep costs
about what one of the 32 sequential passes costs (the same dozen operators), so the inverse
takes a fraction of the time. A sweep over a larger batch runs the whole network where a
pass runs a prefix of it, but still costs far less than the 32 passes (on 2 Zen 4 cores, a
batch of 100–256 takes about half the time of the passes with the paper's flow, and as much
with the strongly chained one, whose sweeps reach the limit). A transform that has not
settled after ``max_sweeps`` falls back to the sequential passes, which bounds the worst
case. The sweeps, like the passes, write into buffers allocated once per batch size.

The smallest CPU batches (up to 8: one galaxy, a handful) run their sweeps through **NumPy**
on the same memory. A sweep there is a dozen operators on a few hundred numbers, so its time
is the operators' fixed cost: torch's dispatch costs about 4 µs an operator (a 256×256
matrix-vector ``addmm``: 7.7 µs; NumPy's ``matmul``: 3.6 µs; an element-wise operator 0.4–0.9
µs in NumPy; 2 Zen 4 cores). Each layer's bias rides in its weight as one more input row (the
previous layer's activations carry a trailing 1), which removes three operators a sweep. The
latent of one galaxy took 0.89 against 1.45 ms and of 8 galaxies 2.53 against 3.11 ms; at 16
NumPy was no faster (0.96–1.18×) and ran a second thread of its own (OpenBLAS: CPU time twice
the wall time, competing with torch's threads), and it lost from 32
(``benchmarks/flow_jacobi.py``). The arithmetic is the same float32 sums in another order, so
the result equals the torch sweeps' to rounding (tested); a transform that does not settle
falls back to the torch passes as before.

The univariate transform is zuko's ``MonotonicAffineTransform``: with raw network outputs
``(b, a)``, ``log s = a / (1 + |a / log(slope)|)`` (a soft clip to ``|log s| < -log slope``)
and the inverse is ``x = (y - b) / exp(log s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from cosmobench.errors import CosmobenchError

__all__ = ["FastMAF"]

# zuko's MonotonicAffineTransform default minimum slope; log(slope) bounds |log scale|.
_SLOPE = 1e-3
# Largest batch solved by Jacobi sweeps on a CPU (see FastMAF).
_JACOBI_MAX_BATCH = 256
# Larger batches are swept in blocks of jacobi_max_batch while a block's transforms average
# at most this many sweeps, with none falling back; the rest then takes the passes. On 2 Zen 4
# cores 1,000 galaxies took 0.56x the passes' time with the paper's flow (7-9 sweeps a
# transform), and 1.05x with a strongly chained one, whose first block has a transform
# falling back (benchmarks/results/flow_jacobi_zen4_run3.md). For the chained flow, sweeping
# all 1,000 at once took 1.26x the passes' time, and sweeping every block of 256 1.32x (ad hoc).
_SWEEPS_PAY = 10
# Largest batch whose Jacobi sweeps run through NumPy on a CPU (see the module docstring).
_NUMPY_MAX_BATCH = 8


@dataclass
class _Pass:
    """One autoregressive pass: the features it determines and the network slices it needs."""

    start: int  # first (permuted) feature it determines
    stop: int  # one past the last
    widths: tuple[int, ...]  # hidden units needed in each hidden layer (sorted prefixes)
    w_out: Tensor  # (widths[-1], 2m): the pass's output rows [shifts..., raw scales...], transposed
    b_out: Tensor  # (2m,)


@dataclass
class _Layer:
    """One MADE transform prepared for sampling, features in sampling order."""

    perm: Tensor  # (D,) natural index of each permuted feature
    w_in: Tensor  # (D, H1): first layer, rows = permuted input features, cols = sorted units
    b_in: Tensor  # (H1,)
    hidden: list[tuple[Tensor, Tensor]]  # (H_{l-1}, H_l) transposed weights and (H_l,) biases
    passes: list[_Pass]
    w_out: Tensor  # (H_last, 2D): every feature's shift, then every raw scale (Jacobi sweeps)
    b_out: Tensor  # (2D,)


class FastMAF:
    """The inverse (sampling direction) of a zuko ``MAF`` with the per-pass overhead removed.

    Arguments:
        flow: an unconditional ``zuko.flows.MAF`` with ``MonotonicAffineTransform`` and ReLU
            ``MaskedMLP`` hyper-networks of any depth (one feature per pass, as
            :class:`~cosmobench.models.LatentFlow` builds, or blocks of features per pass).
        device: where the prepared weights live.
        jacobi_max_batch: largest batch solved by Jacobi sweeps; default 256 on a CPU
            (on 2 Xeon cores, at batch 1: 3.4–5.2 ms instead of 10–11 for the paper's flow;
            on 2 Zen 4 cores, 1.6–2.1x faster than the passes at 32–256 with the paper's
            flow, 1.0–1.3x with a strongly chained one, and 0.78–0.93x at 1,024, where more
            transforms fall back: ``benchmarks/flow_jacobi.py``) and 0 elsewhere (a
            sweep's convergence test would synchronise a GPU; :meth:`run`, captured in CUDA
            graphs, is always sequential). A larger batch is swept in blocks of this size
            for as long as a block's transforms settle in at most 10 sweeps on average,
            none falling back; its remaining rows then take the sequential passes at once.
        numpy_max_batch: largest batch whose Jacobi sweeps run through NumPy (the module
            docstring); default 8 on a CPU and 0 elsewhere.
        max_sweeps: sweeps tried per transform before falling back to the sequential passes
            (default half the features).

    The weights are copied at construction: rebuild after training the flow further.

    Example:
        >>> import zuko
        >>> flow = zuko.flows.MAF(4, transforms=2, hidden_features=(16, 16))
        >>> fast = FastMAF(flow)
        >>> eps = torch.randn(3, 4)
        >>> ref = flow().transform.inv(flow.base().mean + flow.base().stddev * eps)
        >>> bool(torch.allclose(fast(eps), ref, atol=1e-5))
        True
    """

    def __init__(
        self,
        flow: nn.Module,
        device: str | torch.device = "cpu",
        *,
        jacobi_max_batch: int | None = None,
        numpy_max_batch: int | None = None,
        max_sweeps: int | None = None,
    ) -> None:
        device = torch.device(device)
        transforms = getattr(getattr(flow, "transform", None), "transforms", None)
        base = getattr(flow, "base", None)
        if transforms is None or base is None:
            raise CosmobenchError("the fast sampler needs a zuko MAF; got " + type(flow).__name__)
        with torch.inference_mode():
            dist = base()
            loc, scale = dist.mean.detach(), dist.stddev.detach()
            self.features = int(loc.shape[-1])
            self.loc = loc.to(device, torch.float32).clone()
            self.scale = scale.to(device, torch.float32).clone()
            # zuko inverts the composition last transform first.
            self.layers = [_prepare(t, device) for t in reversed(list(transforms))]
        self.device = device
        if jacobi_max_batch is None:
            jacobi_max_batch = _JACOBI_MAX_BATCH if device.type == "cpu" else 0
        self.jacobi_max_batch = int(jacobi_max_batch)
        if device.type != "cpu":
            numpy_max_batch = 0
        elif numpy_max_batch is None:
            numpy_max_batch = _NUMPY_MAX_BATCH
        self.numpy_max_batch = int(numpy_max_batch)
        # each transform's weights for the NumPy sweeps, the biases as a last input row, and
        # its permutation as a NumPy index
        numpy_layers = self.layers if self.numpy_max_batch > 0 else []
        self._numpy_weights = [_augmented(layer) for layer in numpy_layers]
        self._numpy_perms = [layer.perm.cpu().numpy() for layer in numpy_layers]
        self.max_sweeps = max(1, self.features // 2) if max_sweeps is None else int(max_sweeps)
        if self.max_sweeps < 1:
            raise CosmobenchError(f"max_sweeps must be >= 1; got {max_sweeps}")
        # sweeps each transform took in the last block solved by Jacobi sweeps (0: fell
        # back to the passes)
        self.last_sweeps: list[int] = []
        self._workspaces: dict[int, _Buffers] = {}

    def __repr__(self) -> str:
        passes = sum(len(layer.passes) for layer in self.layers)
        return (
            f"FastMAF(features={self.features}, transforms={len(self.layers)}, "
            f"passes={passes}, device={self.device})"
        )

    def __call__(self, eps: Tensor) -> Tensor:
        """Map standard-normal base noise ``eps`` (B, D) to flow samples (B, D).

        Equal to ``flow().transform.inv(loc + scale * eps)`` (zuko's ``rsample`` for that
        noise). The result is a fresh tensor; internal buffers are reused across calls.
        """
        if eps.ndim != 2 or eps.shape[1] != self.features:
            raise CosmobenchError(
                f"base noise must have shape (B, {self.features}); got {tuple(eps.shape)}"
            )
        with torch.inference_mode():
            eps = eps.to(self.device, torch.float32)
            n, block = eps.shape[0], self.jacobi_max_batch
            if n <= block:
                return self._solve(eps, jacobi=True)
            if not block:
                return self._solve(eps, jacobi=False)
            # blocks swept while the sweeps pay; the rest in one call of the passes
            out = torch.empty_like(eps)
            for start in range(0, n, block):
                out[start : start + block] = self._solve(eps[start : start + block], True)
                sweeps = self.last_sweeps
                if 0 in sweeps or sum(sweeps) > _SWEEPS_PAY * len(sweeps):
                    if start + block < n:
                        out[start + block :] = self._solve(eps[start + block :], False)
                    break
            return out

    def _solve(self, eps: Tensor, jacobi: bool) -> Tensor:
        buf = self.workspace(eps.shape[0])
        torch.addcmul(self.loc, self.scale, eps, out=buf.nat)
        return self.run(buf, jacobi=jacobi).clone()

    def workspace(self, batch: int) -> _Buffers:
        """The preallocated working buffers for ``batch`` samples (input is ``.nat``)."""
        buf = self._workspaces.get(batch)
        if buf is None:
            if len(self._workspaces) >= 8:  # keep a few batch sizes, not every one seen
                self._workspaces.pop(next(iter(self._workspaces)))
            buf = _Buffers(self, batch)
            self._workspaces[batch] = buf
        return buf

    def run(self, buf: _Buffers, jacobi: bool = False) -> Tensor:
        """Invert all transforms in place on ``buf.nat`` (base sample) and return it.

        With ``jacobi``, each transform is first tried by Jacobi sweeps and solved by the
        sequential passes only if it does not settle (the sweeps taken go to
        ``last_sweeps``). Without, allocation-free: the function captured in a CUDA graph.
        """
        if jacobi and buf.batch <= self.numpy_max_batch:
            return self._run_numpy(buf)
        sweeps_taken = []
        for index, (layer, views) in enumerate(zip(self.layers, buf.views, strict=True)):
            torch.index_select(buf.nat, 1, layer.perm, out=buf.y)  # (B, D) sampling order
            sweeps = _jacobi(layer, buf, self.max_sweeps, index) if jacobi else 0
            if not sweeps:
                _invert(layer, views, buf)
            sweeps_taken.append(sweeps)
            buf.nat.index_copy_(1, layer.perm, buf.x)  # back to natural order
        if jacobi:
            self.last_sweeps = sweeps_taken
        return buf.nat

    def _run_numpy(self, buf: _Buffers) -> Tensor:
        """:meth:`run` with Jacobi sweeps through NumPy, on NumPy views of ``buf``'s memory."""
        work = buf.numpy_work(self)
        nat, y, x = work.nat, work.y, work.x
        sweeps_taken = []
        for layer, views, weights, hidden, perm in zip(
            self.layers, buf.views, self._numpy_weights, work.hidden, self._numpy_perms,
            strict=True,
        ):
            np.take(nat, perm, axis=1, out=y)  # (B, D) sampling order
            sweeps = _jacobi_numpy(weights, hidden, work, self.max_sweeps)
            if not sweeps:
                _invert(layer, views, buf)  # torch, on the same memory: buf.y -> buf.x
            sweeps_taken.append(sweeps)
            nat[:, perm] = x  # back to natural order
        self.last_sweeps = sweeps_taken
        return buf.nat


class _Buffers:
    """Working memory for one batch size, with every per-pass view made once."""

    def __init__(self, maf: FastMAF, batch: int) -> None:
        dev, d = maf.device, maf.features

        def flat(size: int) -> Tensor:
            return torch.empty(batch * size, device=dev)

        def rows(buf: Tensor, width: int) -> Tensor:  # a contiguous (batch, width) view
            return buf[: batch * width].view(batch, width)

        depth = len(maf.layers[0].hidden) + 1
        widths = [max(layer.passes[-1].widths[i] for layer in maf.layers) for i in range(depth)]
        m = max(p.stop - p.start for layer in maf.layers for p in layer.passes)
        self.batch = batch
        self._numpy: _NumpyWork | None = None
        self.nat = torch.empty(batch, d, device=dev)
        self.y = torch.empty(batch, d, device=dev)
        self.x = torch.zeros(batch, d, device=dev)
        self.x_next = torch.empty(batch, d, device=dev)  # a Jacobi sweep's new guess
        self.one = torch.ones(1, device=dev)
        self.a1 = torch.empty(batch, max(layer.b_in.shape[0] for layer in maf.layers), device=dev)
        # a Jacobi sweep's activations (every unit of each hidden layer, one contiguous
        # (batch, width) view per transform), its outputs (shifts, raw scales) and its scales,
        # written in place: at batch 1 a sweep is a dozen small operators, and allocating
        # their outputs made the latent of one galaxy 1.15-1.2x slower (2 Zen 4 cores, ad hoc)
        full = [[layer.b_in.shape[0], *(b.shape[0] for _, b in layer.hidden)]
                for layer in maf.layers]
        sweep_flat = [flat(max(f[i] for f in full)) for i in range(depth)]
        self.sweep_h = [[rows(h, w) for h, w in zip(sweep_flat, f, strict=True)] for f in full]
        self.sweep_phi = torch.empty(batch, 2 * d, device=dev)
        self.sweep_s = torch.empty(batch, d, device=dev)
        h_flat = [flat(w) for w in widths]
        phi_flat, tmp_flat = flat(2 * m), flat(m)
        self.views = []
        for layer in maf.layers:
            per_pass = []
            for p in layer.passes:
                k = p.stop - p.start
                phi = rows(phi_flat, 2 * k)
                hs = [rows(h, w) for h, w in zip(h_flat, p.widths, strict=True)]
                ws = [
                    (w[:n_in, :n_out], b[:n_out])
                    for (w, b), n_in, n_out in zip(
                        layer.hidden, p.widths[:-1], p.widths[1:], strict=True
                    )
                ]
                per_pass.append((
                    self.a1[:, : p.widths[0]],
                    hs,
                    ws,
                    phi,
                    phi[:, :k],  # shift
                    phi[:, k:],  # raw scale
                    rows(tmp_flat, k),
                    self.y[:, p.start : p.stop],
                    self.x[:, p.start : p.stop],
                    layer.w_in[p.start : p.stop],
                ))
            self.views.append(per_pass)

    def numpy_work(self, maf: FastMAF) -> _NumpyWork:
        """The NumPy sweeps' buffers for this batch size (made on first use)."""
        if self._numpy is None:
            self._numpy = _NumpyWork(maf, self)
        return self._numpy


class _NumpyWork:
    """NumPy views of a :class:`_Buffers`' input and output, and the NumPy sweeps' own
    buffers: each activation with a trailing column of ones (the next layer's bias row)."""

    def __init__(self, maf: FastMAF, buf: _Buffers) -> None:
        b, d = buf.batch, maf.features
        self.nat, self.y, self.x = buf.nat.numpy(), buf.y.numpy(), buf.x.numpy()

        def with_ones(width: int) -> tuple[np.ndarray, np.ndarray]:
            full = np.ones((b, width + 1), np.float32)
            return full, full[:, :width]

        self.guesses = (with_ones(d), with_ones(d))  # a sweep's guess and its next one
        self.hidden = [[with_ones(w.shape[1]) for w in weights[:-1]]
                       for weights in maf._numpy_weights]
        self.phi = np.empty((b, 2 * d), np.float32)  # shifts, then raw scales
        self.s = np.empty((b, d), np.float32)


_LOG_SLOPE = math.log(_SLOPE)
_INV_LOG_SLOPE = -1.0 / _LOG_SLOPE  # 1 / |log slope|


def _invert(layer: _Layer, views: list[tuple], buf: _Buffers) -> None:
    """Autoregressive inverse of one transform: ``buf.y`` (sampling order) -> ``buf.x``."""
    a1 = buf.a1[:, : layer.b_in.shape[0]]
    a1.copy_(layer.b_in.expand_as(a1))  # first-layer pre-activation with no feature known
    for p, (a1v, hs, ws, phi, shift, raw, tmp, y, x, w_in) in zip(
        layer.passes, views, strict=True
    ):
        if p.widths[-1]:
            h = torch.clamp(a1v, min=0.0, out=hs[0])  # ReLU, (B, n1)
            for (w, b), out in zip(ws, hs[1:], strict=True):
                h = torch.addmm(b, h, w, out=out).relu_()  # (B, n_l)
            torch.addmm(p.b_out, h, p.w_out, out=phi)  # (B, 2m): shifts, raw scales
        else:  # the first feature depends on nothing: its parameters are the biases
            phi.copy_(p.b_out.expand_as(phi))
        # MonotonicAffineTransform: log s = a / (1 + |a / log slope|); x = (y - b) / exp(log s)
        # (1 + |a| / |log slope| as one add of a tensor 1: a Python scalar operand costs a
        # tensor conversion per op, a fifth of a one-galaxy pass)
        torch.add(buf.one, torch.abs(raw, out=tmp), alpha=_INV_LOG_SLOPE, out=tmp)
        torch.div(raw, tmp, out=tmp).exp_()
        torch.sub(y, shift, out=x).div_(tmp)
        a1.addmm_(x, w_in)  # the features just determined enter the first layer


def _jacobi(layer: _Layer, buf: _Buffers, max_sweeps: int, index: int) -> int:
    """Jacobi sweeps for transform ``index``, ``buf.y`` -> ``buf.x``; the sweeps taken, 0 if
    unsettled.

    Settled means a sweep changed no bit (``torch.equal``; a NaN never settles, so it falls
    back and propagates as the sequential passes would).
    """
    d = buf.y.shape[1]
    x, new, s, phi = buf.x, buf.x_next, buf.sweep_s, buf.sweep_phi  # phi: (B, 2D)
    shift, raw = phi[:, :d], phi[:, d:]  # shifts, raw scales
    hs = buf.sweep_h[index]  # (B, H_l) for each hidden layer of this transform
    x.copy_(buf.y)  # first guess: the identity
    for sweep in range(1, max_sweeps + 1):
        h = torch.addmm(layer.b_in, x, layer.w_in, out=hs[0]).relu_()
        for (w, b), out in zip(layer.hidden, hs[1:], strict=True):
            h = torch.addmm(b, h, w, out=out).relu_()
        torch.addmm(layer.b_out, h, layer.w_out, out=phi)
        torch.add(buf.one, torch.abs(raw, out=s), alpha=_INV_LOG_SLOPE, out=s)
        torch.div(raw, s, out=s).exp_()
        torch.sub(buf.y, shift, out=new).div_(s)
        if torch.equal(new, x):
            return sweep
        x, new = new, x
    if x is not buf.x:
        buf.x.copy_(x)
    return 0


_F32_ONE, _F32_ZERO = np.float32(1.0), np.float32(0.0)
_F32_INV_LOG_SLOPE = np.float32(_INV_LOG_SLOPE)


def _jacobi_numpy(
    weights: list[np.ndarray],
    hidden: list[tuple[np.ndarray, np.ndarray]],
    work: _NumpyWork,
    max_sweeps: int,
) -> int:
    """:func:`_jacobi` in NumPy, ``work.y`` -> ``work.x``: the same sweeps, each layer's
    bias a last row of its weight (``weights``, from :func:`_augmented`) met by the trailing
    ones of ``hidden``'s activations. Settled: a sweep changed no byte and left no NaN."""
    d = work.y.shape[1]
    y, s, phi = work.y, work.s, work.phi
    shift, raw = phi[:, :d], phi[:, d:]
    (guess_full, guess), (new_full, new) = work.guesses
    last = weights[-1]
    layers = list(zip(weights[:-1], hidden, strict=True))
    np.copyto(guess, y)  # first guess: the identity
    for sweep in range(1, max_sweeps + 1):
        h = guess_full
        for w, (out_full, out) in layers:
            np.matmul(h, w, out=out)
            np.maximum(out, _F32_ZERO, out=out)  # ReLU
            h = out_full
        np.matmul(h, last, out=phi)
        np.abs(raw, out=s)
        np.multiply(s, _F32_INV_LOG_SLOPE, out=s)
        np.add(s, _F32_ONE, out=s)
        np.divide(raw, s, out=s)
        np.exp(s, out=s)
        np.subtract(y, shift, out=new)
        np.divide(new, s, out=new)
        if new.tobytes() == guess.tobytes():  # a NaN may repeat its bits: then unsettled
            if np.isnan(new).any():
                return 0
            np.copyto(work.x, new)
            return sweep
        guess_full, guess, new_full, new = new_full, new, guess_full, guess
    return 0


def _augmented(layer: _Layer) -> list[np.ndarray]:
    """A transform's weights for the NumPy sweeps: each ``(in, out)`` weight with its bias
    appended as one more input row, float32, on the host."""
    pairs = [(layer.w_in, layer.b_in), *layer.hidden, (layer.w_out, layer.b_out)]
    return [torch.cat([w, b[None]]).cpu().numpy() for w, b in pairs]


def _prepare(transform: nn.Module, device: torch.device) -> _Layer:
    """Read a zuko ``MaskedAutoregressiveTransform`` into the sampling layout."""
    from zuko.transforms import MonotonicAffineTransform

    hyper = getattr(transform, "hyper", None)
    order = getattr(transform, "order", None)
    if (
        hyper is None
        or order is None
        or getattr(transform, "univariate", None) is not MonotonicAffineTransform
        or tuple(getattr(transform, "shapes", ())) != ((), ())
    ):
        raise CosmobenchError(
            "the fast sampler supports zuko MAF transforms with MonotonicAffineTransform only"
        )
    modules = list(hyper)
    kinds = [type(m).__name__ for m in modules]
    linears = modules[0::2]
    if (
        len(modules) < 3
        or any(k != "MaskedLinear" for k in kinds[0::2])
        or any(k != "ReLU" for k in kinds[1::2])
    ):
        raise CosmobenchError(
            "the fast sampler supports ReLU MADE networks (MaskedLinear, ReLU, ..., "
            "MaskedLinear) with at least one hidden layer; got " + " -> ".join(kinds)
        )
    d = order.shape[0]
    if linears[0].in_features != d:
        raise CosmobenchError("the fast sampler supports unconditional flows only")
    # Prepared on the host, wherever the flow lives; moved to ``device`` at the end.
    order = order.detach().cpu()
    # Masked weights, multiplied once: (out, in); masks as booleans for the dependency graph.
    ws = [(lin.weight * lin.mask).detach().cpu().double() for lin in linears]
    bs = [lin.bias.detach().cpu().double() for lin in linears]
    masks = [lin.mask.detach().cpu().bool() for lin in linears]

    # Pass k determines the features whose (block) order is the k-th smallest.
    blocks = torch.unique(order)  # sorted
    pass_of = torch.searchsorted(blocks, order)  # (D,)
    perm = torch.sort(pass_of, stable=True).indices  # permuted position -> natural feature
    feats = [torch.nonzero(pass_of == k).flatten() for k in range(len(blocks))]
    out_rows = [torch.cat([2 * f, 2 * f + 1]) for f in feats]  # shifts, then raw scales

    # First pass needing each hidden unit, from the output back (len(blocks) = never).
    never = len(blocks)
    first = [torch.full((m.shape[0],), never) for m in masks[:-1]]
    for k, rows in enumerate(out_rows):
        used = masks[-1][rows].any(0)
        first[-1][used] = torch.clamp(first[-1][used], max=k)
    for layer in range(len(first) - 1, 0, -1):
        need = torch.where(masks[layer], first[layer][:, None], never)  # (H_l, H_{l-1})
        first[layer - 1] = torch.minimum(first[layer - 1], need.min(0).values)
    # Exact only if every unit needed by pass k sees features determined before pass k.
    last_input = torch.where(masks[0], pass_of[None, :], -1).max(1).values  # (H1,)
    if bool((last_input >= first[0]).any()):
        raise CosmobenchError("the flow's masks are not autoregressive in its order")

    # Sort each hidden layer's units by first use: pass k needs a prefix of each layer.
    sort = [torch.sort(f, stable=True).indices for f in first]
    ws[0], bs[0] = ws[0][sort[0]][:, perm], bs[0][sort[0]]
    for layer in range(1, len(ws) - 1):
        ws[layer], bs[layer] = ws[layer][sort[layer]][:, sort[layer - 1]], bs[layer][sort[layer]]
    ws[-1] = ws[-1][:, sort[-1]]

    passes, start = [], 0
    for k, (f, rows) in enumerate(zip(feats, out_rows, strict=True)):
        widths = tuple(int((fl <= k).sum()) for fl in first)
        w_out = _dev(ws[-1][rows, : widths[-1]].T, device)
        passes.append(_Pass(start, start + len(f), widths, w_out, _dev(bs[-1][rows], device)))
        start += len(f)
    return _Layer(
        perm=perm.to(device),
        w_in=_dev(ws[0].T, device),  # (D, H1)
        b_in=_dev(bs[0], device),
        hidden=[
            (_dev(w.T, device), _dev(b, device))
            for w, b in zip(ws[1:-1], bs[1:-1], strict=True)
        ],
        passes=passes,
        # every feature's output rows, in sampling order: shifts, then raw scales
        w_out=_dev(ws[-1][torch.cat([2 * perm, 2 * perm + 1])].T, device),
        b_out=_dev(bs[-1][torch.cat([2 * perm, 2 * perm + 1])], device),
    )


def _dev(t: Tensor, device: torch.device) -> Tensor:
    return t.to(device=device, dtype=torch.float32).contiguous()
