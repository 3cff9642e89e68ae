"""Simulating on a Slurm cluster: ``simulate --scheduler slurm:SPEC`` through dask-jobqueue.

dask-jobqueue's ``SLURMCluster`` (Dask Development Team 2016; https://jobqueue.dask.org)
submits batch jobs that each start Dask workers connecting back to a scheduler running in
the ``simulate`` process; every chunk of the store is one task, written by whichever worker
runs it (the store needs no locks: see ``docs/scaling.md``). The user writes a scheduler
spec, not Python:

- ``slurm:FILE`` — a YAML (``.yaml``/``.yml``), JSON (``.json``) or TOML (``.toml``) mapping;
- ``slurm:key=value,key=value`` — the same keys inline (values read as YAML scalars:
  ``cores=8`` is a number, ``memory=16GB`` a string); lists need a file.

Keys are ``SLURMCluster``'s: ``cores`` and ``memory`` (required: per job), ``processes``
(Dask workers per job; default ``cores``: GalSim runs one thread per worker),
``queue``, ``account``, ``walltime``, ``job_extra_directives`` (more ``#SBATCH`` lines),
``job_script_prologue`` (shell lines before the worker starts: ``module load``, activating
an environment), ``python``, ``interface``, ``local_directory``, ``log_directory``,
``job_name``, ``death_timeout``, ``worker_extra_args``. ``--workers N`` asks for ``N`` Dask
workers in all (``ceil(N / processes)`` jobs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cosmobench.errors import CosmobenchError

__all__ = ["SLURM_KEYS", "parse_spec", "slurm_cluster", "job_script"]

#: The keys a spec may hold (``SLURMCluster`` arguments).
SLURM_KEYS = (
    "cores", "memory", "processes", "queue", "account", "walltime", "job_extra_directives",
    "job_script_prologue", "job_directives_skip", "python", "interface", "local_directory",
    "log_directory", "job_name", "death_timeout", "worker_extra_args", "job_cpu", "job_mem",
    "shebang", "name",
)  # fmt: skip


def _read_file(path: Path) -> Any:
    text = path.read_text()
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
    except Exception as e:  # json, toml and yaml each raise their own errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise CosmobenchError(f"cannot read the Slurm spec {path} ({first})") from None
    raise CosmobenchError(f"Slurm spec {path}: the file must end in .yaml, .yml, .json or .toml")


def parse_spec(spec: str) -> dict[str, Any]:
    """The ``SLURMCluster`` arguments of ``spec`` (a file or ``key=value,...``), checked.

    Raises:
        CosmobenchError: unreadable file, unknown key, or ``cores``/``memory`` missing.
    """
    path = Path(spec)
    if "=" not in spec or path.is_file():
        if not path.is_file():
            raise CosmobenchError(
                f"Slurm spec {spec!r} is neither a file nor key=value pairs "
                "(e.g. slurm:cores=8,memory=16GB,walltime=02:00:00)"
            )
        opts = _read_file(path)
    else:
        import yaml

        opts = {}
        for item in spec.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise CosmobenchError(f"Slurm spec: {item!r} is not key=value")
            opts[key.strip()] = yaml.safe_load(value.strip()) if value.strip() else ""
    if not isinstance(opts, dict):
        raise CosmobenchError(f"Slurm spec {spec!r} must be a mapping of SLURMCluster options")
    unknown = sorted(set(opts) - set(SLURM_KEYS))
    if unknown:
        raise CosmobenchError(
            f"Slurm spec: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SLURM_KEYS)}"
        )
    missing = [k for k in ("cores", "memory") if k not in opts]
    if missing:
        raise CosmobenchError(
            f"Slurm spec: give {' and '.join(missing)} (per job), e.g. slurm:cores=8,memory=16GB"
        )
    opts.setdefault("processes", opts["cores"])
    for key in (
        "job_extra_directives",
        "job_script_prologue",
        "worker_extra_args",
        "job_directives_skip",
    ):
        if isinstance(opts.get(key), str):
            opts[key] = [opts[key]]
    return opts


def slurm_cluster(spec: str) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` (its scheduler runs here; no job is submitted yet)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise CosmobenchError(
            "--scheduler slurm:... needs dask-jobqueue: pip install 'cosmobench[dask]'"
        ) from None
    opts = parse_spec(spec)
    try:
        return SLURMCluster(scheduler_options={"dashboard_address": None}, **opts)
    except (TypeError, ValueError) as e:
        raise CosmobenchError(f"Slurm spec: {e}") from None


def job_script(spec: str) -> str:
    """The batch script each Slurm job of ``spec`` runs (what ``sbatch`` receives)."""
    cluster = slurm_cluster(spec)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def scale(cluster: Any, workers: int) -> None:
    """Ask Slurm for ``workers`` Dask workers; a one-line error where ``sbatch`` fails."""
    try:
        cluster.scale(n=workers)
    except Exception as e:  # the submission fails in a background task or here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CosmobenchError(f"cannot submit the Slurm jobs ({first})") from None
