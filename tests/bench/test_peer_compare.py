"""``benchmarks/peer_keras/compare.py``'s protocol, without TensorFlow: the peer and each
cosmobench mode are timed round by round, one call each, so both sides share every moment
of a machine whose speed drifts."""

from __future__ import annotations

from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "peer_keras" / "compare.py"


class FakePeer:
    def __init__(self, log: list) -> None:
        self.log = log

    def ask(self, **request):
        self.log.append(("peer", request))
        return [0.5], [0.25]


def test_rounds_alternate_one_peer_call_and_one_call_per_mode(load_script):
    mod = load_script(SCRIPT, "peer_compare")
    log: list = []
    ours = {"eager": lambda: log.append("eager"), "bf16": lambda: log.append("bf16")}
    request = {"op": "train", "net": "cnn", "batch": 4}
    peer_t, our_t = mod.interleaved(FakePeer(log), request, ours, repeats=3)
    one_round = [("peer", {**request, "warmup": 0, "repeats": 1}), "eager", "bf16"]
    assert log == one_round * 3
    assert peer_t == ([0.5] * 3, [0.25] * 3)
    assert set(our_t) == {"eager", "bf16"}
    for wall, cpu in our_t.values():
        assert len(wall) == len(cpu) == 3 and all(t >= 0 for t in wall)


def test_ceilings_divide_the_peers_time_by_the_flops_at_the_roofline(monkeypatch, load_script):
    """The ceiling is peer time x roofline / FLOPs, per precision, and the table shows it."""
    import argparse

    import cosmobench.bench.peak as peak

    mod = load_script(SCRIPT, "peer_compare")
    roof = {"fp32": 100e9, "bf16": 400e9}
    monkeypatch.setattr(peak, "measure_roofline", lambda dev, p: {
        "flops_per_s": roof[p], "kernel": "mm1024", "kernels": {"mm1024": roof[p]},
        "theoretical": {"flops_per_s": 2 * roof[p], "source": "test"}})
    monkeypatch.setattr(mod, "point_flops", lambda workload, items: 1e9 * items)
    rows = [{"workload": "CNN train step, batch 2", "items": 2, "peer_s": 0.05,
             "cosmobench_s": 0.04, "ratio": 1.25, "cpu_ratio": 1.0, "modes": {},
             "best_mode": "eager", "best_ratio": 1.25}]
    args = argparse.Namespace(repeats=3, gen_repeats=3, warmup=1, threads=2)
    out = mod.ceilings(rows, ["eager", "bf16"], args)
    r = rows[0]
    assert r["ceiling"]["fp32"] == 0.05 / (2e9 / 100e9)  # 2.5x: the peer runs at 40 %
    assert r["ceiling"]["bf16"] == 0.05 / (2e9 / 400e9)
    assert r["peer_fraction"]["fp32"] == 2e9 / 0.05 / 100e9
    assert r["eager_fraction"] == 2e9 / 0.04 / 100e9
    assert set(out) == {"fp32", "bf16"}
    meta = {"command": "x", "cpu": "cpu", "capability": "AVX2", "torch": "t",
            "tensorflow": "tf", "modes": ["eager"], "modes_skipped": {}, "load_average": [],
            "seconds": 1.0, "roofline": out, **vars(args)}
    text = mod.markdown(meta, rows, {})
    assert "| CNN train step, batch 2 | 2.00 | 40% | 50% | 2.50× | 10.00× |" in text


def test_point_flops_are_counted_on_cosmobenchs_own_calls(load_script):
    """Training FLOPs grow with the batch in proportion; generation is n times a galaxy's
    FLOPs through the paper's layers, fewer than the sampler's recast decoder counts."""
    mod = load_script(SCRIPT, "peer_compare")
    b2, b4 = (mod.point_flops("CNN train step, batch 2", b) for b in (2, 4))
    assert b2 > 1e9 and abs(b4 / b2 - 2) < 1e-6
    assert mod.point_flops("BNN train step, batch 2", 2) > b2 * 0.9  # same convolutions
    one, hundred = (mod.point_flops(f"generate {n}", n) for n in (1, 100))
    assert one > 1e8 and abs(hundred / one - 100) < 1e-6
    from cosmobench.bench.workloads import count_flops

    recast = count_flops(mod.Ours("eager").generate(32, 0)) / 32
    assert 0.95 * recast < one < recast  # the transposed convolutions' count, not the recast's


def test_ratio_interval_is_paired_over_rounds(load_script):
    """A drift shared by both calls of a round cancels (the pairs are resampled together):
    a peer always twice as slow gives exactly [2, 2] however much the machine drifts; noise
    of one side alone widens the interval around the ratio of medians."""
    import numpy as np

    mod = load_script(SCRIPT, "peer_compare")
    drift = np.random.default_rng(1).uniform(1.0, 3.0, size=15)
    assert mod.ratio_interval(list(2 * drift), list(drift)) == (2.0, 2.0)
    noisy = list(2 * np.random.default_rng(2).uniform(0.8, 1.2, size=15))
    lo, hi = mod.ratio_interval(noisy, [1.0] * 15)
    point = float(np.median(noisy))
    assert 1.6 <= lo < point < hi <= 2.4
    assert mod.ratio_interval(noisy, [1.0] * 15) == (lo, hi)  # seeded: reproducible
    import pytest

    with pytest.raises(ValueError, match="paired"):
        mod.ratio_interval([1.0, 2.0], [1.0])


def test_stored_run_is_rewritten_with_its_intervals(tmp_path, monkeypatch, load_script):
    """``--from-json`` rewrites a stored run's tables, the intervals included, timing nothing."""
    import json
    import sys

    mod = load_script(SCRIPT, "peer_compare")
    peer, eager, bf16 = [0.30, 0.20, 0.40], [0.10, 0.10, 0.20], [0.05, 0.10, 0.10]
    row = {"workload": "CNN train step, batch 2", "items": 2, "peer_s": 0.30,
           "cosmobench_s": 0.10, "ratio": 3.0, "cpu_ratio": 1.0, "peer_times": peer,
           "modes": {"eager": {"s": 0.10, "times": eager}, "bf16": {"s": 0.10, "times": bf16}},
           "best_mode": "bf16", "best_ratio": 3.0}
    meta = {"command": "x", "cpu": "cpu", "capability": "AVX2", "torch": "t",
            "tensorflow": "tf", "modes": ["eager", "bf16"], "modes_skipped": {},
            "load_average": [], "seconds": 1.0, "roofline": None, "threads": 2,
            "repeats": 3, "gen_repeats": 3, "warmup": 1}
    stored = tmp_path / "run.json"
    stored.write_text(json.dumps({"meta": meta, "rows": [row], "derived": {}}))
    (tmp_path / "run.md").write_text("old table\n\n**Note added after this run.** Kept.\n")
    monkeypatch.setattr(mod, "PeerServer", lambda *a: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr(sys, "argv", ["compare.py", "--from-json", str(stored)])
    mod.main()
    text = (tmp_path / "run.md").read_text()
    lo, hi = mod.ratio_interval(peer, eager)
    assert f"| CNN train step, batch 2 | 3.00× [{lo:.2f}, {hi:.2f}] | 2.00× | bf16 3.00×" in text
    assert "old table" not in text and text.endswith("**Note added after this run.** Kept.\n")


def test_derived_shares_get_intervals_from_each_points_own_rounds(load_script):
    """One galaxy's share of 100 and the batch-2 / batch-14 cost per image get intervals that
    hold the stored value; a point timed without spread gives a zero-width interval."""
    import statistics

    mod = load_script(SCRIPT, "peer_compare")

    def row(workload, items, times):
        return {"workload": workload, "items": items,
                "modes": {"eager": {"s": sorted(times)[len(times) // 2], "times": times}}}

    rows = [row("CNN train step, batch 2", 2, [0.02, 0.021, 0.019]),
            row("CNN train step, batch 14", 14, [0.07, 0.07, 0.07]),
            row("generate 1", 1, [0.007, 0.008, 0.0075, 0.0072]),
            row("generate 100", 100, [0.3, 0.31, 0.29, 0.305])]
    spread = mod.derived_intervals(rows)
    lo, hi = spread["CNN batch-2 over batch-14 time per image (eager)"]
    assert lo < (0.02 / 2) / (0.07 / 14) < hi and lo >= (0.019 / 2) / (0.07 / 14) - 1e-12
    lo, hi = spread["one galaxy's share of 100 (eager)"]
    point = statistics.median(rows[2]["modes"]["eager"]["times"]) / statistics.median(
        rows[3]["modes"]["eager"]["times"])
    assert 0.007 / 0.31 <= lo < point < hi <= 0.008 / 0.29
    flat = [row("generate 1", 1, [0.01] * 3), row("generate 100", 100, [0.5] * 3)]
    assert mod.derived_intervals(flat)["one galaxy's share of 100 (eager)"] == (0.02, 0.02)


def test_from_json_refuses_what_is_not_a_stored_run(tmp_path, monkeypatch, capsys, load_script):
    """A missing file or a JSON of another kind: a one-line error, no traceback."""
    import sys

    import pytest

    mod = load_script(SCRIPT, "peer_compare")
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}')
    for path in (tmp_path / "missing.json", other):
        monkeypatch.setattr(sys, "argv", ["compare.py", "--from-json", str(path)])
        with pytest.raises(SystemExit, match="is not a stored comparison run"):
            mod.main()
    assert not (tmp_path / "other.md").exists()


def test_peer_threads_options_get_one_line_errors(monkeypatch, load_script):
    """``peer_threads.py`` reads its settings and points, and refuses bad ones in one line."""
    import sys

    import pytest

    # what it imports from beside it
    monkeypatch.setitem(sys.modules, "compare", load_script(SCRIPT, "peer_compare"))
    mod = load_script(SCRIPT.parent / "peer_threads.py")
    assert mod.parse("1,2", "cnn:2,bnn:8") == ([1, 2], [("cnn", 2), ("bnn", 8)])
    for inter_ops, points in (("1,x", "cnn:2"), ("1,2", "cnn2"), ("2", "cnn:2"),
                              ("0,2", "cnn:2"), ("1,2", "vae:2"), ("1,2", "cnn:0")):
        with pytest.raises(SystemExit, match="^error: --"):
            mod.parse(inter_ops, points)


def test_thread_and_isa_variables_are_recorded_with_the_run(monkeypatch, load_script):
    """A run capped with ``ATEN_CPU_CAPABILITY`` (or with any OpenMP setting) says so."""
    mod = load_script(SCRIPT, "peer_compare")
    for k in mod.THREAD_VARS:
        monkeypatch.delenv(k, raising=False)
    meta = {"command": "x", "cpu": "cpu", "capability": "AVX2", "torch": "t",
            "tensorflow": "tf", "modes": ["eager"], "modes_skipped": {}, "load_average": [],
            "seconds": 1.0, "roofline": None, "threads": 2, "repeats": 3, "gen_repeats": 3,
            "warmup": 1}
    assert mod.thread_env() == {}
    assert "variables" not in mod.markdown({**meta, "thread_env": {}}, [], {})
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")  # the BLAS libraries' own caps
    monkeypatch.setenv("UNRELATED", "1")
    recorded = mod.thread_env()
    assert recorded == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    text = mod.markdown({**meta, "thread_env": recorded}, [], {})
    assert "`ATEN_CPU_CAPABILITY=avx2`, `ONEDNN_MAX_CPU_ISA=AVX2`" in text
