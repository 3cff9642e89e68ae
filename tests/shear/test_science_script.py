"""``benchmarks/shear_science.py`` end to end at a toy size (the script, not its numbers)."""

import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "shear_science.py"


def test_stage_times_keep_the_time_of_the_run_that_did_the_work(tmp_path, load_script):
    mod = load_script(SCRIPT)
    path = tmp_path / "t.json"
    path.write_text('{"simulate": null}')
    times = mod.StageTimes(path)
    assert times.record("train", 120.0) == 120.0
    again = mod.StageTimes(path)  # a rerun: training reused in 2 s
    assert again.record("train", 2.0) == 120.0
    assert again.record("train", 25.0) == 120.0  # read back, under a quarter of it
    assert again.record("train", 300.0) == 300.0  # it trained again
    assert again.record("simulate", 3.0) is None  # made by an untimed run
    assert again.record("measure", 4.0) == 4.0  # first time: what it took
    assert mod._took(None) == "made earlier" and mod._took(61.4) == "61 s"


@pytest.mark.slow
def test_shear_science_script_runs_every_stage(tmp_path, load_script):
    mod = load_script(SCRIPT)
    args = ["--work", str(tmp_path / "w"), "--results", str(tmp_path / "r"),
            "--n-train", "40", "--n-shear", "6", "--metacal-galaxies", "2",
            "--epochs", "1", "1", "--batch-size", "8", "--samples", "1",
            "--workers", "1", "--n-shear-hsm", "9"]  # fmt: skip
    mod.main(args)
    result = json.loads((tmp_path / "r" / "shear_science.json").read_text())
    assert set(result["estimators"]) == {"truth", "ksb", "regauss", "cnn", "bnn"}
    assert result["estimators"]["cnn"]["metacal"]["n_galaxies"] == 2
    checked = [c["check"].split(":")[0] for c in result["checks"]]
    assert checked == ["KSB", "REGAUSS", "CNN", "BNN", "CNN + metacal"]
    assert (tmp_path / "r" / "shear_science.md").read_text().startswith("# Shear bias")
    assert (tmp_path / "w" / "shear_estimates" / "key.json").exists()
    # KSB and REGAUSS are checked on the larger HSM-only store, the networks on the main one
    hsm = json.loads((tmp_path / "r" / "shear_science_hsm.json").read_text())
    assert set(hsm["estimators"]) == {"truth", "ksb", "regauss"}
    assert hsm["n_galaxies"] == 9
    by = {c["check"].split(":")[0]: c for c in result["checks"]}
    assert by["KSB"]["n_galaxies"] == 9 and by["CNN"]["n_galaxies"] == 6
    assert by["KSB"]["m_err"] == hsm["estimators"]["ksb"]["m_err"]
    # the first galaxies of the HSM store are the main store's (same seed)
    from cosmobench.store import open_dataset

    main, big = (
        open_dataset(tmp_path / "w" / f) for f in ("shear_test.zarr", "shear_test_hsm.zarr")
    )
    assert (main.images("noisy", slice(0, 24)) == big.images("noisy", slice(0, 24))).all()
