#!/usr/bin/env bash
# bench-share.sh [SIZE] — the figures of docs/BENCHMARKS.md for sharing a
# file, all taken in one run on this machine, on one file of random bytes.
# SIZE is in MB (10^6 bytes, default 300; 1 GiB is about 1074), or a size
# with a unit: 1GiB, 512MiB, 2GB, 300MB.
#
# What each figure times (the file's page cache is warm for every reader):
#   - join_ms, download_ms, dweb_mb_s: scripts/demo.sh (three `dweb serve`
#     processes on 127.0.0.1: boot, alice, bob) with the file. join_ms is
#     bob's `group join` from the invite plus his first `file list` that
#     shows the file. download_ms is bob's `dweb file get GROUP NAME -o PATH`
#     from the CLI's start to its exit: local API, DHT lookups, the tunnel
#     (Noise over QUIC on loopback), the verified download into bob's store
#     (every chunk group checked before it is written, fsync, rename) and the
#     export to PATH (fsync, rename): the file whole and verified on disk.
#     Alice's `file add` (hashing) and the cmp against the original are not
#     timed.
#   - download_no_store_copy_ms, dweb_no_store_copy_mb_s: scripts/demo.sh
#     again (fresh daemons) with `file get --no-store-copy`: the same
#     download, then the store's verified file is moved to PATH (a link and
#     a rename) instead of copied there, so the node keeps one copy of the
#     file, as Syncthing does. BENCH_SHARE_NO_STORE_COPY=0 skips this run.
#   - b3sum_ms, b3sum_mb_s: `b3sum` of the file (multi-threaded hashing).
#   - cp_ms, cp_mb_s: `cp` of the file plus `sync` of the copy.
#   - syncthing_ms, syncthing_mb_s: two Syncthing instances on 127.0.0.1
#     (Debian's package, installed with apt-get when missing), TCP only:
#     listening on tcp://127.0.0.1:PORT, relays, global and local discovery,
#     NAT traversal, usage and crash reporting and auto-upgrade off, the
#     low-priority (nice) default off, redial every 1 s (not 60: the devices
#     connect before the clock starts); each its own --home in the work dir,
#     configured through its REST API (127.0.0.1, a generated API key).
#     Before the clock starts: the sender's folder (type sendonly, holding a
#     hard link to the file) is added and its scan (SHA-256 of every block)
#     has finished, and the two devices are connected. Timed: from the POST
#     of the receiver's folder (type receiveonly, shared with the sender),
#     the equivalent of accepting the share, to the moment the file stands
#     whole at its final path in the receiver's folder (Syncthing writes a
#     temp file, checks every block's SHA-256, fsyncs, then renames it into
#     place), watched every 20 ms. That covers the cluster-config and index
#     exchange (one file: a few ms) and the verified pull: the counterpart
#     of download_ms, which starts once bob knows the file too. Then (not
#     timed) /rest/db/status of the receiver must say needBytes 0 with
#     inSyncBytes = the size, and cmp must find the same bytes.
#   - syncthing_version: `syncthing --version`'s version.
#   - dweb_vs_syncthing: dweb_mb_s / syncthing_mb_s (>= 1.0: dweb as fast);
#     dweb_no_store_copy_vs_syncthing: the same for --no-store-copy.
#   - load1_start: the 1-minute load average when the run started.
#   - rounds: BENCH_SHARE_ROUNDS=N (default 1) repeats the three timed runs
#     (dweb, dweb --no-store-copy, Syncthing, each with fresh processes and
#     homes; the order reversed every other round, so drift in the machine's
#     other load falls on both sides) N times on the same file. The top-level
#     *_ms figures are then the medians over the rounds, the MB/s figures
#     come from those medians, the *_vs_syncthing ratios are the medians of
#     each round's own ratio, and per_round lists every round's times.
# BENCH_SHARE_SYNCTHING=0 skips Syncthing (its keys are then null);
# BENCH_SHARE_SYNCTHING_TIMEOUT bounds its transfer (seconds, default 900);
# BENCH_SHARE_KEEP=1 keeps the work dir (the Syncthing homes and logs).
# Every wait is bounded; every process started is stopped on exit.
#
# Output: progress on stderr, one JSON object on stdout. MB = 10^6 bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-300}
if [[ $size =~ ^[0-9]+$ ]]; then
	bytes=$((size * 1000000))
elif [[ $size =~ ^([0-9]+)(MB|GB|MiB|GiB)$ ]]; then
	case ${BASH_REMATCH[2]} in
	MB) bytes=$((BASH_REMATCH[1] * 1000000)) ;;
	GB) bytes=$((BASH_REMATCH[1] * 1000000000)) ;;
	MiB) bytes=$((BASH_REMATCH[1] * 1048576)) ;;
	GiB) bytes=$((BASH_REMATCH[1] * 1073741824)) ;;
	esac
else
	echo "usage: scripts/bench-share.sh [SIZE_MB | SIZE{MB,GB,MiB,GiB}]" >&2
	exit 2
fi
rounds=${BENCH_SHARE_ROUNDS:-1}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-share: BENCH_SHARE_ROUNDS must be a positive integer" >&2; exit 2; }
nsc_on=${BENCH_SHARE_NO_STORE_COPY:-1}
st_on=${BENCH_SHARE_SYNCTHING:-1}
st_timeout=${BENCH_SHARE_SYNCTHING_TIMEOUT:-900}
say() { echo "bench-share: $*" >&2; }

# apt_install PKG installs a Debian package (apt-get update first only if
# the plain install fails); progress to stderr.
apt_install() {
	[[ $(id -u) == 0 ]] || { say "$1 not found and not root: apt-get install $1"; exit 1; }
	say "installing $1 (apt-get)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >&2 ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "$1" >&2; }
}
command -v b3sum >/dev/null || { say "b3sum not found (apt-get install b3sum)"; exit 1; }
if [[ $st_on != 0 ]]; then
	command -v syncthing >/dev/null || apt_install syncthing
	command -v curl >/dev/null || apt_install curl
fi

load1=$(cut -d' ' -f1 /proc/loadavg)
work=$(mktemp -d)
ST_PIDS=()
cleanup() {
	local p i
	for p in "${ST_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${ST_PIDS[@]}"; do
		for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	if [[ -n ${BENCH_SHARE_KEEP:-} ]]; then say "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
file="$work/big-$size.bin"
head -c "$bytes" /dev/urandom >"$file"
bytes=$(stat -c %s "$file")

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
rate() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.1f", (ms > 0 ? b / 1e6 / (ms / 1000) : 0) }'; }

cat "$file" >/dev/null # same page-cache state for every reader
t0=$(now_ms); b3sum "$file" >/dev/null; t1=$(now_ms)
b3sum_ms=$((t1 - t0))
t0=$(now_ms); cp "$file" "$work/copy.bin"; sync "$work/copy.bin"; t1=$(now_ms)
cp_ms=$((t1 - t0))
rm -f "$work/copy.bin"

# dweb_run [FLAGS]: scripts/demo.sh with the file, `file get FLAGS`; sets
# DL_MS (download_ms) and JOIN_MS.
dweb_run() {
	local out
	out=$(DWEB_DEMO_GET_FLAGS="${1:-}" scripts/demo.sh "$file" | tail -n 1)
	JOIN_MS=$(sed -n 's/.*"join_ms": *\([0-9]*\).*/\1/p' <<<"$out")
	DL_MS=$(sed -n 's/.*"download_ms": *\([0-9]*\).*/\1/p' <<<"$out")
	if [[ -z $JOIN_MS || -z $DL_MS ]]; then say "demo.sh ${1:-} did not report: $out"; exit 1; fi
	say "dweb file get ${1:-(default export)}: download_ms $DL_MS ($(rate "$bytes" "$DL_MS") MB/s)"
}

# --- Syncthing ---------------------------------------------------------------
ST=
ST_KEY=
declare -A ST_GUI ST_ID ST_LISTEN
ST_USED=" "

# st_fail MSG prints both instances' log tails and exits 1.
st_fail() {
	local s
	say "syncthing: FAILED: $*"
	for s in send recv; do
		if [[ -f $ST/$s.log ]]; then
			echo "----- syncthing $s log (last 25 lines) -----" >&2
			tail -n 25 "$ST/$s.log" >&2 || true
		fi
	done
	exit 1
}

# free_port VAR sets VAR to a TCP port on 127.0.0.1 that nothing accepts
# on and that this run has not handed out yet.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 40000))
		[[ $ST_USED == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			ST_USED+="$p "
			printf -v "$1" %d "$p"
			return 0
		fi
	done
	st_fail "no free port found"
}

# st_api SIDE METHOD PATH [JSON] calls SIDE's REST API (bounded: 30 s).
st_api() {
	local side=$1 method=$2 path=$3
	shift 3
	curl -sS -f --max-time 30 -X "$method" -H "X-API-Key: $ST_KEY" \
		${1:+-H "Content-Type: application/json" --data "$1"} \
		"http://127.0.0.1:${ST_GUI[$side]}$path"
}

# st_num FIELD reads the first number field FIELD of the JSON on stdin.
st_num() { { grep -o '"'"$1"'": *[0-9]*' || true; } | head -n 1 | grep -o '[0-9]*$' || true; }

# st_start SIDE: generates SIDE's home, switches off everything that is
# not TCP on loopback, starts it and waits (bounded) for its REST API.
st_start() {
	local side=$1 home=$ST/$1 listen gui i
	free_port listen
	free_port gui
	ST_GUI[$side]=$gui
	syncthing generate --home="$home" --no-default-folder --skip-port-probing >>"$ST/$side.log" 2>&1 ||
		st_fail "syncthing generate ($side)"
	sed -i \
		-e "s|<listenAddress>.*</listenAddress>|<listenAddress>tcp://127.0.0.1:$listen</listenAddress>|" \
		-e 's|<globalAnnounceEnabled>.*<|<globalAnnounceEnabled>false<|' \
		-e 's|<localAnnounceEnabled>.*<|<localAnnounceEnabled>false<|' \
		-e 's|<relaysEnabled>.*<|<relaysEnabled>false<|' \
		-e 's|<natEnabled>.*<|<natEnabled>false<|' \
		-e 's|<urAccepted>.*<|<urAccepted>-1<|' \
		-e 's|<crashReportingEnabled>.*<|<crashReportingEnabled>false<|' \
		-e 's|<autoUpgradeIntervalH>.*<|<autoUpgradeIntervalH>0<|' \
		-e 's|<startBrowser>.*<|<startBrowser>false<|' \
		-e 's|<setLowPriority>.*<|<setLowPriority>false<|' \
		-e 's|<reconnectionIntervalS>.*<|<reconnectionIntervalS>1<|' \
		"$home/config.xml"
	for opt in "tcp://127.0.0.1:$listen" globalAnnounceEnabled\>false localAnnounceEnabled\>false \
		relaysEnabled\>false natEnabled\>false crashReportingEnabled\>false setLowPriority\>false; do
		grep -q "$opt" "$home/config.xml" || st_fail "config.xml of $side: no $opt after the edit"
	done
	# STMONITORED: no monitor process, the PID is Syncthing itself.
	STMONITORED=1 STNOUPGRADE=1 syncthing serve --home="$home" --no-browser --no-restart --no-upgrade \
		--gui-address="http://127.0.0.1:$gui" --gui-apikey="$ST_KEY" --logflags=3 \
		>>"$ST/$side.log" 2>&1 &
	ST_PIDS+=($!)
	for ((i = 0; i < 300; i++)); do
		if st_api "$side" GET /rest/system/ping >/dev/null 2>&1; then
			ST_ID[$side]=$(st_api "$side" GET /rest/system/status | sed -n 's/.*"myID": *"\([^"]*\)".*/\1/p')
			[[ -n ${ST_ID[$side]} ]] || st_fail "$side: no myID in /rest/system/status"
			ST_LISTEN[$side]=$listen
			say "syncthing $side up: ${ST_ID[$side]:0:7}, tcp://127.0.0.1:$listen, API 127.0.0.1:$gui"
			return 0
		fi
		kill -0 "${ST_PIDS[-1]}" 2>/dev/null || st_fail "$side exited before its API answered"
		sleep 0.1
	done
	st_fail "$side: API not up after 30 s"
}

# st_connected SIDE OTHER: SIDE reports a live connection to OTHER.
st_connected() {
	st_api "$1" GET /rest/system/connections 2>/dev/null | tr -d ' \n' |
		grep -o "\"${ST_ID[$2]}\":{[^}]*}" | grep -q '"connected":true'
}

# st_stop asks both instances to shut down, then reaps them (bounded).
st_stop() {
	local s p i
	for s in send recv; do
		if [[ -n ${ST_GUI[$s]:-} ]]; then st_api "$s" POST /rest/system/shutdown >/dev/null 2>&1 || true; fi
	done
	for p in "${ST_PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	ST_PIDS=()
}

# folder ID PATH TYPE SELF OTHER: a folder's JSON for /rest/config/folders.
folder() {
	printf '{"id": "%s", "label": "%s", "path": "%s", "type": "%s", "rescanIntervalS": 3600, "fsWatcherEnabled": false, "devices": [{"deviceID": "%s"}, {"deviceID": "%s"}]}' \
		"$1" "$1" "$2" "$3" "$4" "$5"
}

# st_run R: round R of Syncthing, with fresh homes in $work/stR; sets ST_MS.
st_run() {
	local i t0 t1 deadline status got
	ST=$work/st$1
	mkdir -p "$ST/send-dir" "$ST/recv-dir"
	ln "$file" "$ST/send-dir/big.bin" 2>/dev/null || cp "$file" "$ST/send-dir/big.bin"
	ST_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	st_start send
	st_start recv

	# Each knows the other at its TCP address.
	st_api send POST /rest/config/devices "{\"deviceID\": \"${ST_ID[recv]}\", \"name\": \"recv\", \"addresses\": [\"tcp://127.0.0.1:${ST_LISTEN[recv]}\"]}" >/dev/null ||
		st_fail "adding recv to send"
	st_api recv POST /rest/config/devices "{\"deviceID\": \"${ST_ID[send]}\", \"name\": \"send\", \"addresses\": [\"tcp://127.0.0.1:${ST_LISTEN[send]}\"]}" >/dev/null ||
		st_fail "adding send to recv"

	# The sender's folder, shared with recv; its scan must finish first.
	st_api send POST /rest/config/folders "$(folder bench "$ST/send-dir" sendonly "${ST_ID[send]}" "${ST_ID[recv]}")" >/dev/null ||
		st_fail "adding the folder to send"
	t0=$(now_ms)
	for ((i = 0; ; i++)); do
		status=$(st_api send GET "/rest/db/status?folder=bench" 2>/dev/null || true)
		if grep -q '"state": *"idle"' <<<"$status" && [[ $(st_num localBytes <<<"$status") == "$bytes" ]]; then break; fi
		((i < 6000)) || st_fail "send's scan not done after 600 s: $status"
		sleep 0.1
	done
	say "syncthing send scanned the file in $(($(now_ms) - t0)) ms (not timed)"
	for ((i = 0; ; i++)); do
		if st_connected recv send && st_connected send recv; then break; fi
		((i < 600)) || st_fail "send and recv not connected after 60 s"
		sleep 0.1
	done
	say "syncthing send and recv connected"

	# Timed: recv accepts the share, until the file stands whole at its path.
	got=$ST/recv-dir/big.bin
	t0=$(now_ms)
	st_api recv POST /rest/config/folders "$(folder bench "$ST/recv-dir" receiveonly "${ST_ID[recv]}" "${ST_ID[send]}")" >/dev/null ||
		st_fail "adding the folder to recv"
	deadline=$((t0 + st_timeout * 1000))
	while [[ ! -f $got ]] || (($(stat -c %s "$got") != bytes)); do
		(($(now_ms) < deadline)) || st_fail "recv does not have the file after $st_timeout s"
		sleep 0.02
	done
	t1=$(now_ms)
	ST_MS=$((t1 - t0))
	for ((i = 0; ; i++)); do
		status=$(st_api recv GET "/rest/db/status?folder=bench" 2>/dev/null || true)
		if [[ $(st_num needBytes <<<"$status") == 0 && $(st_num inSyncBytes <<<"$status") == "$bytes" ]]; then break; fi
		((i < 600)) || st_fail "recv's /rest/db/status not complete 60 s after the file arrived: $status"
		sleep 0.1
	done
	say "syncthing recv reports the folder complete $(($(now_ms) - t1)) ms after the file stood at its path"
	cmp -- "$file" "$got" >&2 || st_fail "recv's file differs from the original"
	say "syncthing: $ST_MS ms ($(rate "$bytes" "$ST_MS") MB/s), same bytes (cmp)"
	st_stop
	if [[ -z ${BENCH_SHARE_KEEP:-} ]]; then rm -rf "$ST"; fi
}

# median N...: the median of integers.
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); printf "%d", (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'; }
# median_ratio A B: the median over the rounds of A[r] / B[r] (times in ms:
# B's time over A's is A's speed over B's), 2 decimals.
median_ratio() {
	local -n a=$1 b=$2
	local r
	for r in "${!a[@]}"; do awk -v x="${a[$r]}" -v y="${b[$r]}" 'BEGIN { printf "%.6f\n", (x > 0 ? y / x : 0) }'; done |
		sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); printf "%.2f", (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2) }'
}

syncthing_version=null
if [[ $st_on != 0 ]]; then
	syncthing_version=\"$(syncthing --version | awk '{print $2}')\"
	say "syncthing $syncthing_version"
fi
R_JOIN=() R_DL=() R_NSC=() R_ST=()
for ((r = 1; r <= rounds; r++)); do
	say "round $r of $rounds"
	legs=(dweb nsc st)
	if ((r % 2 == 0)); then legs=(st nsc dweb); fi
	for leg in "${legs[@]}"; do
		case $leg in
		dweb)
			dweb_run
			R_JOIN[r]=$JOIN_MS R_DL[r]=$DL_MS
			;;
		nsc)
			if [[ $nsc_on != 0 ]]; then
				dweb_run --no-store-copy
				R_NSC[r]=$DL_MS
			fi
			;;
		st)
			if [[ $st_on != 0 ]]; then
				st_run "$r"
				R_ST[r]=$ST_MS
			fi
			;;
		esac
	done
done

join_ms=$(median "${R_JOIN[@]}")
download_ms=$(median "${R_DL[@]}")
dweb_mb_s=$(rate "$bytes" "$download_ms")
nsc_ms=null nsc_mb_s=null syncthing_ms=null syncthing_mb_s=null dweb_vs_syncthing=null nsc_vs_syncthing=null
if ((${#R_NSC[@]})); then
	nsc_ms=$(median "${R_NSC[@]}")
	nsc_mb_s=$(rate "$bytes" "$nsc_ms")
fi
if ((${#R_ST[@]})); then
	syncthing_ms=$(median "${R_ST[@]}")
	syncthing_mb_s=$(rate "$bytes" "$syncthing_ms")
	dweb_vs_syncthing=$(median_ratio R_DL R_ST)
	if ((${#R_NSC[@]})); then nsc_vs_syncthing=$(median_ratio R_NSC R_ST); fi
	say "dweb/syncthing = $dweb_vs_syncthing; with --no-store-copy $nsc_vs_syncthing"
fi
per_round=
for ((r = 1; r <= rounds; r++)); do
	per_round+="${per_round:+, }{\"download_ms\": ${R_DL[r]}, \"download_no_store_copy_ms\": ${R_NSC[r]:-null}, \"syncthing_ms\": ${R_ST[r]:-null}}"
done

printf '{"size_bytes": %d, "join_ms": %d, "download_ms": %d, "dweb_mb_s": %s, "download_no_store_copy_ms": %s, "dweb_no_store_copy_mb_s": %s, "b3sum_ms": %d, "b3sum_mb_s": %s, "cp_ms": %d, "cp_mb_s": %s, "syncthing_ms": %s, "syncthing_mb_s": %s, "syncthing_version": %s, "dweb_vs_syncthing": %s, "dweb_no_store_copy_vs_syncthing": %s, "rounds": %d, "per_round": [%s], "cores": %d, "load1_start": %s}\n' \
	"$bytes" "$join_ms" "$download_ms" "$dweb_mb_s" "$nsc_ms" "$nsc_mb_s" \
	"$b3sum_ms" "$(rate "$bytes" "$b3sum_ms")" "$cp_ms" "$(rate "$bytes" "$cp_ms")" \
	"$syncthing_ms" "$syncthing_mb_s" "$syncthing_version" "$dweb_vs_syncthing" "$nsc_vs_syncthing" "$rounds" "$per_round" "$(nproc)" "$load1"
