#!/usr/bin/env bash
# One-command setup: a virtual environment in .venv with cosmobench and its dev tools.
# torch is pinned FIRST: on these machines `pip install torch==2.13.0` takes a CPU wheel from
# local disk, while an unpinned torch (asked for by any dependency) downloads a CUDA build of
# several GB. Override with TORCH_SPEC (e.g. TORCH_SPEC='torch' on a GPU workstation).
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,dask]'
# the commit installed, for results files of a copy without .git (cosmobench.bench.env)
if command -v git > /dev/null && git rev-parse HEAD > /dev/null 2>&1; then
    echo "$(git rev-parse HEAD)$(git status --porcelain --untracked-files=no | grep -q . && echo +dirty)" \
        > src/cosmobench/_commit.txt
fi
.venv/bin/python -c "import torch, galsim, zarr, zuko, surveycodex; print(f'cosmobench ready: torch {torch.__version__}, galsim {galsim.__version__}, zarr {zarr.__version__}')"
