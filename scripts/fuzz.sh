#!/usr/bin/env bash
# Runs every Go fuzz target in the tree (any `func FuzzXxx` in a *_test.go
# file, found afresh on each run) for FUZZTIME each, and writes a report
# (target, package, result, executions) to $1.
#
# Go 1.26's fuzz coordinator can report "context deadline exceeded" at the
# -fuzztime boundary when a starved worker has not answered yet
# (go.dev/issue/75804, fixed in Go 1.27): no input failed and none was
# written. Such a run, and only such a run, is tried once more; a second
# one fails like any other. A real finding prints "Failing input written"
# or a test failure and fails at once.
set -u
report=$1
fuzztime=${FUZZTIME:-6s}
go=${GO:-go}
: >"$report"
fail=0

# deadline_flake LOG: true when the only failure in LOG is the
# coordinator's deadline race.
deadline_flake() {
	grep -q '^    context deadline exceeded$' "$1" &&
		! grep -q -e 'Failing input written' -e 'panic:' -e '_test\.go:[0-9]*:' "$1"
}

for f in $(git ls-files --cached --others --exclude-standard '*_test.go' | sort -u); do
	dir=./$(dirname "$f")
	for t in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*testing\.F).*/\1/p' "$f"); do
		log=$(mktemp)
		status=ok
		for try in 1 2; do
			if "$go" test -run '^$' -fuzz "^$t\$" -fuzztime "$fuzztime" "$dir" >"$log" 2>&1; then
				[ "$try" = 2 ] && status=ok-retried
				break
			fi
			status=FAIL
			deadline_flake "$log" && [ "$try" = 1 ] && { echo "$t: deadline race at -fuzztime (go.dev/issue/75804), no failing input; trying once more"; continue; }
			break
		done
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		found=$(grep -o 'total: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
		printf '%-26s %-22s %-4s execs=%-9s corpus=%s\n' "$t" "$dir" "$status" "${execs:-0}" "${found:-0}" | tee -a "$report"
		if [ "$status" = FAIL ]; then
			fail=1
			grep -v '^fuzz: elapsed' "$log" | tail -40
		fi
		rm -f "$log"
	done
done
exit $fail
