"""``benchmarks/onednn_layers.py``: oneDNN's log of a training step, layer by layer."""

from __future__ import annotations

import json

import pytest
import torch

SCRIPT = "benchmarks/onednn_layers.py"
HEAD = "onednn_verbose,v1,primitive,exec,cpu"


def _line(kind: str, impl: str, prop: str, desc: str, ms: float) -> str:
    return f"{HEAD},{kind},{impl},{prop},src:f32::blocked:acdb::f0,,alg:x,{desc},{ms}"


def test_conv_problem_counts_the_layers_flops(load_script):
    conv_problem = load_script(SCRIPT).conv_problem
    layer, flop = conv_problem("mb14_ic6oc32_ih64oh64kh3sh1dh0ph1_iw64ow64kw3sw1dw0pw1")
    assert layer == "ic6oc32_ih64oh64kh3sh1dh0ph1_iw64ow64kw3sw1dw0pw1"  # the batch left out
    assert flop == 2 * 14 * 6 * 32 * 64 * 64 * 3 * 3
    _, grouped = conv_problem("g2mb1_ic8oc4_ih5oh5kh3sh1dh0ph1_iw5ow5kw3sw1dw0pw1")
    assert grouped == 2 * 1 * 4 * 4 * 5 * 5 * 9  # C_in / groups inputs per output
    with pytest.raises(ValueError, match="not a oneDNN convolution"):
        conv_problem("32x6x3x3")


def test_parse_log_splits_passes_and_weight_from_activation_reorders(load_script):
    mod = load_script(SCRIPT)
    desc = "mb2_ic6oc32_ih64oh64kh3sh1dh0ph1_iw64ow64kw3sw1dw0pw1"
    text = "\n".join([
        "onednn_verbose,v1,info,oneDNN v3.12.0",
        _line("convolution", "brg_conv_fwd:avx512_core", "forward_training", desc, 1.0),
        _line("convolution", "jit:avx512_core", "backward_weights", desc, 3.0),
        _line("reorder", "jit:uni", "undef", "32x6x3x3", 0.5),  # the kernel: a weight reorder
        _line("reorder", "jit:blk", "undef", "2x6x64x64", 0.25),  # an activation
        _line("matmul", "brg:avx512_core", "forward_training", "mb2:2x4096:4096x9", 0.75),
    ] * 2)  # two logged steps
    run = mod.parse_log(text, steps=2)
    layer = desc.split("_", 1)[1]
    fwd, wgrad = run["conv"][(layer, "forward")], run["conv"][(layer, "backward-weights")]
    assert fwd["ms"] == pytest.approx(1.0) and wgrad["ms"] == pytest.approx(3.0)  # per step
    assert fwd["gflop"] == pytest.approx(2 * 2 * 6 * 32 * 64 * 64 * 9 / 1e9)
    assert wgrad["impl"] == "jit:avx512_core"
    assert run["weight_reorder_ms"] == pytest.approx(0.5)
    assert run["activation_reorder_ms"] == pytest.approx(0.25)
    assert run["other_ms"] == {"matmul": pytest.approx(0.75)}
    assert run["total_ms"] == pytest.approx(1.0 + 3.0 + 0.5 + 0.25 + 0.75)


def test_median_run_is_robust_to_a_slow_step(load_script):
    mod = load_script(SCRIPT)
    desc = "mb2_ic6oc32_ih64oh64kh3sh1dh0ph1_iw64ow64kw3sw1dw0pw1"
    steps = ["\n".join([_line("convolution", "jit", "forward_training", desc, ms),
                        _line("reorder", "jit:uni", "undef", "32x6x3x3", 0.5)])
             for ms in (1.0, 9.0, 2.0)]  # the second step slowed by the machine
    run = mod.median_run(steps)
    (row,) = run["conv"].values()
    assert row["ms"] == 2.0 and row["gflop"] == pytest.approx(2 * 2 * 6 * 32 * 4096 * 9 / 1e9)
    assert run["weight_reorder_ms"] == 0.5 and run["total_ms"] == 2.5


def test_table_compares_per_image(load_script):
    mod = load_script(SCRIPT)
    layer = "ic6oc32_ih64oh64kh3sh1dh0ph1_iw64ow64kw3sw1dw0pw1"
    runs = {b: {"conv": {(layer, "forward"): {"ms": ms, "gflop": 0.5 * b, "impl": "jit"}},
                "weight_reorder_ms": 1.0, "activation_reorder_ms": 0.0, "total_ms": ms + 1.0}
            for b, ms in ((2, 1.0), (8, 2.0))}  # fmt: skip
    rows = mod.table("cnn", runs)
    assert f"| {layer} | forward | 0.500 | 0.250 | 2.00 | 1000 | 2000 | jit |" in rows
    assert "| weight reorders | all | 0.500 | 0.125 | 4.00 | — | — | |" in rows  # fixed per step
    assert rows[-1].startswith("| **all oneDNN** | | **1.000** | **0.375** | **2.67** |")


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_logs_the_real_step(tmp_path, load_script):
    """The paper's CNN at batch 2 and 3: every convolution's three passes are read back."""
    mod = load_script(SCRIPT)
    mod.main(["--batch-sizes", "3,2", "--steps", "2", "--rounds", "1",
              "--out", str(tmp_path / "o")])
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert [r["batch"] for r in rows] == [2, 3]
    for r in rows:
        passes = {(c["layer"], c["pass"]) for c in r["conv"]}
        assert len({layer for layer, _ in passes}) == 8  # the paper's eight convolutions
        assert {p for _, p in passes} == {"forward", "backward-data", "backward-weights"}
        assert all(c["ms"] > 0 and c["gflop"] > 0 for c in r["conv"])
        assert r["weight_reorder_ms"] > 0 and r["wall_ms"] > 0
    # each batch size's own log: the same layers, their FLOPs in proportion to the batch
    flops = [{(c["layer"], c["pass"]): c["gflop"] for c in r["conv"]} for r in rows]
    assert flops[0].keys() == flops[1].keys()
    assert all(flops[1][k] == pytest.approx(1.5 * flops[0][k]) for k in flops[0])
    md = (tmp_path / "o.md").read_text()
    assert "oneDNN alone per image, batch 2 over 3" in md and "| **all oneDNN** |" in md


@pytest.mark.parametrize("argv", [["--batch-sizes", "2"], ["--batch-sizes", "2,x"],
                                  ["--batch-sizes", "0,2"], ["--steps", "0"], ["--rounds", "0"]])
def test_bad_options_are_one_line_errors(argv, load_script):
    with pytest.raises(SystemExit, match="^error: "):
        load_script(SCRIPT).main(argv)


def test_a_failing_child_is_a_one_line_error(monkeypatch, load_script):
    mod = load_script(SCRIPT)
    monkeypatch.setattr(mod.sys, "executable", "/bin/false")  # the child exits 1, says nothing
    with pytest.raises(SystemExit, match="^error: the profiled step failed"):
        mod.main(["--batch-sizes", "2,3", "--steps", "1", "--rounds", "1"])
