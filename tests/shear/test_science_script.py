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
            "--workers", "1"]  # fmt: skip
    mod.main(args)
    result = json.loads((tmp_path / "r" / "shear_science.json").read_text())
    assert set(result["estimators"]) == {"truth", "ksb", "regauss", "cnn", "bnn"}
    assert result["estimators"]["cnn"]["metacal"]["n_galaxies"] == 2
    checked = [c["check"].split(":")[0] for c in result["checks"]]
    assert checked == ["KSB", "REGAUSS", "CNN", "BNN", "CNN + metacal"]
    assert (tmp_path / "r" / "shear_science.md").read_text().startswith("# Shear bias")
    assert (tmp_path / "w" / "shear_estimates" / "key.json").exists()
