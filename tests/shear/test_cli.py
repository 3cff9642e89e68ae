"""`cosmobench shear`: end to end on a small store, and one-line errors."""

import json


def assert_error(line: str, code: int, needle: str) -> None:
    assert code == 2 and needle in line, line


def test_shear_end_to_end(shear_store, tmp_path, cli):
    out = tmp_path / "out"
    args = ["shear", str(shear_store), "--estimators", "truth,regauss", "--out", str(out),
            "--metacal", "--metacal-galaxies", "2", "--resamples", "50",
            "--no-progress"]  # fmt: skip
    code, stdout, err = cli(*args)
    assert code == 0, err
    d = json.loads((out / "shear.json").read_text())
    assert (out / "shear.md").exists() and (out / "shear.png").stat().st_size > 1000
    for name in ("truth", "regauss"):
        e = d["estimators"][name]
        for k in ("m1", "m2", "c1", "c2", "m1_err", "m2_err", "c1_err", "c2_err"):
            assert k in e
        assert e["n_used"] + e["n_failed"] == 8
        assert len(e["snr_bins"]["bins"]) == 4 and len(e["size_bins"]["bins"]) == 4
    t = d["estimators"]["truth"]
    assert max(abs(t[k]) for k in ("m1", "m2", "c1", "c2")) < 1e-6
    assert t["metacal"] is None and d["estimators"]["regauss"]["metacal"]["n_galaxies"] == 2


def test_unknown_estimator(shear_store, tmp_path, cli, one_line_error):
    args = ["shear", str(shear_store), "--estimators", "truth,psfex", "--out", str(tmp_path)]
    code, _, err = cli(*args)
    assert_error(one_line_error(code, err), code, "unknown estimator 'psfex'")


def test_not_a_shear_test_store(tiny_dataset, tmp_path, cli, one_line_error):
    args = ["shear", str(tiny_dataset), "--estimators", "truth", "--out", str(tmp_path)]
    code, _, err = cli(*args)
    assert_error(one_line_error(code, err), code, "not a shear-test store")


def test_run_of_the_wrong_kind(shear_store, tmp_path, cli, one_line_error):
    from cosmobench.train import TrainConfig, fit, make_task

    run = tmp_path / "vae"
    fit(make_task("vae"), str(shear_store), TrainConfig(epochs=1, batch_size=8), run,
        progress=False)  # fmt: skip
    args = ["shear", str(shear_store), "--estimators", f"truth,{run}", "--out", str(tmp_path)]
    code, _, err = cli(*args)
    assert_error(one_line_error(code, err), code, "vae")


def test_simulate_shear_test_cli_errors(tmp_path, cli, one_line_error):
    args = ["simulate", "--n", "4", "--shear-test", "0.02", "--chunk-size", "6",
            "--out", str(tmp_path / "x.zarr")]  # fmt: skip
    code, _, err = cli(*args)
    assert_error(one_line_error(code, err), code, "multiple of 4")


def test_killed_measurement_resumes_from_its_finished_blocks(shear_store, tmp_path, monkeypatch):
    import numpy as np

    from cosmobench.shear import ShearConfig, measure_shear, run

    cfg = ShearConfig(estimators=("truth", "regauss"), metacal=True, metacal_galaxies=4,
                      block=2, resamples=20)  # fmt: skip
    whole = measure_shear(shear_store, cfg, progress=False)
    calls = []
    real = run.measure_block

    def dies_after_two(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill
        calls.append(args[2:4])
        return real(*args)

    monkeypatch.setattr(run, "measure_block", dies_after_two)
    units = tmp_path / "estimates"
    try:
        measure_shear(shear_store, cfg, progress=False, resume_dir=units)
    except KeyboardInterrupt:
        pass
    assert len(list(units.glob("unit-*.npz"))) == 2
    (units / "unit-000000006-000000008-0.npz").write_bytes(b"torn")  # never trusted
    calls.clear()
    monkeypatch.setattr(run, "measure_block", lambda *a: calls.append(a[2:4]) or real(*a))
    resumed = measure_shear(shear_store, cfg, progress=False, resume_dir=units)
    assert sorted(calls) == [(4, 6), (6, 8)]  # only what the kill left unmeasured
    for name in ("regauss",):
        a, b = whole["estimators"][name], resumed["estimators"][name]
        assert np.allclose([a["m1"], a["c2"]], [b["m1"], b["c2"]], equal_nan=True)
        assert a["metacal"]["m"] == b["metacal"]["m"] or np.isnan(a["metacal"]["m"])
    calls.clear()
    measure_shear(shear_store, cfg, progress=False, resume_dir=units)
    assert calls == []  # all reused
    more = ShearConfig(**{**cfg.to_dict(), "metacal_galaxies": 6})
    measure_shear(shear_store, more, progress=False, resume_dir=units)
    assert calls == [(4, 6)]  # metacalibrated now; the raw-only blocks are reused
    calls.clear()
    changed = ShearConfig(**{**cfg.to_dict(), "seed": 1})  # another metacal noise: remeasure
    measure_shear(shear_store, changed, progress=False, resume_dir=units)
    assert len(calls) == 4
