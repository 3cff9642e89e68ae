#!/usr/bin/env bash
# The AVX2-only acceptance runs, on 2 cores, of an AVX-512/AMX machine made to behave as an
# AVX2-only one (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2: torch's and oneDNN's
# kernels capped at AVX2, bf16 reported as not native by cosmobench.bench.hardware):
#   1. `cosmobench bench train-cnn train-bnn generate --device cpu --modes all --budget 60`
#      must return within 75 s, with bf16 modes recorded `unsupported` (and why);
#   2. `cosmobench demo` on its defaults must finish within 10 minutes, without bf16.
# Run on an idle machine from the repository root (about 11 minutes):
#     bash benchmarks/avx2_acceptance.sh            # OUT=/tmp/cosmobench-avx2 CORES=0,1
# Writes benchmarks/results/avx2_acceptance.md (times, CPU model and ISA, statuses).
# NATIVE=1 runs the same without the caps (the machine's own ISA: bf16 included where native)
# and writes benchmarks/results/native_acceptance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-/tmp/cosmobench-avx2}
CORES=${CORES:-0,1}
NAME=avx2_acceptance
if [ "${NATIVE:-0}" != 1 ]; then
    export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
else
    NAME=native_acceptance
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
rm -rf "$OUT"
mkdir -p "$OUT"
RUN=(taskset -c "$CORES" "$PY" -m cosmobench)
cpu=$("$PY" -c 'from cosmobench.bench.hardware import cpu_info; c = cpu_info()
print(f"{c.model}; ISA {c.isa} (flags: {c.flags_isa}; caps: {c.caps or None}); "
      f"bf16 native: {c.bf16_native}")')

load0=$(cut -d" " -f1-3 /proc/loadavg)
t0=$(date +%s.%N)
"${RUN[@]}" bench train-cnn train-bnn generate --device cpu --modes all --budget 60 \
    --out "$OUT/bench_all.json" --force --no-progress > "$OUT/bench.log" 2>&1
t1=$(date +%s.%N)
"${RUN[@]}" demo --out "$OUT/demo" > "$OUT/demo.log" 2>&1
t2=$(date +%s.%N)

load2=$(cut -d" " -f1-3 /proc/loadavg)
bench_s=$(echo "$t1 - $t0" | bc)
demo_s=$(echo "$t2 - $t1" | bc)
statuses=$("$PY" - "$OUT/bench_all.json" <<'PY'
import collections, json, sys
d = json.load(open(sys.argv[1]))
c = collections.Counter(r["status"] for r in d["records"])
bf16 = {r["reason"] for r in d["records"] if "bf16" in r["spec"]["mode"]
        and r["spec"]["mode"].count("cudagraph") == 0 and r["status"] == "unsupported"}
print(f"records by status: {dict(c)}; run wall {d['env']['wall_s']:.1f} s of a 60 s budget; "
      f"bf16 reason: {'; '.join(sorted(bf16)) or 'none (bf16 ran)'}")
PY
)
{
    echo "# ${NAME/_/ } ($(date -u +%F), $(nproc) CPUs visible, cores $CORES)"
    echo
    echo "CPU: $cpu"
    echo
    echo "Load average (1, 5, 15 min) before: $load0; after: $load2 (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo
    echo "| command | wall s | limit |"
    echo "|---|---|---|"
    echo "| \`cosmobench bench train-cnn train-bnn generate --device cpu --modes all --budget 60\` | $bench_s | 75 |"
    echo "| \`cosmobench demo\` (defaults) | $demo_s | 600 |"
    echo
    echo "$statuses"
    echo
    echo "Run by \`benchmarks/avx2_acceptance.sh\`; logs and results in \`$OUT\`."
} > "benchmarks/results/$NAME.md"
cat benchmarks/results/avx2_acceptance.md
