#!/usr/bin/env bash
# Timer noise of `modelctl bench`: the same model benchmarked against itself
# (--baseline = the model), one intra-op thread, interleaved in one run. The
# two p50s should agree within 15%. Prints each repetition's p50 difference
# and the median over the repetitions.
#
#   quantize/bench/scripts/noise.sh [REPS] [SIZE]      (default 5, 64MiB)
#
# Needs bin/modelctl (make build) and onnxruntime (make ort).
set -euo pipefail
cd "$(dirname "$0")/../../.."
reps=${1:-5}
size=${2:-64MiB}
bin=${MODELCTL_BIN:-./bin/modelctl}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$bin" synth -o "$dir/m" --size "$size" >/dev/null
model="$dir/m/model.onnx"
echo "noise: $model ($size), --threads 1, 5 warmup + 30 timed runs each side, $reps repetitions"
diffs=()
for i in $(seq "$reps"); do
	"$bin" bench "$model" --baseline "$model" --shape input=1x16x256 --threads 1 \
		--provider cpu --warmup 5 --runs 30 --json >"$dir/r$i.json"
	d=$(python3 - "$dir/r$i.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
a, b = r["model"]["latency_ms"]["p50"], r["baseline"]["latency_ms"]["p50"]
print(f"{a:.3f} {b:.3f} {abs(a - b) / min(a, b) * 100:.2f}")
PY
)
	read -r a b pct <<<"$d"
	echo "  run $i: p50 $a ms vs $b ms: differ by $pct%"
	diffs+=("$pct")
done
median=$(printf '%s\n' "${diffs[@]}" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
max=$(printf '%s\n' "${diffs[@]}" | sort -g | tail -1)
echo "noise: p50 difference median ${median}%, max ${max}% (budget 15%)"
awk -v m="$median" 'BEGIN { exit !(m < 15) }' || { echo "noise: median over budget" >&2; exit 1; }
