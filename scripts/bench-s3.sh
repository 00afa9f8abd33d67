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
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-5}
GO=${GO:-go}
export MODELCTL_TOOLS=${MODELCTL_TOOLS:-$PWD/.cache/bin}
[ -x "$MODELCTL_TOOLS/versitygw" ] || { echo "missing $MODELCTL_TOOLS/versitygw: run make tools" >&2; exit 1; }

out=$(mktemp "${TMPDIR:-/tmp}/bench-s3.XXXXXX")
trap 'rm -f "$out"' EXIT
echo "benchmarking ${SIZE_MB} MiB, ${RUNS} runs (a few minutes)..." >&2
MODELCTL_BENCH_SIZE=$((SIZE_MB << 20)) "$GO" test -run '^$' -bench '^Benchmark(Registry)?Throughput$' \
	-benchtime 1x -count "$RUNS" -timeout 60m ./registry/storage/s3/ | tee "$out" >&2

# name -> median MB/s; names are Benchmark<Group>/<op>=<what>-<procs>.
awk '
/^Benchmark.*MB\/s/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 1; i <= NF; i++) if ($(i) == "MB/s") v = $(i-1)
	vals[name] = vals[name] " " v
}
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
END {
	for (k in vals) med[k] = median(vals[k])
	split("BenchmarkThroughput BenchmarkRegistryThroughput", groups, " ")
	title["BenchmarkThroughput"] = "driver vs minio-go"
	title["BenchmarkRegistryThroughput"] = "registry on S3 vs minio-go"
	for (g = 1; g <= 2; g++) {
		G = groups[g]
		printf "\n%s (median MB/s of %d runs; ratio to minio-go in the same runs)\n", title[G], '"$RUNS"'
		n = 0
		for (k in med) if (index(k, G "/") == 1) keys[++n] = k
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (keys[j] < keys[i]) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
		for (i = 1; i <= n; i++) {
			k = keys[i]; op = substr(k, length(G) + 2); split(op, p, "=")
			base = med[G "/" p[1] "=minio-" (p[1] == "put" ? "PutObject" : "GetObject")]
			if (p[1] == "move") base = med[G "/put=minio-PutObject"]
			ratio = (base > 0 && p[2] !~ /^minio-/) ? sprintf("%.2f", med[k] / base) : "-"
			if (p[1] == "move") ratio = ratio " (copy speed vs PutObject)"
			printf "  %-34s %9.1f MB/s   ratio %s\n", op, med[k], ratio
		}
		delete keys
	}
}' "$out"
