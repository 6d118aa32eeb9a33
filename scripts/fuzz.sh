#!/usr/bin/env bash
# fuzz.sh [FUZZTIME] — run every fuzz target of the repo, one at a time.
#
# Finds each `func FuzzXxx` in a _test.go file, so a new target is run
# without being listed here, and runs
#
#   go test -run '^$' -fuzz '^FuzzXxx$' -fuzztime FUZZTIME -parallel 1 ./pkg
#
# for it (go test -fuzz takes one package and one target at a time).
# FUZZTIME defaults to 3s, what .ci/run uses; `scripts/fuzz.sh 60s` gives
# each target a minute. One worker each: the machines this runs on are
# shared. Env: DWEB_FUZZ_MINIMIZE, passed as -fuzzminimizetime (default
# 100x: a new input is minimized in at most 100 runs instead of up to
# 60 s, which would eat a short run whole).
#
# Output: go test's own, one block per target, then one line per target
# with its time; exit 1 at the first target that fails (the input that
# failed is written to the package's testdata/fuzz/FuzzXxx/, as go test
# says).
#
# One failure is not a target's: Go 1.26's fuzz coordinator can report its
# own -fuzztime deadline as "context deadline exceeded" when the time runs
# out while a worker is busy (golang/go#75804, fixed in Go 1.27). A run
# that fails with only that line, no failing seed and no input written is
# reported as such and does not fail the script.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${1:-3s}
minimize=${DWEB_FUZZ_MINIMIZE:-100x}

mapfile -t targets < <(grep -rn --include='*_test.go' '^func Fuzz' . | sort)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz.sh: no fuzz targets found" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
times=()
start=$SECONDS
for t in "${targets[@]}"; do
	file=${t%%:*}
	name=${t#*:func }
	name=${name%%(*}
	pkg=./$(dirname "${file#./}")
	echo "== $pkg $name" >&2
	t0=$SECONDS
	note=""
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" -parallel 1 "$pkg" </dev/null 2>&1 | tee "$log"; then
		if grep -q "^--- FAIL: ${name} (" "$log" && grep -qx '    context deadline exceeded' "$log" &&
			! grep -q "^    --- FAIL: ${name}/" "$log" && ! grep -q 'Failing input written to' "$log"; then
			note="  (go test's own deadline error at the end, golang/go#75804; no input failed)"
			echo "fuzz.sh: $name:${note}" >&2
		else
			exit 1
		fi
	fi
	times+=("$(printf '%4ds  %s %s%s' $((SECONDS - t0)) "$pkg" "$name" "$note")")
done
printf '%s\n' "${times[@]}"
echo "fuzz.sh: ${#targets[@]} targets, ${fuzztime} each, $((SECONDS - start)) s in all"
