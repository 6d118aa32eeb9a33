#!/usr/bin/env bash
# demo.sh [PATH...] — three dweb daemons on 127.0.0.1 share files end to end.
#
# Builds ./build/dweb, then in a temporary work dir starts three `dweb serve`
# processes with their own --data dirs: a bootstrap node (boot), alice
# (--bootstrap boot) and bob (no --bootstrap: the invite URI alone must carry
# what he needs). Alice creates a group and adds PATHs; bob joins from the
# invite, lists the files (checks the count), downloads every one and checks
# that each holds exactly the original's bytes (cmp). Then all three are
# stopped (SIGTERM) and started again on the same addresses, and bob must
# still list the group and its files.
#
# Default PATHs, when none are given: files every fresh Debian machine has —
# a handful of licences from /usr/share/common-licenses, a few
# /usr/share/doc/*/copyright files (renamed <package>-copyright, since a
# group's file name is the base name) and one binary (/usr/bin/perl or
# /bin/bash); those that do not exist are skipped.
# Also works with many files (scripts/demo.sh /usr/share/backgrounds/gnome/*)
# or one large file; every wait is bounded.
#
# Needs: go, and what every Debian machine has (coreutils' `timeout`,
# diffutils' `cmp`); nothing else to install.
# Env: DWEB_DEMO_KEEP=1 keeps the work dir; DWEB_DEMO_GET_TIMEOUT (seconds per
# download, default 900); DWEB_DEMO_GET_FLAGS (words added to each `file get`,
# e.g. --no-store-copy).
#
# Output: progress on stderr; the last line on stdout is exactly one JSON
# object: {"ok": true, "files": N, "bytes": N, "join_ms": N, "download_ms": N}.
# join_ms = bob's join + his first list showing every file; download_ms = all
# downloads: each `dweb file get GROUP NAME -o PATH`, from the CLI's start to
# its exit (the verified download into bob's store and the export to PATH,
# fsynced), one after the other; the cmp against the originals is not timed. On failure: the failed step, the daemons' log tails, exit 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CALL_TIMEOUT=120
GET_TIMEOUT=${DWEB_DEMO_GET_TIMEOUT:-900}
read -r -a GET_FLAGS <<<"${DWEB_DEMO_GET_FLAGS:-}"
NODES=(boot alice bob)
declare -A PID ADDR
STEP=init
WORK=

NAME=demo
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
trap 'fail "command failed (exit $?): $BASH_COMMAND"' ERR

cleanup() {
	stop_all
	remove_work DWEB_DEMO_KEEP
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# --- inputs -----------------------------------------------------------------
STEP="collect files"
if (($# == 0)); then
	for f in Apache-2.0 GPL-3 LGPL-2.1 MPL-2.0 BSD Artistic; do
		if [[ -f /usr/share/common-licenses/$f ]]; then set -- "$@" "/usr/share/common-licenses/$f"; fi
	done
	for p in bash coreutils dpkg libc6 tar; do
		if [[ -f /usr/share/doc/$p/copyright ]]; then set -- "$@" "/usr/share/doc/$p/copyright"; fi
	done
	if [[ -f /usr/bin/perl ]]; then set -- "$@" /usr/bin/perl; elif [[ -f /bin/bash ]]; then set -- "$@" /bin/bash; fi
fi
(($# > 0)) || fail "no input files"

WORK=$(mktemp -d /tmp/dweb-demo.XXXXXX) # short: socket paths must stay < 108 bytes
mkdir -p "$WORK/src" "$WORK/got"

# A group's file name is the base name: give duplicates a unique name
# through a symlink (<parent dir>-<base>).
declare -A SEEN
NAMES=()
SRCS=()
BYTES=0
for p in "$@"; do
	[[ -f $p ]] || fail "not a regular file: $p"
	name=$(basename "$p")
	src=$(realpath "$p")
	if [[ -n ${SEEN[$name]:-} ]]; then
		name="$(basename "$(dirname "$p")")-$name"
		k=2
		while [[ -n ${SEEN[$name]:-} ]]; do name="$k-$(basename "$p")"; k=$((k + 1)); done
		ln -s "$src" "$WORK/src/$name"
		src="$WORK/src/$name"
	fi
	SEEN[$name]=1
	NAMES+=("$name")
	SRCS+=("$src")
	BYTES=$((BYTES + $(stat -L -c %s "$p")))
done
N=${#NAMES[@]}
say "$N files, $BYTES bytes, work dir $WORK"

# --- build and start ----------------------------------------------------------
STEP="build"
mkdir -p "$ROOT/build"
(cd "$ROOT" && go build -o build/dweb ./cmd/dweb)
DWEB=$ROOT/build/dweb

start boot --listen 127.0.0.1:0
STEP="boot contact"
BOOT=$(dweb boot --json node id | jfield contact)
[[ -n $BOOT ]] || fail "no contact from boot"
start alice --listen 127.0.0.1:0 --bootstrap "$BOOT"
start bob --listen 127.0.0.1:0

# --- alice shares ---------------------------------------------------------------
STEP="alice creates the group"
GROUP=$(dweb alice --json group create demo | jfield key)
[[ -n $GROUP ]] || fail "no group key"
STEP="alice adds $N files"
dweb alice --json file add "$GROUP" "${SRCS[@]}" >/dev/null
STEP="alice invites"
INVITE=$(dweb alice group invite "$GROUP")
say "invite: ${INVITE:0:60}... (${#INVITE} characters)"

# --- bob joins, lists, downloads ----------------------------------------------
STEP="bob joins"
t0=$(now_ms)
dweb bob --json group join "$INVITE" >/dev/null
STEP="bob lists the files"
wait_files bob "$N"
t1=$(now_ms)

STEP="bob downloads"
for name in "${NAMES[@]}"; do
	STEP="bob downloads $name"
	timeout "$GET_TIMEOUT" "$DWEB" --data "$WORK/bob" --json file get "$GROUP" "$name" -o "$WORK/got/$name" ${GET_FLAGS[@]+"${GET_FLAGS[@]}"} >/dev/null
done
t2=$(now_ms)

STEP="compare downloads"
for i in "${!NAMES[@]}"; do
	same_bytes "${SRCS[$i]}" "$WORK/got/${NAMES[$i]}" "${NAMES[$i]}"
done
say "all $N files match their originals byte for byte (cmp)"

# --- restart -----------------------------------------------------------------
for n in bob alice boot; do stop "$n"; done
say "stopped all three; restarting on the same addresses"
start boot --listen "${ADDR[boot]}"
start alice --listen "${ADDR[alice]}" --bootstrap "$BOOT"
start bob --listen "${ADDR[bob]}"
STEP="bob lists the group after restart"
dweb bob --json group list | grep -q "\"key\":\"$GROUP\"" || fail "bob no longer lists group $GROUP"
STEP="bob lists the files after restart"
wait_files bob "$N"
say "after restart bob still has the group and its $N files"

STEP="done"
echo "{\"ok\": true, \"files\": $N, \"bytes\": $BYTES, \"join_ms\": $((t1 - t0)), \"download_ms\": $((t2 - t1))}"
