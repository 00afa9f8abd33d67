#!/usr/bin/env bash
# Unpack benchmark: a tar+gzip model layer of SIZE (default 1GiB; a
# synthetic FP32 model, graph and external data, packed with `tar czf` as
# KitOps and ModelPack tools pack a model layer) unpacked RUNS times
# (default 5) by each of, interleaved in one run so the numbers compare:
#   tar:     tar xzf LAYER -C DIR, then sync of every file and directory
#   modelctl internal/unpack: stage, unpack verifying the layer digest as it
#            reads, fsync every file, commit into DIR (unpackbench)
# Prints the median wall and CPU (user+sys) seconds of each and the ratios
# (tar / modelctl: above 1 means modelctl is faster), the median of the
# per-run ratios (each run's two unpacks follow each other, so they share
# the machine's load of that moment), and the fastest run of each. The
# load is printed too: on a shared VM the wall times move with it, the
# CPU less.
#
#   scripts/bench-unpack.sh [SIZE] [RUNS] [gzip|zstd]    e.g. scripts/bench-unpack.sh 256MiB 3
#
# SIZE files:N packs N files of 4 KiB of random bytes in 40 directories
# instead (a code or dataset layer), e.g. scripts/bench-unpack.sh files:2000 5.
# With zstd the layer is tar+zstd (`tar --zstd`, zstd's default level) and
# tar unpacks it with `tar --zstd -xf`.
#
# Needs: go, python3, GNU tar, gzip (zstd for zstd).
set -euo pipefail

SIZE=${1:-1GiB}
RUNS=${2:-5}
COMP=${3:-gzip}
case $COMP in
gzip) TARFLAG=--gzip ;;
zstd) TARFLAG=--zstd ;;
*) echo "bench-unpack: compression $COMP: want gzip or zstd" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-unpack.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
. "$ROOT/scripts/lib.sh"

echo "building unpackbench and the model generator..." >&2
(cd "$ROOT" && go build -o "$WORK/unpackbench" ./internal/unpack/unpackbench && go build -o "$WORK/modelctl" ./cmd/modelctl)
echo "generating a $SIZE synthetic model and its tar+$COMP layer..." >&2
if [[ $SIZE =~ ^files:([0-9]+)$ ]]; then
	/usr/bin/python3 - "$WORK/model" "${BASH_REMATCH[1]}" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%02d" % (i % 40))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d.py" % i), "wb") as f:
        f.write(os.urandom(4096))
EOF
else
	"$WORK/modelctl" synth -o "$WORK/model" --size "$SIZE" >/dev/null
fi
LAYER=$WORK/layer.tar.$COMP
tar $TARFLAG -cf "$LAYER" -C "$WORK/model" .
LAYER_BYTES=$(stat -c %s "$LAYER")
MODEL_BYTES=$(du -cb "$WORK/model" | tail -1 | cut -f1)
DIGEST=sha256:$(sha256sum "$LAYER" | cut -d' ' -f1)
rm -rf "$WORK/model"

# measure CMD... runs CMD and prints "WALL CPU" in seconds (CPU: user+sys
# of CMD and its children).
measure() {
	/usr/bin/python3 - "$@" <<'EOF'
import resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
wall = time.monotonic() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f}")
EOF
}

TAR_WALL=() TAR_CPU=() OURS_WALL=() OURS_CPU=() RATIOS=()
for i in $(seq "$RUNS"); do
	rm -rf "$WORK/a" "$WORK/b"
	read -r w c < <(measure bash -c 'mkdir "$1" && tar "$3" -xf "$2" -C "$1" && find "$1" -print0 | xargs -0 sync' _ "$WORK/a" "$LAYER" "$TARFLAG")
	TAR_WALL+=("$w") TAR_CPU+=("$c")
	read -r w c < <(measure "$WORK/unpackbench" -layer "$LAYER" -compression "$COMP" -digest "$DIGEST" -o "$WORK/b")
	OURS_WALL+=("$w") OURS_CPU+=("$c")
	RATIOS+=("$(awk -v t="${TAR_WALL[-1]}" -v o="$w" 'BEGIN { printf "%.3f", t / o }')")
	echo "run $i: tar ${TAR_WALL[-1]} s (cpu ${TAR_CPU[-1]}), modelctl $w s (cpu $c), load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
diff -r "$WORK/a" "$WORK/b" >/dev/null || { echo "bench-unpack: the two unpacks differ" >&2; exit 1; }

tw=$(median_of "${TAR_WALL[@]}") tc=$(median_of "${TAR_CPU[@]}")
ow=$(median_of "${OURS_WALL[@]}") oc=$(median_of "${OURS_CPU[@]}")
tmin=$(printf '%s\n' "${TAR_WALL[@]}" | sort -g | head -1)
omin=$(printf '%s\n' "${OURS_WALL[@]}" | sort -g | head -1)
echo "layer: $LAYER_BYTES bytes tar+$COMP of $MODEL_BYTES bytes of model files; $RUNS runs; $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
printf 'tar -x + sync:    median %6.2f s wall, %6.2f s cpu\n' "$tw" "$tc"
printf 'modelctl unpack:  median %6.2f s wall, %6.2f s cpu\n' "$ow" "$oc"
awk -v tw="$tw" -v ow="$ow" -v tc="$tc" -v oc="$oc" 'BEGIN { printf "ratio tar/modelctl: wall %.2fx, cpu %.2fx\n", tw / ow, tc / oc }'
printf 'median of the per-run wall ratios: %.2fx (%s)\n' "$(median_of "${RATIOS[@]}")" "${RATIOS[*]}"
awk -v t="$tmin" -v o="$omin" 'BEGIN { printf "fastest run:       tar %.2f s, modelctl %.2f s, ratio %.2fx\n", t, o, t / o }'
