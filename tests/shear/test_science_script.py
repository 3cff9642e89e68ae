"""``benchmarks/shear_science.py`` end to end at a toy size (the script, not its numbers)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "shear_science.py"


@pytest.mark.slow
def test_shear_science_script_runs_every_stage(tmp_path):
    spec = importlib.util.spec_from_file_location("shear_science", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
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
