#!/usr/bin/env bash
# cosmobench GPU suite: every workload and mode on one GPU in under 6 minutes.
#
# Installs nothing. Needs python3 with torch (CUDA), numpy, matplotlib, typer, rich, pytest;
# zuko on PYTHONPATH for `generate` (without it that part records errors); galsim/zarr are
# optional (`simulate` is then recorded as unsupported). Run from the repository root:
#
#     OUT=/some/dir bash benchmarks/gpu_suite.sh          # default OUT: benchmarks/results/gpu
#
# Every part has its own time budget (seconds; the bench's --budget is a wall-clock limit that
# cuts points which cannot finish as `skipped`, and `timeout` is the safety net) and writes its results file as it goes, so a
# part that runs out of time still leaves what it measured. Parts, in order of value (320 s
# at worst; less as the --budget ends parts early):
#   train (CNN+BNN, paper batch sizes, cudagraph / eager / bf16 / channels-last) 55 s,
#   generate (n = 1 ... 50,000) 35 s, infer-cnn (batch 1 ... 4096) 20 s, largest batch 25 s,
#   compile (CNN step, batch 14: compile, compile+bf16, and the compiled step captured in a CUDA
#   graph, compile+cudagraph(+bf16); compilation takes most of it) 75 s, paper (the paper's
#   protocol in fp32: whole epochs from host memory, CNN and BNN at batch 14 / 8, eager and
#   cudagraph; 12 epochs of 2,000 images, 2 untimed, scaled to 100 x 8,000) 45 s, simulate 10 s, compare
#   (figures + report) 15 s, the GPU tests (pytest -m cuda --device cuda) 20 s, the other
#   models/bench tests on the GPU 20 s (cut by the budget if slower).
# Environment: OUT, DEVICE (default cuda), PYTHON (default python3), QUICK=1 (tiny smoke run,
# for checking this script on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
# the commit measured, for results files of a copy without .git (cosmobench.bench.env)
if [ -z "${COSMOBENCH_COMMIT:-}" ] && git rev-parse HEAD > /dev/null 2>&1; then
    COSMOBENCH_COMMIT="$(git rev-parse HEAD)$(git status --porcelain --untracked-files=no \
        | grep -q . && echo +dirty)"
    export COSMOBENCH_COMMIT
fi
mkdir -p "$OUT"
LOG="$OUT/suite.log"
: > "$LOG"
SUITE_START=$(date +%s)

say() { echo "[$(( $(date +%s) - SUITE_START ))s] $*" | tee -a "$LOG"; }

# part NAME BUDGET_S CMD...: run CMD under `timeout`, log its output and its status.
part() {
    local name=$1 budget=$2
    shift 2
    local t0=$(date +%s)
    say "start $name (budget ${budget}s)"
    timeout --kill-after=5 "$budget" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    say "end   $name rc=$rc in $(( $(date +%s) - t0 ))s$([ $rc -eq 124 ] && echo ' (TIME BUDGET HIT)')"
    tail -n 3 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$LOG"
}

if [ "${QUICK:-0}" = 1 ]; then  # smoke run of this script (e.g. DEVICE=cpu)
    TRAIN_B="--batch-sizes 2"; BNN_B="--batch-sizes 2"; GEN_N="--n 1,10"; REP="--repeats 2"
    MAXB="--max-batch-limit 8"; CB="--batch-sizes 2"; INFER_B="--batch-sizes 1"
    PAPER="--batch-sizes 2 --epochs 2 --untimed-epochs 1 --n-train 16"
else
    TRAIN_B=""; BNN_B=""; GEN_N=""; REP="--repeats 10"; MAXB="--max-batch-limit 16384"
    CB="--batch-sizes 14"; INFER_B="--batch-sizes 1,14,256,4096"
    PAPER="--epochs 12 --untimed-epochs 2 --n-train 2000"
fi
BENCH=("$PY" -m cosmobench bench --device "$DEVICE" --no-progress --force --min-block 0.02
       --warmup-max 10)

{
    echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; "$PY" --version
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available())'
    command -v nvidia-smi > /dev/null && nvidia-smi
} > "$OUT/machine.txt" 2>&1

part train 55 "${BENCH[@]}" train-cnn train-bnn $TRAIN_B $REP --budget 48 \
    --modes cudagraph,eager,cudagraph+bf16,bf16,channels-last+bf16 \
    --out "$OUT/bench_train.json"
part generate 35 "${BENCH[@]}" generate $GEN_N --repeats 5 --budget 28 \
    --modes cudagraph+bf16,cudagraph,eager,bf16 --out "$OUT/bench_generate.json"
part infer 20 "${BENCH[@]}" infer-cnn $INFER_B --repeats 5 --budget 12 \
    --modes cudagraph,eager,bf16 --out "$OUT/bench_infer.json"
part maxbatch 25 "${BENCH[@]}" train-cnn train-bnn --batch-sizes 14 --repeats 3 \
    --modes eager --max-batch $MAXB --out "$OUT/bench_maxbatch.json"
part compile 75 "${BENCH[@]}" train-cnn $CB --repeats 5 --budget 68 \
    --modes compile+cudagraph,compile+cudagraph+bf16,compile,compile+bf16 \
    --out "$OUT/bench_compile.json"
part paper-cnn 30 "${BENCH[@]}" train-cnn --protocol paper ${PAPER} \
    $([ "${QUICK:-0}" = 1 ] || echo --batch-sizes 14) --modes eager,cudagraph --budget 20 \
    --out "$OUT/bench_paper_cnn.json"
part paper-bnn 28 "${BENCH[@]}" train-bnn --protocol paper ${PAPER} \
    $([ "${QUICK:-0}" = 1 ] || echo --batch-sizes 8) --modes eager,cudagraph --budget 15 \
    --out "$OUT/bench_paper_bnn.json"
part simulate 10 "${BENCH[@]}" simulate --sim-galaxies 16 --repeats 2 \
    --out "$OUT/bench_simulate.json"
part compare 15 "$PY" -m cosmobench compare "$OUT"/bench_*.json --out "$OUT/compare"
part pytest-gpu 20 "$PY" -m pytest tests/models tests/bench --device "$DEVICE" -q -m cuda \
    -p no:cacheprovider
part pytest 20 "$PY" -m pytest tests/models tests/bench --device "$DEVICE" -q \
    -m "not slow and not cuda" -p no:cacheprovider

say "suite done in $(( $(date +%s) - SUITE_START ))s; results in $OUT (compare/report.md)"
