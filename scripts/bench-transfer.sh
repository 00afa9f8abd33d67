#!/usr/bin/env bash
# Transfer benchmark, all on loopback, in one run so the numbers compare:
#   modelctl push/pull against `modelctl serve`
#   oras push/pull     against CNCF distribution v3.1.2
# on a synthetic model of SIZE (default 2GiB), RUNS times each (default 3),
# every run against a fresh registry and a fresh client cache. Each tool
# pulls twice per run: the first pull right after the push (our registry
# writes blobs with O_DIRECT, so it serves them from disk, where distribution
# serves them from the page cache), and a second, timed for the ratio, with
# the blob in the page cache on both sides. Prints the
# medians and the ratios (goal: push >= 2.5x, pull >= 1.8x faster than oras),
# the time of a re-push of the unchanged model (goal: < 1 s), and the bytes a
# push and a pull killed with SIGKILL half-way send again when rerun.
#
#   scripts/bench-transfer.sh [SIZE] [RUNS]      e.g. scripts/bench-transfer.sh 512MiB 5
#
# BASELINE=/path/to/another/modelctl adds that client's push and pull to
# every run (same registry binary, same model), so a change of the client is
# measured against the build before it in one run, and prints the ratios.
#
# Needs: go, python3, .cache/bin/oras and .cache/bin/registry (make tools).
set -euo pipefail

SIZE=${1:-2GiB}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${MODELCTL_TOOLS:-$ROOT/.cache/bin}
ORAS=$TOOLS/oras
REGISTRY=$TOOLS/registry
for t in "$ORAS" "$REGISTRY"; do
	[[ -x $t ]] || { echo "bench-transfer: $t is missing: run 'make tools'" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-transfer.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "building modelctl and the model generator..." >&2
(cd "$ROOT" && go build -o "$WORK/modelctl" ./cmd/modelctl)
MODELCTL=$WORK/modelctl
BASELINE=${BASELINE:-}
echo "generating a $SIZE synthetic model..." >&2
MODEL=$("$MODELCTL" synth -o "$WORK/model" --size "$SIZE")
MODELDIR=$(dirname "$MODEL")
BYTES=$(du -cb "$MODELDIR"/* | tail -1 | cut -f1)

. "$ROOT/scripts/lib.sh"
now() { date +%s.%N; }
wait_http() { for _ in $(seq 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "bench-transfer: $1 did not come up" >&2; exit 1; }

# start_serve / start_distribution set ADDR and PID for a fresh registry.
start_serve() {
	rm -rf "$WORK/serve"; mkdir -p "$WORK/serve"
	ADDR=127.0.0.1:$(free_port)
	"$MODELCTL" serve --addr "$ADDR" --root "$WORK/serve" >"$WORK/serve.log" 2>&1 &
	PID=$!; PIDS+=("$PID")
	wait_http "http://$ADDR/healthz"
}
start_distribution() {
	rm -rf "$WORK/dist"; mkdir -p "$WORK/dist"
	ADDR=127.0.0.1:$(free_port)
	cat >"$WORK/dist.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/dist}, delete: {enabled: true}}
http: {addr: $ADDR, secret: bench}
EOF
	OTEL_TRACES_EXPORTER=none "$REGISTRY" serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
	PID=$!; PIDS+=("$PID")
	wait_http "http://$ADDR/v2/"
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

# timed NAME CMD...: runs CMD, appends its wall time to $WORK/NAME. Dirty
# pages left by the previous step (a registry that just stored 2 GiB without
# fsync) are flushed first, so no command pays for another's writeback.
timed() {
	local name=$1; shift
	local t0 t1
	sync
	t0=$(now); "$@" >/dev/null 2>"$WORK/last.err" || { cat "$WORK/last.err" >&2; exit 1; }; t1=$(now)
	python3 -c "print($t1-$t0)" >>"$WORK/$name"
}

for run in $(seq "$RUNS"); do
	echo "run $run/$RUNS..." >&2
	# modelctl against modelctl serve: fresh registry, fresh cache (so the
	# push hashes the files, as oras does).
	start_serve
	export MODELCTL_CACHE=$WORK/cache-push; rm -rf "$MODELCTL_CACHE"
	timed modelctl_push "$MODELCTL" push "$MODEL" "$ADDR/bench/model:v1"
	timed modelctl_repush "$MODELCTL" push "$MODEL" "$ADDR/bench/model:v1"
	export MODELCTL_CACHE=$WORK/cache-pull; rm -rf "$MODELCTL_CACHE" "$WORK/out-modelctl"
	timed modelctl_pull_first "$MODELCTL" pull "$ADDR/bench/model:v1" -o "$WORK/out-modelctl"
	cmp "$MODELDIR/model.onnx.data" "$WORK/out-modelctl/model.onnx.data"
	rm -rf "$MODELCTL_CACHE" "$WORK/out-modelctl"
	timed modelctl_pull "$MODELCTL" pull "$ADDR/bench/model:v1" -o "$WORK/out-modelctl"
	cmp "$MODELDIR/model.onnx.data" "$WORK/out-modelctl/model.onnx.data"
	rm -rf "$MODELCTL_CACHE" "$WORK/out-modelctl"
	stop

	if [[ -n $BASELINE ]]; then
		# The baseline client against the same registry, cold cache too.
		start_serve
		export MODELCTL_CACHE=$WORK/cache-base-push; rm -rf "$MODELCTL_CACHE"
		timed baseline_push "$BASELINE" push "$MODEL" "$ADDR/bench/model:v1"
		export MODELCTL_CACHE=$WORK/cache-base-pull; rm -rf "$MODELCTL_CACHE" "$WORK/out-base"
		"$BASELINE" pull "$ADDR/bench/model:v1" -o "$WORK/out-base" >/dev/null
		rm -rf "$MODELCTL_CACHE" "$WORK/out-base"
		timed baseline_pull "$BASELINE" pull "$ADDR/bench/model:v1" -o "$WORK/out-base"
		cmp "$MODELDIR/model.onnx.data" "$WORK/out-base/model.onnx.data"
		rm -rf "$MODELCTL_CACHE" "$WORK/out-base"
		stop
	fi

	# oras against CNCF distribution.
	start_distribution
	(cd "$MODELDIR" && timed oras_push "$ORAS" push --plain-http "$ADDR/bench/model:v1" model.onnx model.onnx.data)
	rm -rf "$WORK/out-oras"
	timed oras_pull_first "$ORAS" pull --plain-http "$ADDR/bench/model:v1" -o "$WORK/out-oras"
	cmp "$MODELDIR/model.onnx.data" "$WORK/out-oras/model.onnx.data"
	rm -rf "$WORK/out-oras"
	timed oras_pull "$ORAS" pull --plain-http "$ADDR/bench/model:v1" -o "$WORK/out-oras"
	cmp "$MODELDIR/model.onnx.data" "$WORK/out-oras/model.onnx.data"
	rm -rf "$WORK/out-oras"
	stop
done

python3 - "$WORK" "$SIZE" "$BYTES" "$RUNS" <<'EOF'
import json, statistics, sys
work, size, total, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def med(name):
    return statistics.median(float(x) for x in open(f"{work}/{name}"))
def spread(name):
    v = sorted(float(x) for x in open(f"{work}/{name}"))
    return f"(runs {' '.join(f'{x:.2f}' for x in v)})"
mp, mu, rp = med("modelctl_push"), med("modelctl_pull"), med("modelctl_repush")
op, ou = med("oras_push"), med("oras_pull")
mib = total / (1 << 20)
print(f"model: {size} ({total} bytes), medians of {runs} runs, loopback")
print(f"  modelctl push -> modelctl serve   {mp:7.2f} s  {mib/mp:7.0f} MiB/s  {spread('modelctl_push')}")
print(f"  oras push     -> distribution     {op:7.2f} s  {mib/op:7.0f} MiB/s  {spread('oras_push')}")
print(f"  modelctl pull <- modelctl serve   {mu:7.2f} s  {mib/mu:7.0f} MiB/s  {spread('modelctl_pull')}")
print(f"  oras pull     <- distribution     {ou:7.2f} s  {mib/ou:7.0f} MiB/s  {spread('oras_pull')}")
mf, of = med("modelctl_pull_first"), med("oras_pull_first")
print(f"  first pull after the push (modelctl serve writes blobs with O_DIRECT, so it reads them from disk;")
print(f"  distribution leaves them in the page cache):")
print(f"    modelctl pull {mf:7.2f} s {spread('modelctl_pull_first')}   oras pull {of:7.2f} s {spread('oras_pull_first')}   ratio {of/mf:.2f}x")
print(f"  push speedup {op/mp:.2f}x (goal >= 2.5x)   pull speedup {ou/mu:.2f}x (goal >= 1.8x; second pull of each, blob in page cache on both)")
print(f"  re-push of the unchanged model    {rp:7.3f} s (goal < 1 s)")
import os
if os.path.exists(f"{work}/baseline_push"):
    bp, bu = med("baseline_push"), med("baseline_pull")
    print(f"  baseline client push {bp:7.2f} s {spread('baseline_push')}   this build {mp:7.2f} s   ratio {bp/mp:.2f}x")
    print(f"  baseline client pull {bu:7.2f} s {spread('baseline_pull')}   this build {mu:7.2f} s   ratio {bu/mu:.2f}x")
EOF

# kill -9 half-way through a push and a pull; the reruns report what they sent.
echo "kill -9 during push and pull..." >&2
start_serve
export MODELCTL_CACHE=$WORK/cache-kill; rm -rf "$MODELCTL_CACHE"
"$MODELCTL" push "$MODEL" "$ADDR/bench/kill:v1" --json >/dev/null 2>&1 &
KP=$!
python3 - "$MODELCTL" "$BYTES" <<'EOF'
import json, subprocess, sys, time, urllib.request
mc, total = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 300
# The registry says how much it holds (the client's state only names the
# session while its one streamed PATCH runs).
while time.time() < deadline:
    try:
        ts = json.loads(subprocess.run([mc, "cache", "transfers", "--json"], capture_output=True, check=True).stdout)
    except Exception:
        ts = []
    for t in ts:
        try:
            if t["kind"] != "upload" or t["size"] < total // 4:
                continue
            with urllib.request.urlopen(t["location"]) as r:
                end = int(r.headers.get("Range", "0-0").split("-")[1])
            if end >= t["size"] // 2:
                sys.exit(0)
        except Exception:
            pass
    time.sleep(0.01)
sys.exit("push never got half-way")
EOF
kill -9 $KP; wait $KP 2>/dev/null || true
"$MODELCTL" push "$MODEL" "$ADDR/bench/kill:v1" --json >"$WORK/push-rerun.json"

export MODELCTL_CACHE=$WORK/cache-kill-pull; rm -rf "$MODELCTL_CACHE" "$WORK/out-kill"
"$MODELCTL" pull "$ADDR/bench/kill:v1" -o "$WORK/out-kill" --json >/dev/null 2>&1 &
KP=$!
python3 - "$MODELCTL" "$BYTES" <<'EOF'
import json, subprocess, sys, time
mc, total = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 300
while time.time() < deadline:
    try:
        ts = json.loads(subprocess.run([mc, "cache", "transfers", "--json"], capture_output=True, check=True).stdout)
        if sum(t["done"] for t in ts if t["kind"] == "download") >= total // 2:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.01)
sys.exit("pull never got half-way")
EOF
kill -9 $KP; wait $KP 2>/dev/null || true
"$MODELCTL" pull "$ADDR/bench/kill:v1" -o "$WORK/out-kill" --json >"$WORK/pull-rerun.json"
cmp "$MODELDIR/model.onnx.data" "$WORK/out-kill/model.onnx.data"
stop

python3 - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
p = json.load(open(f"{work}/push-rerun.json"))
data = max(p["files"], key=lambda f: f["size"])
print(f"  push killed half-way: rerun resumed at {data.get('resumedFrom', 0)} of {data['size']} bytes, sent {p['transferred']} bytes")
q = json.load(open(f"{work}/pull-rerun.json"))
print(f"  pull killed half-way: rerun transferred {q['transferred']} of {q['size']} bytes")
EOF
