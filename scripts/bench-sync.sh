#!/usr/bin/env bash
# bench-sync.sh [FILES] [FILE_BYTES] — time `dweb group sync` of FILES
# files of FILE_BYTES random bytes each (default 10000 x 1024), between
# dweb daemons on 127.0.0.1, with blobsync's batched commits and with the
# old per-file commit (DWEB_BLOB_COMMIT=each) in the same run.
#
# A bootstrap node and alice start; alice creates a group and adds the
# files (one `file add`); then, for each commit mode, a fresh bob daemon
# (DWEB_BLOB_COMMIT set for it) joins from the invite, waits until his list
# shows every file, and runs `group sync`, timed (sync_ms); the sync's own
# report (files fetched, files it could not get) is printed on stderr.
# Prints one JSON object:
#   {"files": N, "file_bytes": N, "batch_sync_ms": N, "batch_fetched": N,
#    "each_sync_ms": N, "each_fetched": N}
# (fetched: the files the sync reports it fetched.)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CALL_TIMEOUT=600
NFILES=${1:-10000}
FBYTES=${2:-1024}
NODES=(boot alice bob-batch bob-each)
declare -A PID ADDR
STEP=init
WORK=

NAME=bench-sync
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
trap 'fail "command failed (exit $?): $BASH_COMMAND"' ERR
cleanup() {
	stop_all
	remove_work DWEB_BENCH_KEEP
}
trap cleanup EXIT
now_ms() { echo $(($(date +%s%N) / 1000000)); }

WORK=$(mktemp -d /tmp/dweb-bsync.XXXXXX)
mkdir -p "$WORK/src"
STEP="make $NFILES files"
head -c $((NFILES * FBYTES)) /dev/urandom | split -a 6 -d -b "$FBYTES" - "$WORK/src/f"

STEP="build"
mkdir -p "$ROOT/build"
(cd "$ROOT" && go build -o build/dweb ./cmd/dweb)
DWEB=$ROOT/build/dweb

start boot --listen 127.0.0.1:0
BOOT=$(dweb boot --json node id | jfield contact)
[[ -n $BOOT ]] || fail "no contact from boot"
start alice --listen 127.0.0.1:0 --bootstrap "$BOOT"
STEP="alice creates the group"
GROUP=$(dweb alice --json group create bench | jfield key)
[[ -n $GROUP ]] || fail "no group key"
STEP="alice adds $NFILES files"
(cd "$WORK/src" && find . -type f -name 'f*' -print0 | sort -z | xargs -0 "$DWEB" --data "$WORK/alice" --json file add "$GROUP" >/dev/null)
INVITE=$(dweb alice group invite "$GROUP")

declare -A MS GOT
for mode in batch each; do
	node=bob-$mode
	serve_in() { local n=$1; shift; DWEB_BLOB_COMMIT=${n#bob-} exec "$@"; }
	start "$node" --listen 127.0.0.1:0
	unset -f serve_in
	STEP="$node joins"
	dweb "$node" --json group join "$INVITE" >/dev/null
	wait_files "$node" "$NFILES"
	STEP="$node syncs"
	t0=$(now_ms)
	dweb "$node" --json group sync "$GROUP" >"$WORK/$node.sync.json"
	t1=$(now_ms)
	MS[$mode]=$((t1 - t0))
	GOT[$mode]=$({ grep -o '"refreshed_files":\[[^]]*\]' "$WORK/$node.sync.json" || true; } | { grep -o '"f[0-9]*"' || true; } | sort -u | wc -l)
	say "$node: group sync of $NFILES files took ${MS[$mode]} ms, fetched ${GOT[$mode]}: $(sed 's/"\(refreshed\|all\)_files":\[[^]]*\]/"\1_files":[...]/g' "$WORK/$node.sync.json" | head -c 600)"
	stop "$node"
done
echo "{\"files\": $NFILES, \"file_bytes\": $FBYTES, \"batch_sync_ms\": ${MS[batch]}, \"batch_fetched\": ${GOT[batch]}, \"each_sync_ms\": ${MS[each]}, \"each_fetched\": ${GOT[each]}}"
