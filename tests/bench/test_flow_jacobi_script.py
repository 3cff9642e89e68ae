"""benchmarks/flow_jacobi.py: the ways of sampling the flow, side by side."""

from __future__ import annotations

import torch

from cosmobench.models import FlowConfig, LatentFlow


def test_time_methods_compares_torch_numpy_sweeps_and_passes(load_script):
    script = load_script("benchmarks/flow_jacobi.py")
    torch.manual_seed(0)
    flow = LatentFlow(FlowConfig()).eval()  # the paper's: sweeps settle well within 16
    row = script.time_methods(flow, batch=3, repeats=3)
    assert row["batch"] == 3
    assert all(row[f"{m}_ms"] > 0 for m in ("jacobi", "numpy", "sequential", "default"))
    # both sweepers settled every transform (0 would mean a fall-back to the passes)
    assert len(row["sweeps"]) == len(row["numpy_sweeps"]) == 8
    assert row["default_sweeps"] == row["numpy_sweeps"]  # batch 3: the default sweeps in NumPy
    assert all(s > 0 for s in row["sweeps"] + row["numpy_sweeps"])
    # the same samples to rounding, and a real comparison (not one sampler timed twice)
    assert 0 <= row["numpy_diff"] < 1e-5 and 0 <= row["max_abs_diff"] < 1e-5
