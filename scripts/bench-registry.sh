#!/usr/bin/env bash
# Registry server cost on loopback: for one blob (default 2 GiB), the
# server's CPU seconds per GiB pushed and pulled, wall time, and peak RSS,
# for `modelctl serve` and CNCF distribution v3.1.2 side by side in the same
# run, with the same client (curl: POST, then one streamed PUT; GET to
# /dev/null). Reports medians of RUNS runs and the ratios, and counts the
# sendfile calls of one modelctl pull to show it is served zero-copy.
#
#   scripts/bench-registry.sh            # SIZE_MB=2048 RUNS=3
#   SIZE_MB=512 RUNS=5 scripts/bench-registry.sh
#   BASELINE=/tmp/old/modelctl SERVERS="modelctl baseline" scripts/bench-registry.sh
#                                        # this build against another one, runs
#                                        # interleaved, with the ratios
#
# Runs of the servers alternate (run 1 of each, then run 2 of each, ...), so
# that a slow moment of a shared machine lands on all of them.
set -euo pipefail
shopt -s inherit_errexit 2>/dev/null || true
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-2048}
RUNS=${RUNS:-3}
MODELCTL=${MODELCTL:-bin/modelctl}
DIST=${DIST:-.cache/bin/registry-v3.1.2}
[ -x "$MODELCTL" ] || { echo "missing $MODELCTL: run make build" >&2; exit 1; }
[ -x "$DIST" ] || { echo "missing $DIST: run make tools" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-registry.XXXXXX")
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

blob=$work/blob
echo "writing a ${SIZE_MB} MiB blob..." >&2
head -c "$((SIZE_MB << 20))" /dev/urandom > "$blob"
dgst=sha256:$(sha256sum "$blob" | cut -d' ' -f1)
gib=$(awk "BEGIN{print $SIZE_MB/1024}")
tck=$(getconf CLK_TCK)

. scripts/lib.sh
cpu_seconds() { awk -v t="$tck" '{print ($14+$15)/t}' "/proc/$1/stat"; }
peak_rss_mib() { awk '/VmHWM/{print $2/1024}' "/proc/$1/status"; }
wait_up() { for _ in $(seq 100); do curl -sf -o /dev/null "http://$1/v2/" && return 0; sleep 0.1; done; echo "server on $1 did not start" >&2; return 1; }

start_server() { # kind root port
	case $1 in
	modelctl) "$MODELCTL" serve --addr "127.0.0.1:$3" --root "$2" --log-level error >"$work/server.log" 2>&1 & ;;
	baseline) "$BASELINE" serve --addr "127.0.0.1:$3" --root "$2" --log-level error >"$work/server.log" 2>&1 & ;;
	modelctl-buffered) "$MODELCTL" serve --addr "127.0.0.1:$3" --root "$2" --log-level error --direct-io=false >"$work/server.log" 2>&1 & ;;
	distribution)
		cat >"$work/config.yml" <<YML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $2}
  delete: {enabled: true}
http: {addr: "127.0.0.1:$3"}
YML
		"$DIST" serve "$work/config.yml" >"$work/server.log" 2>&1 & ;;
	esac
	pid=$!
	wait_up "127.0.0.1:$3"
}

one_run() { # kind -> "pushcpu pullcpu pushwall pullwall rss"
	local kind=$1 root=$work/root-$1 port; port=$(free_port)
	rm -rf "$root"; mkdir -p "$root"
	start_server "$kind" "$root" "$port"
	local base=http://127.0.0.1:$port repo=bench/model
	local c0 c1 c2 t0 t1 t2 loc
	c0=$(cpu_seconds "$pid"); t0=$(date +%s.%N)
	loc=$(curl -sf -X POST -D - -o /dev/null "$base/v2/$repo/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
	case $loc in http*) ;; *) loc=$base$loc ;; esac
	case $loc in *\?*) loc="$loc&digest=$dgst" ;; *) loc="$loc?digest=$dgst" ;; esac
	curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$blob" -o /dev/null "$loc"
	c1=$(cpu_seconds "$pid"); t1=$(date +%s.%N)
	curl -sf -o /dev/null "$base/v2/$repo/blobs/$dgst"
	c2=$(cpu_seconds "$pid"); t2=$(date +%s.%N)
	local rss; rss=$(peak_rss_mib "$pid")
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
	rm -rf "$root"
	awk -v c0="$c0" -v c1="$c1" -v c2="$c2" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v g="$gib" -v r="$rss" \
		'BEGIN{printf "%.3f %.3f %.2f %.2f %.1f\n", (c1-c0)/g, (c2-c1)/g, t1-t0, t2-t1, r}'
}


SERVERS=${SERVERS:-modelctl distribution}
case " $SERVERS " in *" baseline "*) [ -x "${BASELINE:-}" ] || { echo "SERVERS has baseline: set BASELINE to a modelctl binary" >&2; exit 1; } ;; esac
declare -A res
for kind in $SERVERS; do : >"$work/$kind.txt"; done
for i in $(seq "$RUNS"); do
	for kind in $SERVERS; do
		line=$(one_run "$kind")
		echo "$kind run $i: push_cpu_s/GiB pull_cpu_s/GiB push_s pull_s peak_rss_MiB = $line" >&2
		echo "$line" >>"$work/$kind.txt"
	done
done
for kind in $SERVERS; do
	for col in 1 2 3 4 5; do
		res[$kind,$col]=$(awk -v c=$col '{print $c}' "$work/$kind.txt" | median)
	done
done

# Zero-copy: count sendfile calls and bytes during one modelctl pull.
sendfile_line="strace not installed"
if command -v strace >/dev/null; then
	root=$work/root-zc; mkdir -p "$root"; port=$(free_port)
	start_server modelctl "$root" "$port"
	curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/v2/zc/blobs/uploads?digest=$dgst" -H 'Content-Type: application/octet-stream' -T "$blob"
	strace -f -e trace=sendfile -o "$work/strace.txt" -p "$pid" & spid=$!
	sleep 0.5
	curl -sf -o /dev/null "http://127.0.0.1:$port/v2/zc/blobs/$dgst"
	sleep 0.2; kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null || true
	calls=$(grep -c 'sendfile(' "$work/strace.txt" || true)
	bytes=$(awk '/sendfile\(/ && / = [0-9]+$/ {s+=$NF} END{print s+0}' "$work/strace.txt")
	sendfile_line="$calls sendfile calls moved $bytes of $((SIZE_MB << 20)) bytes"
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
fi

printf '\nRegistry server cost, %s MiB blob on loopback, median of %s runs (%s)\n' "$SIZE_MB" "$RUNS" "$(nproc) cores"
printf '%-14s %16s %16s %10s %10s %14s\n' server push_cpu_s/GiB pull_cpu_s/GiB push_s pull_s peak_rss_MiB
for kind in $SERVERS; do
	printf '%-14s %16s %16s %10s %10s %14s\n' "$kind" "${res[$kind,1]}" "${res[$kind,2]}" "${res[$kind,3]}" "${res[$kind,4]}" "${res[$kind,5]}"
done
ratio() { # kind col
	awk -v a="${res[modelctl,$2]:-0}" -v b="${res[$1,$2]:-0}" 'BEGIN{printf "%.2f", (b>0)?a/b:0}'
}
case " $SERVERS " in *" distribution "*)
	echo "push CPU modelctl/distribution = $(ratio distribution 1) (goal <= 0.50)"
	echo "pull CPU modelctl/distribution = $(ratio distribution 2)" ;;
esac
case " $SERVERS " in *" baseline "*)
	echo "modelctl/baseline: push CPU $(ratio baseline 1), pull CPU $(ratio baseline 2), push time $(ratio baseline 3), pull time $(ratio baseline 4), peak RSS $(ratio baseline 5)" ;;
esac
echo "peak RSS modelctl = ${res[modelctl,5]} MiB (goal < 64)"
echo "zero-copy pull: $sendfile_line"
