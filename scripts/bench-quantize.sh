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
#   KEEP=dir scripts/bench-quantize.sh         # reuse/keep the models in dir
#
# Limits checked (exit 1 when missed): peak RSS <= 512 MiB, time <= 2x cp,
# INT8 data <= 26% of FP32, speedup >= 2x and cosine >= 0.999 (SPEED=0
# skips the onnxruntime part; it needs a cgo build and `make ort`; CHECK=0
# skips the ONNX checker where python3-onnx is absent).
# cp is timed with a final fsync of the copy, as quantize syncs its output;
# the ratio against cp without fsync is printed too. Both read the source
# from a warm page cache.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
SIZE=${SIZE:-4GiB}
RUNS=${RUNS:-3}
HIDDEN=${HIDDEN:-2048}
MODELCTL=${MODELCTL:-bin/modelctl}
PYTHON=/usr/bin/python3
CHECK=${CHECK:-1}
[ -x "$MODELCTL" ] || { echo "missing $MODELCTL: run make build" >&2; exit 1; }
if [ "$CHECK" != 0 ]; then
	$PYTHON -c 'import onnx' 2>/dev/null || { echo "$PYTHON has no onnx: run make tools (or CHECK=0)" >&2; exit 1; }
fi

if [ -n "${KEEP:-}" ]; then
	work=$KEEP; mkdir -p "$work"
	cleanup() { rm -rf "$work/out" "$work/copy.data" "$work/speed/int8.onnx" "$work/speed/int8.onnx.data"; }
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/bench-quantize.XXXXXX")
	cleanup() { rm -rf "$work"; }
fi
trap cleanup EXIT

calc() { awk "BEGIN{print ($*)}"; }
now() { date +%s.%N; }
. scripts/lib.sh
check() {
	[ "$CHECK" = 0 ] && { echo "(ONNX checker skipped: CHECK=0)" >&2; return 0; }
	$PYTHON -c "import onnx,shutil,sys,os; p=sys.argv[1]; c=os.path.join(os.path.dirname(p),'.check.onnx'); shutil.copy(p,c); onnx.checker.check_model(c, full_check=True); os.remove(c)" "$1"
}

model=$work/fp32-$SIZE/model.onnx
if [ ! -s "$model" ] || [ ! -s "$model.data" ]; then
	echo "generating a synthetic ${SIZE} FP32 model (hidden $HIDDEN)..." >&2
	"$MODELCTL" synth -o "$work/fp32-$SIZE" --size "$SIZE" --hidden "$HIDDEN" >/dev/null
fi
data_bytes=$(stat -c %s "$model.data")
mkdir -p "$work/out"

: >"$work/cp.txt"; : >"$work/cpsync.txt"; : >"$work/q.txt"; : >"$work/rss.txt"
for i in $(seq "$RUNS"); do
	cat "$model.data" >/dev/null
	t0=$(now); cp "$model.data" "$work/copy.data"; t1=$(now); sync "$work/copy.data"; t2=$(now)
	calc "$t1 - $t0" >>"$work/cp.txt"
	calc "$t2 - $t0" >>"$work/cpsync.txt"
	rm -f "$work/copy.data"
	cat "$model.data" >/dev/null
	t0=$(now)
	"$MODELCTL" quantize "$model" -o "$work/out/int8.onnx" --mode int8 --json >"$work/summary.json"
	t1=$(now)
	calc "$t1 - $t0" >>"$work/q.txt"
	sed -n 's/.*"peakRSSBytes":\([0-9]*\).*/\1/p' "$work/summary.json" >>"$work/rss.txt"
	printf 'run %d: cp %.2fs (+fsync %.2fs), quantize %.2fs, peak RSS %d MiB\n' "$i" \
		"$(tail -1 "$work/cp.txt")" "$(tail -1 "$work/cpsync.txt")" "$(tail -1 "$work/q.txt")" "$(( $(tail -1 "$work/rss.txt") >> 20 ))" >&2
done
check "$work/out/int8.onnx"
out_bytes=$(stat -c %s "$work/out/int8.onnx.data")

cp_s=$(median <"$work/cp.txt"); cpsync_s=$(median <"$work/cpsync.txt"); q_s=$(median <"$work/q.txt")
rss_mib=$(( $(sort -n "$work/rss.txt" | tail -1) >> 20 ))
ratio=$(calc "$q_s / $cpsync_s"); ratio_nosync=$(calc "$q_s / $cp_s")
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'model: %s FP32 data %.2f GiB -> INT8 data %.2f GiB (%.1f%%)\n' "$SIZE" "$(calc "$data_bytes/2^30")" "$(calc "$out_bytes/2^30")" "$(calc "100*$out_bytes/$data_bytes")"
printf 'median of %d runs: quantize %.2fs, cp+fsync %.2fs (cp alone %.2fs)\n' "$RUNS" "$q_s" "$cpsync_s" "$cp_s"
printf 'ratio quantize/(cp+fsync): %.2f (limit 2.00); quantize/cp without fsync: %.2f\n' "$ratio" "$ratio_nosync"
printf 'peak RSS (highest of the runs): %d MiB (limit 512)\n' "$rss_mib"
fail=0
[ "$rss_mib" -le 512 ] || { echo "FAIL: peak RSS over 512 MiB"; fail=1; }
[ "$(calc "$ratio <= 2")" = 1 ] || { echo "FAIL: quantize slower than 2x cp"; fail=1; }
[ "$(calc "$out_bytes <= 0.26 * $data_bytes")" = 1 ] || { echo "FAIL: INT8 data over 26% of FP32"; fail=1; }

if [ "${SPEED:-1}" != 0 ]; then
	rm -rf "$work/out" "$work/copy.data"
	sp=$work/speed
	[ -s "$sp/model.onnx" ] || "$MODELCTL" synth -o "$sp" --hidden 1024 --layers 6 >/dev/null
	"$MODELCTL" quantize "$sp/model.onnx" -o "$sp/int8.onnx" --mode int8 >/dev/null
	check "$sp/int8.onnx"
	"$MODELCTL" bench "$sp/int8.onnx" --baseline "$sp/model.onnx" --shape input=1x16x1024 \
		--provider cpu --runs 20 --min-cosine 0.999 --json >"$work/speed.json" || true
	num() { sed -n "$1" "$work/speed.json" | head -1; }
	speedup=$(num 's/^  "speedup": \([0-9.e+-]*\),*$/\1/p')
	cosine=$(num '/"quality_worst"/,/}/s/.*"cosine": \([0-9.e+-]*\),*$/\1/p')
	p50q=$(num '/"model"/,/"baseline"/s/.*"p50": \([0-9.e+-]*\),*$/\1/p')
	p50b=$(num '/"baseline"/,/"speedup"/s/.*"p50": \([0-9.e+-]*\),*$/\1/p')
	[ -n "$speedup" ] && [ -n "$cosine" ] || { echo "FAIL: modelctl bench gave no report:"; cat "$work/speed.json"; exit 1; }
	printf 'onnxruntime, 16 tokens, hidden 1024: INT8 p50 %.1f ms, FP32 p50 %.1f ms, speedup %.2fx (limit 2.00), cosine %.6f (limit 0.999)\n' \
		"$p50q" "$p50b" "$speedup" "$cosine"
	[ "$(calc "$speedup >= 2")" = 1 ] || { echo "FAIL: INT8 less than 2x faster than FP32"; fail=1; }
	[ "$(calc "$cosine >= 0.999")" = 1 ] || { echo "FAIL: INT8 cosine under 0.999"; fail=1; }
fi
[ "$fail" = 0 ] && echo "PASS"
exit $fail
