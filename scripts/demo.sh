#!/usr/bin/env bash
# make demo: the modelctl workflow end to end, on the embedded defaults, in
# one command. A registry (modelctl serve, filesystem storage in a temporary
# directory) on a free 127.0.0.1 port; a "workstation" that makes an FP32
# model with external data, quantizes it to INT8, benchmarks it against its
# parent with quality gates and pushes it with the benchmark; a "server"
# (its own directory, cache and config) that pins it in its YAML config,
# syncs and verifies; then a new version, sync --update, rollback, and a
# tampered file caught by verify. Every command is printed before it runs.
#
#   DEMO_SIZE=64MiB  size of the synthetic model's weights (default 16MiB)
#   KEEP=1           keep the working directory afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MC=$ROOT/bin/modelctl
SIZE=${DEMO_SIZE:-16MiB}
ORT_LIB=${ONNXRUNTIME_LIB:-$ROOT/.cache/onnxruntime-1.30.0/linux-x64/libonnxruntime.so.1}

[[ -x $MC ]] || { echo "demo: $MC is missing: run make demo" >&2; exit 1; }
[[ -e $ORT_LIB ]] || { echo "demo: onnxruntime missing at $ORT_LIB: run make ort" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/modelctl-demo.XXXXXX")
SERVE_PID=
cleanup() {
	local rc=$?
	if [[ -n $SERVE_PID ]]; then
		kill "$SERVE_PID" 2>/dev/null || true
		wait "$SERVE_PID" 2>/dev/null || true
		echo "demo: registry stopped"
	fi
	if [[ ${KEEP:-} == 1 ]]; then
		echo "demo: files kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	if ((rc != 0)); then
		echo "demo: FAILED (exit $rc)" >&2
	fi
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# run CMD...: print the command as a user would type it, then run it.
run() {
	printf '$ %s\n' "$(printf '%q ' "$@" | sed "s#$MC#modelctl#g; s#$WORK/##g")"
	"$@"
}

# Each "machine" has its own cache and config directories.
as_host() {
	local h=$1
	mkdir -p "$WORK/$h/.state/cache" "$WORK/$h/.state/config" "$WORK/$h/.state/docker"
	export MODELCTL_CACHE=$WORK/$h/.state/cache XDG_CONFIG_HOME=$WORK/$h/.state/config DOCKER_CONFIG=$WORK/$h/.state/docker
	cd "$WORK/$h"
}

. "$ROOT/scripts/lib.sh"

step "start a registry: modelctl serve on 127.0.0.1, filesystem storage"
PORT=$(free_port)
REG=127.0.0.1:$PORT
printf '$ modelctl serve --addr %s --root registry &\n' "$REG"
"$MC" serve --addr "$REG" --root "$WORK/registry" --log-level warn >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do
	if "$MC" ls "$REG" >/dev/null 2>&1; then break; fi
	kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
	sleep 0.1
done
"$MC" ls "$REG" >/dev/null
REPO=$REG/sarai/audio-core

step "workstation: an FP32 model with external data ($SIZE of weights)"
as_host workstation
run "$MC" synth -o v1/fp32 --size "$SIZE" --seed 1 --name audio.onnx
ls -l v1/fp32

step "workstation: quantize to INT8 (streaming, bounded memory; portable: exact on CPUs with or without VNNI)"
run "$MC" quantize v1/fp32/audio.onnx -o v1/int8/audio_int8.onnx

step "workstation: benchmark INT8 against its FP32 parent, with quality gates"
run "$MC" bench v1/int8/audio_int8.onnx --baseline v1/fp32/audio.onnx --shape input=1x16x256 \
	--warmup 2 --runs 10 --provider cpu --ort-lib "$ORT_LIB" --min-cosine 0.99
"$MC" bench v1/int8/audio_int8.onnx --baseline v1/fp32/audio.onnx --shape input=1x16x256 \
	--warmup 2 --runs 10 --provider cpu --ort-lib "$ORT_LIB" --min-cosine 0.99 --json >v1/bench.json

step "workstation: a report whose gates failed is refused by push: nothing reaches the registry"
"$MC" bench v1/int8/audio_int8.onnx --baseline v1/fp32/audio.onnx --shape input=1x16x256 \
	--warmup 0 --runs 2 --provider cpu --ort-lib "$ORT_LIB" --min-cosine 0.9999999 --json >v1/strict.json 2>/dev/null || true
printf '$ modelctl bench ... --min-cosine 0.9999999 --json > v1/strict.json   # a gate no INT8 model meets\n'
set +e
run "$MC" push v1/int8/audio_int8.onnx "$REPO:strict" --bench v1/strict.json
rc=$?
set -e
[[ $rc == 2 ]] || { echo "demo: push of a failed report exited $rc, want 2" >&2; exit 1; }
echo "refused (exit $rc), as it should be"

step "workstation: push FP32 and INT8, the benchmark as annotations, FP32 as the parent"
run "$MC" push v1/fp32/audio.onnx "$REPO:fp32"
run "$MC" push v1/int8/audio_int8.onnx "$REPO:int8" --bench v1/bench.json --parent "$REPO:fp32"
run "$MC" inspect "$REPO:int8"

step "server: the application's config, before pinning"
as_host server
mkdir -p config
cat >config/sarai.yaml <<'EOF'
# Sarai: the application reads model_path; modelctl keeps the pin.
server:
  port: 8080

audio_omni:
  name: "Qwen3-Omni-3B-INT8"
  model_path: "models/onnx/audio_int8.onnx"   # its .data file sits next to it
  threads: 2
EOF
cat config/sarai.yaml

step "server: pin the tag (only the two pin lines change)"
run "$MC" pin config/sarai.yaml --key audio_omni "$REPO:int8"
cat config/sarai.yaml

step "server: sync --check runs the model on this CPU against its stored FP32 outputs and gates, then installs it; a second sync transfers nothing"
run "$MC" sync config/sarai.yaml --check --ort-lib "$ORT_LIB"
run "$MC" sync config/sarai.yaml
ls -l models/onnx
run "$MC" verify config/sarai.yaml

step "server: onnx.checker accepts the installed model (checked on a copy)"
mkdir -p check && cp models/onnx/audio_int8.onnx models/onnx/audio_int8.onnx.data check/
printf '$ python3 -c "onnx.checker.check_model(..., full_check=True)" check/audio_int8.onnx\n'
/usr/bin/python3 -c 'import onnx, sys; onnx.checker.check_model(sys.argv[1], full_check=True); print("onnx.checker: ok")' check/audio_int8.onnx
rm -rf check
V1_SUM=$(sha256sum models/onnx/audio_int8.onnx.data | cut -d' ' -f1)

step "workstation: a new version under the same tag"
as_host workstation
run "$MC" synth -o v2/fp32 --size "$SIZE" --seed 2 --name audio.onnx >/dev/null
run "$MC" quantize v2/fp32/audio.onnx -o v2/int8/audio_int8.onnx >/dev/null
run "$MC" push v2/int8/audio_int8.onnx "$REPO:int8"

step "server: sync --update follows the tag and rewrites the pin"
as_host server
run "$MC" sync config/sarai.yaml --update
grep -n artifact config/sarai.yaml
run "$MC" verify config/sarai.yaml

step "the tag's history, kept by the registry"
run "$MC" history "$REPO:int8"

step "roll back: the tag moves to its previous digest; sync follows, from the local cache"
run "$MC" rollback "$REPO:int8"
as_host server
run "$MC" sync config/sarai.yaml --update
run "$MC" verify config/sarai.yaml
NOW_SUM=$(sha256sum models/onnx/audio_int8.onnx.data | cut -d' ' -f1)
[[ $NOW_SUM == "$V1_SUM" ]] || { echo "demo: the rolled-back data file is not v1's" >&2; exit 1; }
echo "the old bytes are back: sha256 $NOW_SUM"

step "tamper with the installed weights: verify refuses, naming the file"
chmod u+w models/onnx/audio_int8.onnx.data
printf 'X' | dd of=models/onnx/audio_int8.onnx.data bs=1 seek=4096 conv=notrunc status=none
printf '$ modelctl verify config/sarai.yaml\n'
if "$MC" verify config/sarai.yaml; then
	echo "demo: verify accepted a tampered file" >&2
	exit 1
else
	echo "(verify exited $?: as it should)"
fi

step "sync repairs it; verify passes"
run "$MC" sync config/sarai.yaml
run "$MC" verify config/sarai.yaml

step "server: what the cache holds; prune keeps the installed version and the recent one"
run "$MC" cache ls
run "$MC" cache prune --dry-run

step "done: the workflow ran end to end"
