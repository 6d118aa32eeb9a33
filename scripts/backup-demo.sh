#!/usr/bin/env bash
# backup-demo.sh — a backup server keeps a group's files for members that
# went offline, and survives a SIGKILL during a sync (issue 8 acceptance).
#
# Builds ./build/dweb, then in a temporary work dir starts separate `dweb
# serve` processes on 127.0.0.1, each with its own --data dir:
#
#  1. boot (bootstrap node) and srv (`serve --backup`; its admin URI comes
#     from its first --json ready line);
#  2. m1, m2, m3 (--bootstrap boot): m1 creates a group and invites; m2, m3
#     join; m1 makes the backup server join through its admin URI (`dweb
#     backup join INVITE --server URI`); m1 adds photos, m2 a 300 MB file of
#     random bytes, m3 licences and binaries; wait (bounded) until `dweb
#     backup status --json` on srv shows every file held, then stop m1-m3;
#  3. m4 joins from the invite, lists every file and downloads each one:
#     only srv holds them; every download must hold exactly the original's
#     bytes (cmp);
#  4. m5 joins and adds another large file; once srv has verified a quarter
#     of it (past blobsync's 500 ms / 64 MiB range flushes), srv is killed
#     with SIGKILL, started again on the same address and data dir, and must
#     finish the sync (status: nothing missing; the bytes its status
#     reports resumed must be more than 0 and less than the file, the bytes
#     fetched after the restart less than the file, and the two together
#     cover it); m5 stops and a fresh member m6 downloads the new file from
#     srv alone and compares it with the original. (A member that kept a
#     QUIC connection to the killed process now gets a stateless reset from
#     the restarted one and redials: internal/transport's reset_test.go.)
#
# Photos: /usr/share/backgrounds/gnome/* if present, else stand-ins of about
# their number and weight (up to 25 shared libraries and programs of 256 KiB
# to 2 MiB from /usr/lib/<multiarch> and /usr/bin, which every Debian machine
# has); other files: /usr/share/common-licenses/* (a few) and /usr/bin
# binaries.
#
# Needs: go, what every Debian machine has (coreutils' `timeout` and
# `sha256sum`, diffutils' `cmp`, findutils' `find`; nothing else to install),
# ~1.5 GB free in /tmp. Env: DWEB_DEMO_KEEP=1 keeps the work dir;
# DWEB_BACKUP_DEMO_MB (size of each large file, default 300).
#
# Output: progress on stderr; the last line on stdout is exactly one JSON
# object: {"ok": true, "files": N, "bytes": N, "sync_s": N}: files and bytes
# of the group at the end (every one compared with its original, byte for
# byte, after a download from srv alone); sync_s = seconds from the members'
# last add until srv held everything (step 2). On failure: the failed step,
# the daemons' log tails, exit 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CALL_TIMEOUT=120
SYNC_TIMEOUT=${DWEB_BACKUP_DEMO_SYNC_TIMEOUT:-900} # seconds for srv to hold everything
GET_TIMEOUT=900
MB=${DWEB_BACKUP_DEMO_MB:-300}
NODES=(boot srv m1 m2 m3 m4 m5 m6)
declare -A PID ADDR
STEP=init
WORK=

NAME=backup-demo
LOG_TAIL=20
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
trap 'fail "command failed (exit $?): $BASH_COMMAND"' ERR

cleanup() {
	stop_all
	remove_work DWEB_DEMO_KEEP
}
trap cleanup EXIT

now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# srv_status prints srv's backup status as JSON (empty if srv does not answer).
srv_status() { dweb srv --json backup status 2>>"$WORK/cli.log" || true; }

# wait_synced N: srv's last pass of the group counts N files, all held and
# none missing (bounded by SYNC_TIMEOUT).
wait_synced() {
	local want=$1 i st files=0 held=0 missing=-1 last=0
	for ((i = 0; i < SYNC_TIMEOUT * 2; i++)); do
		st=$(srv_status)
		files=$(jnum files <<<"$st")
		held=$(jnum held <<<"$st")
		missing=$(jnum missing <<<"$st")
		if [[ ${files:-0} -eq $want && ${held:-0} -eq $want && ${missing:--1} -eq 0 ]]; then return 0; fi
		if ((i - last >= 20)); then
			say "srv holds ${held:-?} of ${files:-?} files (want $want)"
			last=$i
		fi
		sleep 0.5
	done
	fail "srv holds ${held:-?} of ${files:-?} files, ${missing:-?} missing, want all $want (after $SYNC_TIMEOUT s)"
}

# --- inputs -----------------------------------------------------------------
STEP="collect files"
WORK=$(mktemp -d /tmp/dweb-bk.XXXXXX) # short: socket paths must stay < 108 bytes
mkdir -p "$WORK/src" "$WORK/got"
# Initialised empty, not just declared: under set -u, bash 5.2 stops at
# ${#F1[@]} of an array that was declared but never assigned.
F1=()
F2=()
F3=()
shopt -s nullglob
for p in /usr/share/backgrounds/gnome/*; do [[ -f $p ]] && F1+=("$p"); done
for f in Apache-2.0 GPL-3 LGPL-2.1 MPL-2.0; do
	[[ -f /usr/share/common-licenses/$f ]] && F3+=("/usr/share/common-licenses/$f")
done
for b in bash tar gzip perl; do [[ -f /usr/bin/$b ]] && F3+=("$(realpath "/usr/bin/$b")"); done
((${#F3[@]} > 0)) || fail "no licences or binaries found"
PHOTOS=photos
if ((${#F1[@]} == 0)); then
	# No photos (a fresh machine has none): stand-ins of about their number
	# and weight, real files every Debian machine has — shared libraries and
	# programs of 256 KiB to 2 MiB from /usr/lib/<multiarch> and /usr/bin,
	# largest first, at most 25, each distinct in name and content from the
	# others and from F3's.
	PHOTOS="stand-ins for photos"
	declare -A TAKEN_NAME TAKEN_SUM
	for p in "${F3[@]}"; do
		TAKEN_NAME[$(basename "$p")]=1
		TAKEN_SUM[$(sha256sum <"$p" | cut -d' ' -f1)]=1
	done
	while IFS= read -r p; do
		((${#F1[@]} < 25)) || break
		name=$(basename "$p")
		sum=$(sha256sum <"$p" | cut -d' ' -f1)
		[[ -z ${TAKEN_NAME[$name]:-} && -z ${TAKEN_SUM[$sum]:-} ]] || continue
		TAKEN_NAME[$name]=1
		TAKEN_SUM[$sum]=1
		F1+=("$p")
	done < <(find /usr/lib/*-linux-gnu* /usr/bin -maxdepth 1 -type f -readable -size +256k -size -2049k -printf '%s %p\n' |
		sort -k1,1nr -k2,2 | cut -d' ' -f2-)
	((${#F1[@]} > 0)) || fail "no photos in /usr/share/backgrounds/gnome and no stand-ins found"
	say "no photos in /usr/share/backgrounds/gnome: ${#F1[@]} libraries and programs stand in for them"
fi
say "making two files of $MB MB from /dev/urandom"
head -c "$((MB * 1024 * 1024))" /dev/urandom >"$WORK/src/big-$MB.bin"
head -c "$((MB * 1024 * 1024))" /dev/urandom >"$WORK/src/late-$MB.bin"
F2=("$WORK/src/big-$MB.bin")
LATE=$WORK/src/late-$MB.bin

# NAMES/SRCS: every file of the group (a file's name in a group is its base
# name); BYTES: their total size.
declare -A SEEN
NAMES=()
SRCS=()
BYTES=0
for p in "${F1[@]}" "${F2[@]}" "${F3[@]}"; do
	name=$(basename "$p")
	[[ -z ${SEEN[$name]:-} ]] || fail "two input files named $name"
	SEEN[$name]=1
	NAMES+=("$name")
	SRCS+=("$p")
	BYTES=$((BYTES + $(stat -L -c %s "$p")))
done
N=${#NAMES[@]}
# Identical files are one blob: count distinct contents (sha256sum is enough
# to tell them apart).
BLOBS=$(for p in "${SRCS[@]}"; do sha256sum <"$p"; done | sort -u | wc -l)
say "$N files ($BLOBS distinct), $BYTES bytes, work dir $WORK"

# --- build and start ----------------------------------------------------------
STEP="build"
mkdir -p "$ROOT/build"
(cd "$ROOT" && go build -o build/dweb ./cmd/dweb)
DWEB=$ROOT/build/dweb

start boot --listen 127.0.0.1:0
STEP="boot contact"
BOOT=$(dweb boot --json node id | jfield contact)
[[ -n $BOOT ]] || fail "no contact from boot"
start srv --listen 127.0.0.1:0 --bootstrap "$BOOT" --backup --backup-interval 1m
STEP="srv admin URI"
ADMIN=$(jfield admin_uri <"$WORK/srv.out" | sed 's/\\u0026/\&/g') # JSON escapes & as \u0026
[[ $ADMIN == dweb+admin:* ]] || fail "srv printed no admin URI on its first start"
for m in m1 m2 m3; do start "$m" --listen 127.0.0.1:0 --bootstrap "$BOOT"; done

# --- members share, srv joins through its admin URI -------------------------------
STEP="m1 creates the group"
GROUP=$(dweb m1 --json group create newsroom | jfield key)
[[ -n $GROUP ]] || fail "no group key"
STEP="m1 invites"
INVITE=$(dweb m1 group invite "$GROUP")
for m in m2 m3; do
	STEP="$m joins"
	dweb "$m" --json group join "$INVITE" >/dev/null
done
STEP="srv joins through its admin URI"
dweb m1 --json backup join "$INVITE" --server "$ADMIN" >/dev/null
say "srv joined group $GROUP through its admin URI"

STEP="m1 adds ${#F1[@]} $PHOTOS"
((${#F1[@]} == 0)) || dweb m1 --json file add "$GROUP" "${F1[@]}" >/dev/null
STEP="m2 adds the $MB MB file"
dweb m2 --json file add "$GROUP" "${F2[@]}" >/dev/null
STEP="m3 adds ${#F3[@]} licences and binaries"
dweb m3 --json file add "$GROUP" "${F3[@]}" >/dev/null
t_added=$(now_s)
STEP="srv syncs"
wait_synced "$BLOBS"
SYNC_S=$(elapsed "$t_added" "$(now_s)")
say "srv holds all $BLOBS blobs ${SYNC_S}s after the last add"
for m in m1 m2 m3; do stop "$m"; done
say "m1, m2, m3 stopped: srv alone holds the files"

# --- m4 downloads everything from srv alone ---------------------------------------
start m4 --listen 127.0.0.1:0 --bootstrap "$BOOT"
STEP="m4 joins"
dweb m4 --json group join "$INVITE" >/dev/null
STEP="m4 lists the files"
wait_files m4 "$N"
t0=$(now_s)
for i in "${!NAMES[@]}"; do
	STEP="m4 downloads ${NAMES[$i]}"
	timeout "$GET_TIMEOUT" "$DWEB" --data "$WORK/m4" --json file get "$GROUP" "${NAMES[$i]}" -o "$WORK/got/${NAMES[$i]}" >/dev/null
	same_bytes "${SRCS[$i]}" "$WORK/got/${NAMES[$i]}" "${NAMES[$i]}"
	rm -f "$WORK/got/${NAMES[$i]}"
done
say "m4 downloaded all $N files from srv alone in $(elapsed "$t0" "$(now_s)")s; all match their originals (cmp)"

# --- a new member's upload; srv killed during its sync ----------------------------
start m5 --listen 127.0.0.1:0 --bootstrap "$BOOT"
STEP="m5 joins"
dweb m5 --json group join "$INVITE" >/dev/null
STEP="m5 adds $(basename "$LATE")"
dweb m5 --json file add "$GROUP" "$LATE" >/dev/null
STEP="srv starts downloading $(basename "$LATE")"
for ((i = 0; ; i++)); do
	((i < 1200)) || fail "srv did not start downloading the new file within 120 s"
	st=$(srv_status)
	if grep -q '"downloading":\[{' <<<"$st" && (($(jnum done <<<"${st#*\"downloading\"}") >= MB * 1024 * 1024 / 4)); then break; fi
	if [[ $(jnum files <<<"$st") -eq $((BLOBS + 1)) && $(jnum missing <<<"$st") -eq 0 ]]; then
		fail "srv finished the new file before it could be killed (raise DWEB_BACKUP_DEMO_MB)"
	fi
	sleep 0.1
done
done_at_kill=$(jnum done <<<"${st#*\"downloading\"}")
STEP="kill srv"
kill -KILL "${PID[srv]}"
wait "${PID[srv]}" 2>/dev/null || true
PID[srv]=
say "srv killed (SIGKILL) with $done_at_kill bytes of the new file verified; restarting"
rm -f "$WORK/srv/dweb.sock"
t_restart=$(now_s)
start srv --listen "${ADDR[srv]}" --bootstrap "$BOOT" --backup --backup-interval 1m
STEP="srv finishes the sync after the crash"
wait_synced "$((BLOBS + 1))"
STEP="srv resumed the download it was killed in"
# The restarted process has downloaded nothing but the new file: the
# bytes its status reports resumed must be that file's, found verified on
# disk from before the kill: some, but not all of it (a download that
# started over resumes 0; a whole file counted as resumed was never cut).
st=$(srv_status)
resumed=$(jnum resumed <<<"$st")
fetched=$(jnum fetched <<<"$st")
size=$(stat -c %s "$LATE")
[[ -n $resumed && -n $fetched ]] || fail "srv's backup status has no resumed or fetched figure: $st"
((resumed > 0)) || fail "srv resumed 0 bytes after its restart: the download started over ($done_at_kill bytes were verified at the kill)"
((resumed < size)) || fail "srv reports $resumed bytes resumed of a $size-byte file: nothing was left to fetch after the kill"
((fetched < size)) || fail "srv fetched $fetched bytes after its restart, the whole $size-byte file again, though it reports $resumed resumed"
((resumed + fetched >= size)) || fail "srv resumed $resumed and fetched $fetched bytes after its restart, less than the file's $size"
say "srv holds all $((BLOBS + 1)) blobs $(elapsed "$t_restart" "$(now_s)")s after its restart: $resumed bytes resumed, $fetched fetched, of $size ($done_at_kill verified at the kill)"
stop m5
start m6 --listen 127.0.0.1:0 --bootstrap "$BOOT"
STEP="m6 joins"
dweb m6 --json group join "$INVITE" >/dev/null
STEP="m6 downloads $(basename "$LATE") from srv alone"
wait_files m6 "$((N + 1))"
timeout "$GET_TIMEOUT" "$DWEB" --data "$WORK/m6" --json file get "$GROUP" "$(basename "$LATE")" -o "$WORK/got/late" >/dev/null
same_bytes "$LATE" "$WORK/got/late" "$(basename "$LATE")"
say "$(basename "$LATE") matches its original after the crash (cmp)"
N=$((N + 1))
BYTES=$((BYTES + $(stat -c %s "$LATE")))

STEP="done"
echo "{\"ok\": true, \"files\": $N, \"bytes\": $BYTES, \"sync_s\": $SYNC_S}"
