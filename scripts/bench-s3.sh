#!/usr/bin/env bash
# S3 throughput on versitygw v1.8.0 (posix backend, 127.0.0.1), as ratios to
# minio-go's own PutObject/GetObject of the same bytes to the same server in
# the same run (goal: >= 0.8 both ways). Two Go benchmarks, medians of RUNS:
#
#   driver:   the S3 driver's resumable Writer (one session; and Close/resume
#             every 64 MiB from a new driver, as chunked uploads do), its
#             one-pass PutStream, its Move (server-side copy) and its Reader.
#   registry: a blob pushed through the registry on S3 (POST + one PUT with
#             the body; PATCHes of 64 MiB + PUT) and pulled (GET), over HTTP
#             on loopback. MODELCTL_BENCH_SERVE=binary runs it through
#             `modelctl serve --storage s3://...`, else the same handler
#             in-process.
#
#   scripts/bench-s3.sh                       # SIZE_MB=1024 RUNS=5
#   SIZE_MB=256 RUNS=3 scripts/bench-s3.sh
#   MODELCTL_BENCH_PART_SIZE=$((16<<20)) scripts/bench-s3.sh   # another part size
#   scripts/bench-s3.sh --report OUTPUT       # only summarize a saved output
#                                             # ("run N" lines, then benchmark lines)
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-5}
GO=${GO:-go}
export MODELCTL_TOOLS=${MODELCTL_TOOLS:-$PWD/.cache/bin}
[ "${1:-}" = --report ] || [ -x "$MODELCTL_TOOLS/versitygw" ] || { echo "missing $MODELCTL_TOOLS/versitygw: run make tools" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-s3.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/out
if [ "${1:-}" = --report ]; then
	out=$2
	RUNS=$(grep -c '^run ' "$out")
else
	"$GO" test -c -o "$work/s3.test" ./registry/storage/s3/
	echo "benchmarking ${SIZE_MB} MiB, ${RUNS} runs (a few minutes each)..." >&2
	# One process per run, each with its own versitygw, measuring every
	# variant in turn: the baseline and the driver share the machine's load
	# of the moment, and the ratios are taken within each run.
	for run in $(seq "$RUNS"); do
		echo "run $run" >>"$out"
		(cd registry/storage/s3 && MODELCTL_BENCH_SIZE=$((SIZE_MB << 20)) "$work/s3.test" -test.run '^$' \
			-test.bench '^Benchmark(Registry)?Throughput$' -test.benchtime 1x -test.timeout 60m) | tee -a "$out" >&2
	done
fi

# name -> per-run MB/s; names are Benchmark<Group>/<op>=<what>-<procs>.
awk -v runs="$RUNS" '
/^run / { run = $2 }
/^Benchmark.*MB\/s/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 1; i <= NF; i++) if ($(i) == "MB/s") v = $(i-1)
	mbs[name, run] = v; names[name] = 1
}
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	if (n == 0) return 0
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	split("BenchmarkThroughput BenchmarkRegistryThroughput", groups, " ")
	title["BenchmarkThroughput"] = "driver vs minio-go"
	title["BenchmarkRegistryThroughput"] = "registry on S3 vs minio-go"
	for (g = 1; g <= 2; g++) {
		G = groups[g]
		printf "\n%s: median MB/s of %d runs, and the median of the per-run ratios to minio-go\n", title[G], runs
		n = 0
		for (k in names) if (index(k, G "/") == 1) keys[++n] = k
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (keys[j] < keys[i]) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
		for (i = 1; i <= n; i++) {
			k = keys[i]; op = substr(k, length(G) + 2); split(op, p, "=")
			base = G "/" (p[1] == "get" ? "get=minio-GetObject" : "put=minio-PutObject")
			vs = ""; rs = ""
			for (r = 1; r <= runs; r++) {
				if ((k, r) in mbs) vs = vs " " mbs[k, r]
				if ((k, r) in mbs && (base, r) in mbs && mbs[base, r] > 0) rs = rs " " mbs[k, r] / mbs[base, r]
			}
			ratio = (p[2] ~ /^minio-/) ? "-" : sprintf("%.2f", median(rs))
			if (p[1] == "move") ratio = ratio " (copy speed vs PutObject)"
			printf "  %-34s %9.1f MB/s   ratio %s\n", op, median(vs), ratio
		}
		delete keys
	}
}' "$out"
