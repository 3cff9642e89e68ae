"""The results schema: round trip, derived numbers, rejection of foreign or newer files."""

from __future__ import annotations

import json

import pytest

from cosmobench.bench.results import SCHEMA, SCHEMA_VERSION, Record, Results, load_results
from cosmobench.bench.timing import RawTiming
from cosmobench.errors import CosmobenchError


def make_results() -> Results:
    ok = Record(
        workload="train-cnn", mode="eager", size=4, size_name="batch_size", status="ok",
        device="cpu", items_per_call=4, timing=RawTiming(2, (0.02, 0.026, 0.018), (0.5,)),
        flops_per_call=2.0e9, peak_key="fp32", peak_memory_bytes=123456, memory_kind="rss",
        energy={"available": False, "reason": "cpu"}, epochs_axis=True, info={"parameters": 7},
    )
    oom = Record(workload="train-cnn", mode="eager", size=4096, size_name="batch_size",
                 status="oom", device="cpu", reason="OutOfMemoryError: simulated",
                 epochs_axis=True)
    unsupported = Record(workload="train-cnn", mode="cudagraph", size=4,
                         size_name="batch_size", status="unsupported", device="cpu",
                         reason="CUDA graphs need a CUDA device")
    return Results(env={"device": "cpu", "device_type": "cpu", "cpu_model": "Test CPU",
                        "threads": 2}, config={"workloads": ["train-cnn"]},
                   records=[ok, oom, unsupported],
                   peaks={"fp32": {"flops_per_s": 4e11, "roofline": True}},
                   max_batch=[{"workload": "train-cnn", "mode": "eager", "largest": 12}],
                   complete=True)


def test_round_trip(tmp_path):
    res = make_results()
    path = res.save(tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA and data["schema_version"] == SCHEMA_VERSION
    back = load_results(path)
    assert back.records == res.records
    assert back.env == res.env and back.config == res.config and back.peaks == res.peaks
    assert back.max_batch == res.max_batch and back.complete
    assert back.records[0].summary(back.peaks) == res.records[0].summary(res.peaks)
    assert "raw_times_s" in data["records"][0]["measured"]["timing"]  # raw times kept


def test_summary_is_derived_from_raw_times():
    rec = make_results().records[0]
    s = rec.summary({"fp32": {"flops_per_s": 4e11, "roofline": True}})
    assert s["median_ms"] == pytest.approx(10.0)  # per-step: blocks of 2 steps
    assert s["min_ms"] == pytest.approx(9.0)
    assert s["images_per_s"] == pytest.approx(400.0)
    # the paper's axis: 100 epochs x 8000 images / batch 4 x 10 ms, marked derived
    assert s["s_per_100_epochs"] == pytest.approx(100 * 8000 / 4 * 0.010)
    assert s["s_per_100_epochs_derived"] is True
    assert s["mfu"] == pytest.approx(2e9 / 0.010 / 4e11)
    assert s["iqr_warning"] is True  # IQR 2 ms of 10 ms


def test_paper_protocol_is_measured_not_derived_with_the_papers_settings():
    steps = 8000 // 8
    rec = Record(workload="train-cnn", mode="eager", size=8, size_name="batch_size",
                 status="ok", device="cpu", protocol="paper", items_per_call=8,
                 timing=RawTiming(steps, tuple([2.0] * 100)), epochs_axis=True)
    s = rec.summary()
    assert s["s_per_100_epochs"] == pytest.approx(200.0)
    assert s["s_per_100_epochs_derived"] is False
    short = Record(workload="train-cnn", mode="eager", size=8, size_name="batch_size",
                   status="ok", device="cpu", protocol="paper", items_per_call=8,
                   timing=RawTiming(100, (1.0, 1.0)), epochs_axis=True)  # 2 epochs of 800
    s = short.summary()
    assert s["s_per_100_epochs"] == pytest.approx(1.0 * 100 * 8000 / 800)
    assert s["s_per_100_epochs_derived"] is True


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"schema": "something.else", "schema_version": 1}, "not a cosmobench benchmark"),
        ({"records": []}, "not a cosmobench benchmark"),
        ([1, 2, 3], "not a cosmobench benchmark"),
        ({"schema": SCHEMA, "schema_version": SCHEMA_VERSION + 1}, "newer cosmobench"),
        ({"schema": SCHEMA, "schema_version": "one"}, "invalid schema_version"),
        ({"schema": SCHEMA, "schema_version": 1, "records": []}, "damaged"),
    ],
)
def test_foreign_newer_or_damaged_files_are_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(content))
    with pytest.raises(CosmobenchError, match=message) as info:
        load_results(path)
    assert "\n" not in str(info.value)


def test_not_json_and_missing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CosmobenchError, match="not valid JSON"):
        load_results(bad)
    with pytest.raises(CosmobenchError, match="does not exist"):
        load_results(tmp_path / "nope.json")


def test_record_validation():
    with pytest.raises(CosmobenchError, match="status must be one of"):
        Record(workload="w", mode="eager", size=1, size_name="n", status="fine", device="cpu")
    with pytest.raises(CosmobenchError, match="no timing"):
        Record(workload="w", mode="eager", size=1, size_name="n", status="ok", device="cpu")


def test_records_are_spec_raw_and_environment_and_schema_1_is_still_read(tmp_path):
    import json

    from cosmobench.bench.results import SCHEMA_VERSION, CaseSpec, load_results

    res = make_results()
    rec = res.records[0]
    assert isinstance(rec.spec, CaseSpec) and rec.spec.workload == rec.workload
    assert rec.measured.timing is rec.timing
    d = rec.to_dict()
    assert set(d) == {"spec", "status", "reason", "measured", "info", "summary"}
    assert SCHEMA_VERSION == 2
    # a schema-1 file: flat records
    old = res.to_dict()
    old["schema_version"] = 1
    old["records"] = [{**r["spec"], **r["measured"], "status": r["status"],
                       "reason": r["reason"], "info": r["info"]} for r in old["records"]]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    back = load_results(path)
    assert back.records == res.records
