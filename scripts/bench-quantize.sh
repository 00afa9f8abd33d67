#!/usr/bin/env bash
# INT8 quantization of a synthetic FP32 model (default 4 GiB of weights in
# external data): peak RSS of `modelctl quantize` and its wall time against
# `cp` of the same data file, measured in the same run, medians of RUNS runs.
# The output passes the ONNX checker. Then the speed of INT8 against FP32 in
# onnxruntime at 16 tokens (`modelctl bench`, p50 of 20 interleaved runs) on
# a 288 MiB synthetic model (hidden 1024, 6 blocks), with cosine similarity.
#
#   scripts/bench-quantize.sh                  # SIZE=4GiB RUNS=3
#   SIZE=1GiB RUNS=5 scripts/bench-quantize.sh
#   KEEP=dir scripts/bench-quantize.sh         # reuse/keep the model in dir
#
# Limits checked (exit 1 when missed): peak RSS <= 512 MiB, time <= 2x cp,
# INT8 data <= 26% of FP32, speedup >= 2x and cosine >= 0.999 (SPEED=0
# skips the onnxruntime part; it needs a cgo build and `make ort`).
# cp is timed with a final fsync of the copy, as quantize syncs its output;
# the ratio against cp without fsync is printed too.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
SIZE=${SIZE:-4GiB}
RUNS=${RUNS:-3}
HIDDEN=${HIDDEN:-2048}
MODELCTL=${MODELCTL:-bin/modelctl}
PYTHON=/usr/bin/python3
[ -x "$MODELCTL" ] || { echo "missing $MODELCTL: run make build" >&2; exit 1; }
$PYTHON -c 'import onnx' 2>/dev/null || { echo "$PYTHON has no onnx: run make tools" >&2; exit 1; }

if [ -n "${KEEP:-}" ]; then
	work=$KEEP; mkdir -p "$work"
	cleanup() { rm -rf "$work/out" "$work/copy.data" "$work/speed/int8.onnx" "$work/speed/int8.onnx.data"; }
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/bench-quantize.XXXXXX")
	cleanup() { rm -rf "$work"; }
fi
trap cleanup EXIT

model=$work/fp32-$SIZE/model.onnx
if [ ! -s "$model" ] || [ ! -s "$model.data" ]; then
	echo "generating a synthetic ${SIZE} FP32 model (hidden $HIDDEN)..." >&2
	"$MODELCTL" synth -o "$work/fp32-$SIZE" --size "$SIZE" --hidden "$HIDDEN" >/dev/null
fi
data_bytes=$(stat -c %s "$model.data")
mkdir -p "$work/out"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >"$work/cp.txt"; : >"$work/cpsync.txt"; : >"$work/q.txt"; : >"$work/rss.txt"
for i in $(seq "$RUNS"); do
	# Warm the page cache the same way for both: each reads a cached file.
	cat "$model.data" >/dev/null
	t0=$(now); cp "$model.data" "$work/copy.data"; t1=$(now); sync "$work/copy.data"; t2=$(now)
	echo "$t1 - $t0" | bc -l >>"$work/cp.txt"
	echo "$t2 - $t0" | bc -l >>"$work/cpsync.txt"
	rm -f "$work/copy.data"
	cat "$model.data" >/dev/null
	t0=$(now)
	/usr/bin/time -f '%M' -o "$work/time.txt" "$MODELCTL" quantize "$model" -o "$work/out/int8.onnx" --mode int8 >"$work/summary.txt"
	t1=$(now)
	echo "$t1 - $t0" | bc -l >>"$work/q.txt"
	tail -1 "$work/time.txt" >>"$work/rss.txt"
	echo "run $i: cp $(tail -1 "$work/cp.txt" | xargs printf %.2f)s (+sync $(tail -1 "$work/cpsync.txt" | xargs printf %.2f)s), quantize $(tail -1 "$work/q.txt" | xargs printf %.2f)s, peak RSS $(( $(tail -1 "$work/rss.txt") / 1024 )) MiB" >&2
done
$PYTHON -c "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)" "$work/out/int8.onnx"
out_bytes=$(stat -c %s "$work/out/int8.onnx.data")

cp_s=$(median <"$work/cp.txt"); cpsync_s=$(median <"$work/cpsync.txt"); q_s=$(median <"$work/q.txt")
rss_mib=$(( $(median <"$work/rss.txt" | cut -d. -f1) / 1024 ))
ratio=$(echo "$q_s / $cpsync_s" | bc -l); ratio_nosync=$(echo "$q_s / $cp_s" | bc -l)
cat "$work/summary.txt"
printf 'model: %s FP32 data %.2f GiB -> INT8 data %.2f GiB (%.1f%%)\n' "$SIZE" "$(echo "$data_bytes/2^30" | bc -l)" "$(echo "$out_bytes/2^30" | bc -l)" "$(echo "100*$out_bytes/$data_bytes" | bc -l)"
printf 'median of %d runs: quantize %.2fs, cp+fsync %.2fs (cp alone %.2fs)\n' "$RUNS" "$q_s" "$cpsync_s" "$cp_s"
printf 'ratio quantize/cp+fsync: %.2f (limit 2.00); quantize/cp without fsync: %.2f\n' "$ratio" "$ratio_nosync"
printf 'peak RSS: %d MiB (limit 512)\n' "$rss_mib"
fail=0
[ "$rss_mib" -le 512 ] || { echo "FAIL: peak RSS over 512 MiB"; fail=1; }
[ "$(echo "$ratio <= 2" | bc -l)" = 1 ] || { echo "FAIL: quantize slower than 2x cp"; fail=1; }
[ "$(echo "$out_bytes <= 0.26 * $data_bytes" | bc -l)" = 1 ] || { echo "FAIL: INT8 data over 26% of FP32"; fail=1; }

if [ "${SPEED:-1}" != 0 ]; then
	rm -rf "$work/out" "$work/copy.data"
	sp=$work/speed
	[ -s "$sp/model.onnx" ] || "$MODELCTL" synth -o "$sp" --hidden 1024 --layers 6 >/dev/null
	"$MODELCTL" quantize "$sp/model.onnx" -o "$sp/int8.onnx" --mode int8 >/dev/null
	$PYTHON -c "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)" "$sp/int8.onnx"
	"$MODELCTL" bench "$sp/int8.onnx" --baseline "$sp/model.onnx" --shape input=1x16x1024 \
		--provider cpu --runs 20 --min-cosine 0.999 --json >"$work/speed.json" || true
	read -r speedup cosine <<<"$($PYTHON -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["speedup"], r["quality_worst"]["cosine"])' "$work/speed.json")"
	printf 'onnxruntime, 16 tokens, hidden 1024: INT8 p50 %.1f ms, FP32 p50 %.1f ms, speedup %.2fx (limit 2.00), cosine %.6f (limit 0.999)\n' \
		"$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["latency_ms"]["p50"])' "$work/speed.json")" \
		"$($PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))["baseline"]["latency_ms"]["p50"])' "$work/speed.json")" \
		"$speedup" "$cosine"
	[ "$(echo "$speedup >= 2" | bc -l)" = 1 ] || { echo "FAIL: INT8 less than 2x faster than FP32"; fail=1; }
	[ "$(echo "$cosine >= 0.999" | bc -l)" = 1 ] || { echo "FAIL: INT8 cosine under 0.999"; fail=1; }
fi
[ "$fail" = 0 ] && echo "PASS"
exit $fail
