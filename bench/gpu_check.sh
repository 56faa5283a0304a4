#!/usr/bin/env bash
# Every GPU measurement of issue 5 (SANA-Sprint + ControlNet), one JSON line per run on stdout:
#   0. the CUDA-graph test (real-time path == eager frame, no allocation or host sync in a steady frame);
#   1-4. bench.latency on real-size random weights, 0.6B and 1.6B at 512 and 1024 px, eager then optimized
#        (bf16, channels_last + compiled DC-AE, CUDA graphs), per-stage p50 and peak memory;
#   5. the same frame with the DC-AE-Lite decoder (0.6B, 1024 px, optimized);
#   6. the SD-Turbo + ControlNet peer at 512 px, eager vs optimized.
# Budget: about 8 minutes on one H100 (the DC-AE compile, ~45 s per shape, is cached on disk for the second size).
# Usage: bash bench/gpu_check.sh [> results.jsonl]; stderr of every run goes to $LOG (default /tmp/gpu_check.log).
# Dry run of the script's mechanics on a CPU: DEVICE=cpu WEIGHTS="--config tiny" ITERS=2 EXTRA=--eager bash ...
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
LOG=${LOG:-/tmp/gpu_check.log}
: >"$LOG"
START=$SECONDS
DEVICE=${DEVICE:-cuda}
WEIGHTS=${WEIGHTS:---random-weights}
ITERS=${ITERS:-20}
EXTRA=${EXTRA:-}

run() {  # one bench.latency run; its last stdout line is the JSON report (an error object if it failed)
    local out
    # shellcheck disable=SC2086  # WEIGHTS and EXTRA are flag lists
    out=$(timeout "${RUN_TIMEOUT:-240}" "$PY" -m bench.latency "$@" $WEIGHTS --device "$DEVICE" --iters "$ITERS" $EXTRA \
        --json 2>>"$LOG" | tail -n 1)
    if [[ "$out" == \{* ]]; then echo "$out"; else echo "{\"error\": \"bench.latency $* failed, see $LOG\"}"; fi
    echo "[$((SECONDS - START)) s] bench.latency $*" >&2
}

if [[ "$DEVICE" == cuda* ]]; then
    "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/pipelines/sana/test_engine.py >>"$LOG" 2>&1
    echo "{\"test\": \"test_sana_cuda_graph_path\", \"passed\": $([[ $? == 0 ]] && echo true || echo false)}"
fi
for backend in sana-sprint-0.6b sana-sprint-1.6b; do
    for resolution in 512 1024; do
        run --backend "$backend" --resolution "$resolution"
    done
done
run --backend sana-sprint-0.6b --resolution 1024 --decoder lite --optimized
run --backend sd-turbo --resolution 512 --compare
echo "[$((SECONDS - START)) s] done" >&2
