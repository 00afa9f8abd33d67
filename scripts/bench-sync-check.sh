#!/usr/bin/env bash
# What sync --check costs: a synthetic model of SIZE is quantized, benchmarked
# against its FP32 parent (the report carries the reference) and pushed to a
# local modelctl serve; then a fresh "server" (empty cache, empty model
# directory) runs `sync` and another `sync --check`, RUNS times each, with
# the page cache dropped before each run where that is allowed. Prints every
# run and the medians, and the difference: the time the check adds.
#
#   scripts/bench-sync-check.sh [SIZE] [RUNS]     (default 16MiB 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
SIZE=${1:-16MiB}
RUNS=${2:-5}
HIDDEN=${HIDDEN:-512}
MC=$PWD/bin/modelctl
ORT_LIB=${ONNXRUNTIME_LIB:-$PWD/.cache/onnxruntime-1.30.0/linux-x64/libonnxruntime.so.1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/modelctl-check.XXXXXX")
SERVE_PID=
trap '[[ -n $SERVE_PID ]] && kill $SERVE_PID 2>/dev/null; rm -rf "$WORK"' EXIT
PORT=$(free_port)
REG=127.0.0.1:$PORT
"$MC" serve --addr "$REG" --root "$WORK/registry" --log-level warn >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do "$MC" ls "$REG" >/dev/null 2>&1 && break; sleep 0.1; done

cd "$WORK"
export MODELCTL_CACHE=$WORK/ws-cache
"$MC" synth -o fp32 --size "$SIZE" --hidden "$HIDDEN" --seed 1 --name model.onnx >/dev/null
"$MC" quantize fp32/model.onnx -o int8/model.onnx >/dev/null
"$MC" bench int8/model.onnx --baseline fp32/model.onnx --shape "input=1x16x$HIDDEN" --warmup 1 --runs 3 \
	--provider cpu --ort-lib "$ORT_LIB" --json >bench.json
"$MC" push int8/model.onnx "$REG/m/model:int8" --bench bench.json >/dev/null
echo "model: $(du -sh int8 | cut -f1) int8 ($SIZE FP32), check reference $(stat -c %s bench.json) bytes of report"

drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
run_sync() { # $1: extra flags
	rm -rf srv && mkdir -p srv/config && printf 'm:\n  model_path: "models/model.onnx"\n' >srv/config/app.yaml
	(cd srv && MODELCTL_CACHE=$WORK/srv/.cache "$MC" pin config/app.yaml --key m "$REG/m/model:int8" >/dev/null)
	drop
	local t0 t1
	t0=$(date +%s.%N)
	(cd srv && MODELCTL_CACHE=$WORK/srv/.cache "$MC" sync config/app.yaml $1 --ort-lib "$ORT_LIB" >/dev/null 2>&1)
	sync
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'
}
plain=() checked=()
for i in $(seq "$RUNS"); do
	plain+=("$(run_sync "")")
	checked+=("$(run_sync --check)")
	printf 'run %d: sync %.3f s, sync --check %.3f s\n' "$i" "${plain[-1]}" "${checked[-1]}"
done
p=$(printf '%s\n' "${plain[@]}" | median)
c=$(printf '%s\n' "${checked[@]}" | median)
printf 'median of %d: sync %.3f s, sync --check %.3f s: the check adds %.3f s\n' "$RUNS" "$p" "$c" "$(awk -v a="$p" -v b="$c" 'BEGIN {print b - a}')"
