"""The demo report reads the ellipticity regression slope from new and old metrics files."""

import json

from cosmobench.demo_report import _shape_section


def _metrics(e1):
    joint = {"coverage_68": 0.68, "coverage_95": 0.95}
    return {"n": 10, "overall": {"e1": e1, "e2": {"rmse": 0.06}, "joint": joint}, "baselines": {}}


def test_slope_from_new_and_old_keys(tmp_path):
    for kind, e1 in (("cnn", {"rmse": 0.06, "slope": 0.95}), ("bnn", {"rmse": 0.06, "m": -0.05})):
        (tmp_path / "eval" / kind).mkdir(parents=True)
        (tmp_path / "eval" / kind / "metrics.json").write_text(json.dumps(_metrics(e1)))
    text = "\n".join(_shape_section(tmp_path))
    assert "regression slope (e1)" in text
    rows = [ln for ln in text.splitlines() if ln.startswith(("| CNN", "| BNN"))]
    assert len(rows) == 2 and all("0.95" in r for r in rows), rows
