"""`cosmobench simulate` and `cosmobench inspect`: end to end, and one-line errors for bad input."""

import subprocess
import sys

import numpy as np
import pytest

from cosmobench.cli import main
from cosmobench.store import open_dataset


def run_cli(args, capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_simulate_then_inspect_with_png(tmp_path, capsys):
    out = tmp_path / "d.zarr"
    args = ["simulate", "--n", "12", "--out", str(out), "--seed", "3", "--chunk-size", "8",
            "--shear", "0.02,-0.01", "--psf", "moffat", "--visits", "10,10,20,20,20,20",
            "--no-progress"]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "wrote 12 galaxies" in stdout
    ds = open_dataset(out)
    assert (
        ds.n == 12
        and ds.config["psf"] == "moffat"
        and ds.config["visits"] == [10, 10, 20, 20, 20, 20]
    )
    np.testing.assert_allclose(ds.column("g1"), 0.02)
    # rerunning the same command on a complete store does nothing and succeeds
    code, stdout, _ = run_cli(args, capsys)
    assert code == 0 and "wrote 12 galaxies" in stdout
    png = tmp_path / "grid.png"
    code, stdout, err = run_cli(["inspect", str(out), "--png", str(png), "--galaxies", "3"], capsys)
    assert code == 0, err
    for needle in ("12 of 12 written", "moffat", "AB mag", "SNR", "sky", "redshift", "visits"):
        assert needle in stdout, needle
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_preset_random_shear_ring_and_cosmos(tmp_path, capsys, cosmos_dir):
    out = tmp_path / "p.zarr"
    code, _, err = run_cli(
        ["simulate", "--n", "4", "--out", str(out), "--preset", "arcelin2021", "--ring",
         "--shear", "random:0.05", "--population", f"cosmos:{cosmos_dir}", "--no-measure",
         "--no-progress"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    ds = open_dataset(out)
    cfg = ds.config
    assert cfg["preset"] == "arcelin2021" and cfg["constants"] == "arcelin2021" and cfg["ring"]
    assert cfg["shear_sigma"] == 0.05 and cfg["population"].startswith("cosmos:")
    assert np.all(ds.column("cosmos_index") >= 0) and np.isnan(ds.column("ksb_e1")).all()
    g1 = ds.column("g1")
    assert g1[0] == g1[1] and g1[0] != 0


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--n", "-5"], ["--n must be a positive"]),
        (
            ["--n", "5", "--psf", "gauss"],
            ["psf must be one of kolmogorov, lsst, seeing, moffat", "gauss"],
        ),
        (["--n", "5", "--population", "sdss"], ["population must be one of builtin, cosmos:DIR"]),
        (["--n", "5", "--population", "cosmos:/no/such/dir"], ["galsim_download_cosmos"]),
        (["--n", "5", "--preset", "dc2"], ["preset must be one of arcelin2021"]),
        (["--n", "5", "--shear", "0.1"], ["--shear must be g1,g2", "random:SIGMA"]),
        (["--n", "5", "--visits", "1,2,3"], ["six positive integers"]),
        (["--n", "5", "--years", "0"], ["years must be > 0"]),
        (["--n", "5", "--years", "2", "--visits", "1,1,1,1,1,1"], ["--years or --visits"]),
        (["--n", "3", "--ring"], ["even n"]),
        (["--n", "5", "--workers", "0"], ["--workers must be >= 1"]),
        (["--n", "5", "--mag-limit", "99"], ["mag_limit must be between"]),
        (["--n", "five"], ["Invalid value for '--n'", "integer"]),
    ],
)
def test_bad_input_is_a_one_line_error_and_writes_nothing(tmp_path, capsys, extra, needles):
    out = tmp_path / "x.zarr"
    code, _, err = run_cli(["simulate", "--out", str(out), "--no-progress", *extra], capsys)
    assert_one_line_error(code, err, *needles)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_with_another_config(tmp_path, capsys):
    out = tmp_path / "d.zarr"
    assert run_cli(["simulate", "--n", "4", "--out", str(out), "--no-progress"], capsys)[0] == 0
    code, _, err = run_cli(
        ["simulate", "--n", "4", "--seed", "9", "--out", str(out), "--no-progress"], capsys
    )
    assert_one_line_error(code, err, "exists with another config", "seed: 0 → 9", "another output")


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(
        ["simulate", "--n", "4", "--out", str(blocker / "d.zarr"), "--no-progress"], capsys
    )
    assert_one_line_error(code, err, "cannot write")
    code, _, err = run_cli(
        ["simulate", "--n", "4", "--out", "/proc/cosmobench/d.zarr", "--no-progress"], capsys
    )
    assert_one_line_error(code, err, "cannot write")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_unreachable_dask_scheduler_writes_nothing(tmp_path, capsys):
    pytest.importorskip("dask.distributed")
    out = tmp_path / "d.zarr"
    code, _, err = run_cli(
        [
            "simulate",
            "--n",
            "4",
            "--out",
            str(out),
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--no-progress",
        ],
        capsys,
    )
    assert_one_line_error(code, err, "cannot reach the Dask scheduler", "local")
    assert not out.exists()


def test_inspect_refuses_corrupt_and_foreign_stores(tmp_path, capsys, tiny_dataset):
    code, _, err = run_cli(["inspect", str(tmp_path / "missing.zarr")], capsys)
    assert_one_line_error(code, err, "does not exist")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    code, _, err = run_cli(["inspect", str(tmp_path / "junk")], capsys)
    assert_one_line_error(code, err, "not a cosmobench data set")
    import zarr

    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w")
    code, _, err = run_cli(["inspect", str(tmp_path / "foreign.zarr")], capsys)
    assert_one_line_error(code, err, "not a cosmobench data set")
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{garbage")
    code, _, err = run_cli(["inspect", str(bad)], capsys)
    assert_one_line_error(code, err, "corrupt")
    code, _, err = run_cli(["inspect", str(tiny_dataset), "--png", "/proc/x/grid.png"], capsys)
    assert code == 2 and "cannot write" in err and "Traceback" not in err


def test_inspect_shows_an_incomplete_store(tmp_path, capsys):
    from cosmobench.sim.run import COLUMNS
    from cosmobench.store import create_or_resume

    create_or_resume(tmp_path / "i.zarr", 10, 5, "simulation", {"seed": 0}, COLUMNS)
    code, stdout, err = run_cli(["inspect", str(tmp_path / "i.zarr")], capsys)
    assert code == 0, err
    assert "0 of 10 written" in stdout and "incomplete" in stdout


def test_inspect_a_generation_store(tmp_path, capsys):
    from cosmobench.store import create_or_resume

    w = create_or_resume(tmp_path / "g.zarr", 6, 6, "generation", {"n": 6}, {}, ("noiseless",))
    rng = np.random.default_rng(0)
    w.write_chunk(0, {"noiseless": rng.gamma(1.0, 50.0, (6, 6, 64, 64))}, {})
    png = tmp_path / "g.png"
    code, stdout, err = run_cli(["inspect", str(tmp_path / "g.zarr"), "--png", str(png)], capsys)
    assert code == 0, err
    assert "generation" in stdout and "flux" in stdout and png.stat().st_size > 5_000


def test_console_script_error_in_a_subprocess(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "cosmobench", "simulate", "--n", "4", "--out", str(tmp_path / "x"),
         "--psf", "airy"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "psf must be one of" in res.stderr
    assert "Traceback" not in res.stderr
