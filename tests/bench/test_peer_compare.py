"""``benchmarks/peer_keras/compare.py``'s protocol, without TensorFlow: the peer and each
cosmobench mode are timed round by round, one call each, so both sides share every moment
of a machine whose speed drifts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "peer_keras" / "compare.py"


def _module():
    spec = importlib.util.spec_from_file_location("peer_compare", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class FakePeer:
    def __init__(self, log: list) -> None:
        self.log = log

    def ask(self, **request):
        self.log.append(("peer", request))
        return [0.5], [0.25]


def test_rounds_alternate_one_peer_call_and_one_call_per_mode():
    mod = _module()
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
