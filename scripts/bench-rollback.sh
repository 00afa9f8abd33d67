#!/usr/bin/env bash
# Rollback latency: from `modelctl rollback` to the previous model verified on
# disk, when that model is already in the local cache (the usual case: the
# host ran it before). Two synthetic FP32 models of SIZE (default 2GiB) are
# pushed under one tag to `modelctl serve` on loopback; a host pins and syncs
# both (so both are cached); then, RUNS times (default 3):
#
#   rollback REF ; sync CONFIG --update ; verify CONFIG      (timed)
#   tag REF@v2 TAG ; sync CONFIG --update                    (reset, not timed)
#
# It prints each phase per run and the medians. Goal: total < 2 s for 2 GiB.
#
# Then the registry is stopped (an incident) and, RUNS times:
#
#   rollback CONFIG ; verify CONFIG                          (timed)
#   rollback CONFIG --to v2                                  (reset, not timed)
#
# rollback CONFIG takes the previous digest from the local pin history and
# installs it from the cache, hashing every byte of it there first.
#   SIZE=2GiB RUNS=3 BENCH_DIR=/var/tmp ./scripts/bench-rollback.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ROOT=$PWD
SIZE=${SIZE:-2GiB}
RUNS=${RUNS:-3}
MC=${MODELCTL_BIN:-$ROOT/bin/modelctl}
[[ -x $MC ]] || { echo "bench-rollback: $MC missing: run make build" >&2; exit 1; }

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/modelctl-rollback.XXXXXX")
SERVE_PID=
cleanup() {
	[[ -n $SERVE_PID ]] && { kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; }
	rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
"$MC" serve --addr "$REG" --root "$WORK/registry" --log-level warn >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do "$MC" ls "$REG" >/dev/null 2>&1 && break; sleep 0.1; done
REF=$REG/bench/model:prod
export MODELCTL_CACHE=$WORK/cache XDG_CONFIG_HOME=$WORK/config DOCKER_CONFIG=$WORK/docker

echo "bench-rollback: $SIZE models, $RUNS runs, in $WORK"
for v in 1 2; do
	"$MC" synth -o "$WORK/v$v" --size "$SIZE" --seed "$v" --name model.onnx >/dev/null
done
mkdir -p "$WORK/host"
cd "$WORK/host"
printf 'model:\n  model_path: "models/model.onnx"\n' >app.yaml
"$MC" push "$WORK/v1/model.onnx" "$REF" >/dev/null
"$MC" pin app.yaml --key model "$REF" >/dev/null
"$MC" sync app.yaml >/dev/null
V2=$("$MC" push "$WORK/v2/model.onnx" "$REF" --json | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])')
"$MC" sync app.yaml --update >/dev/null
# The pushed sources are not needed any more; what the host has is its
# cache and its installation, as on a real server.
rm -rf "$WORK/v1" "$WORK/v2"

now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a - b }'; }
declare -a T_RB T_SYNC T_VERIFY T_TOTAL
for i in $(seq "$RUNS"); do
	t0=$(now)
	"$MC" rollback "$REF" >/dev/null
	t1=$(now)
	"$MC" sync app.yaml --update >/dev/null
	t2=$(now)
	"$MC" verify app.yaml >/dev/null
	t3=$(now)
	T_RB+=("$(sub "$t1" "$t0")")
	T_SYNC+=("$(sub "$t2" "$t1")")
	T_VERIFY+=("$(sub "$t3" "$t2")")
	T_TOTAL+=("$(sub "$t3" "$t0")")
	printf 'run %d: rollback %.3fs  sync --update %.3fs  verify %.3fs  total %.3fs\n' "$i" "${T_RB[-1]}" "${T_SYNC[-1]}" "${T_VERIFY[-1]}" "${T_TOTAL[-1]}"
	# Back to v2 for the next run (not timed).
	"$MC" tag "$REF@$V2" prod >/dev/null
	"$MC" sync app.yaml --update >/dev/null
done

printf 'median of %d: rollback %.3fs  sync --update %.3fs  verify %.3fs  total %.3fs (goal < 2 s)\n' "$RUNS" \
	"$(median_of "${T_RB[@]}")" "$(median_of "${T_SYNC[@]}")" "$(median_of "${T_VERIFY[@]}")" "$(median_of "${T_TOTAL[@]}")"

# The registry goes away: rollback of the config from the local cache.
kill "$SERVE_PID" 2>/dev/null || true
wait "$SERVE_PID" 2>/dev/null || true
SERVE_PID=
declare -a O_RB O_VERIFY O_TOTAL O_CPU
# CPU time (user + sys) of the rollback too: the elapsed time moves with the
# other load of a shared machine, the CPU time much less.
TIMER=()
[[ -x /usr/bin/time ]] && TIMER=(/usr/bin/time -f '%U %S' -o "$WORK/cpu.txt")
for i in $(seq "$RUNS"); do
	t0=$(now)
	out=$("${TIMER[@]}" "$MC" rollback app.yaml)
	t1=$(now)
	cpu=n/a
	[[ -s $WORK/cpu.txt ]] && cpu=$(awk '{ printf "%.3f", $1 + $2 }' "$WORK/cpu.txt")
	O_CPU+=("$cpu")
	"$MC" verify app.yaml >/dev/null
	t2=$(now)
	grep -q "registry was not consulted" <<<"$out" || { echo "bench-rollback: offline rollback did not come from the cache: $out" >&2; exit 1; }
	O_RB+=("$(sub "$t1" "$t0")")
	O_VERIFY+=("$(sub "$t2" "$t1")")
	O_TOTAL+=("$(sub "$t2" "$t0")")
	printf 'registry stopped, run %d: rollback CONFIG %.3fs (CPU %ss; every byte hashed from the cache)  verify %.3fs  total %.3fs\n' "$i" "${O_RB[-1]}" "$cpu" "${O_VERIFY[-1]}" "${O_TOTAL[-1]}"
	"$MC" rollback app.yaml --to "$V2" >/dev/null
done
printf 'registry stopped, median of %d: rollback CONFIG %.3fs  verify %.3fs  total %.3fs (goal: rollback < 2 s)\n' "$RUNS" \
	"$(median_of "${O_RB[@]}")" "$(median_of "${O_VERIFY[@]}")" "$(median_of "${O_TOTAL[@]}")"
[[ ${O_CPU[0]} != n/a ]] && printf 'registry stopped, median CPU time of rollback CONFIG: %.3fs (user + sys)\n' "$(median_of "${O_CPU[@]}")"
