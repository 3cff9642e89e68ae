"""simulate --scheduler slurm:SPEC: the spec is read and checked, the job script is right."""

from __future__ import annotations

import json
import subprocess

import pytest

from cosmobench.errors import CosmobenchError

pytest.importorskip("dask_jobqueue")

from cosmobench.sim.cluster import job_script, parse_spec


def _check_script(script: str) -> None:
    assert script.startswith("#!/usr/bin/env bash")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)  # it parses
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --mem=" in script
    assert "#SBATCH -t 02:00:00" in script
    assert "#SBATCH -p short" in script
    assert "distributed.cli.dask_worker tcp://" in script  # workers call back home
    assert "--nworkers 8" in script and "--nthreads 1" in script


def test_inline_spec_makes_a_job_script_that_parses():
    spec = "cores=8,memory=16GB,walltime=02:00:00,queue=short"
    assert parse_spec(spec) == {
        "cores": 8,
        "memory": "16GB",
        "walltime": "02:00:00",
        "queue": "short",
        "processes": 8,
    }
    _check_script(job_script(spec))


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_spec_files_in_yaml_json_toml(tmp_path, suffix):
    opts = {
        "cores": 8,
        "memory": "16GB",
        "walltime": "02:00:00",
        "queue": "short",
        "job_script_prologue": ["source /opt/venv/bin/activate"],
        "job_extra_directives": ["--constraint=cpu"],
    }
    path = tmp_path / f"slurm{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(opts))
    elif suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(opts))
    else:
        path.write_text(
            'cores = 8\nmemory = "16GB"\nwalltime = "02:00:00"\nqueue = "short"\n'
            'job_script_prologue = ["source /opt/venv/bin/activate"]\n'
            'job_extra_directives = ["--constraint=cpu"]\n'
        )
    script = job_script(str(path))
    _check_script(script)
    assert "source /opt/venv/bin/activate" in script
    assert "#SBATCH --constraint=cpu" in script


@pytest.mark.parametrize(
    "spec, message",
    [
        ("cores=8", "give memory"),
        ("cores=8,memory=1GB,gpus=2", "unknown key.*gpus"),
        ("nonsense", "neither a file nor key=value"),
        ("cores=8,,memory=2GB", "not key=value"),
    ],
)
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(CosmobenchError, match=message):
        parse_spec(spec)


def test_simulate_cli_reports_a_bad_slurm_spec(tmp_path, capsys):
    from cosmobench.cli import main

    with pytest.raises(SystemExit) as e:
        main(
            [
                "simulate",
                "--n",
                "4",
                "--out",
                str(tmp_path / "x.zarr"),
                "--scheduler",
                "slurm:cores=2",
                "--no-progress",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("error: Slurm spec: give memory") and "Traceback" not in err
    assert not (tmp_path / "x.zarr").exists()  # nothing written
