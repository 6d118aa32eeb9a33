# lib.sh — helpers shared by the end-to-end scripts (demo.sh,
# backup-demo.sh, nat-test.sh). Source it after setting:
#
#   NAME      the script's name, prefixed to every message
#   NODES     array of node names (each a daemon with data dir $WORK/NODE)
#   PID ADDR  associative arrays (declare -A) the helpers fill
#   STEP      the current step, named in failures
#   WORK      the work dir once made (empty before)
#   DWEB      the dweb binary, CALL_TIMEOUT (seconds per CLI call)
#
# Optional: LOG_TAIL (daemon log lines shown on failure, default 25);
# serve_in NODE CMD... (a function that runs the daemon command, e.g. in a
# network namespace; default: runs it here).

say() { echo "$NAME: $*" >&2; }

# fail MSG prints the failed step, each daemon's log tail, and exits 1.
fail() {
	trap - ERR
	echo "$NAME: FAILED at step '$STEP': $*" >&2
	if [[ -n $WORK ]]; then
		local n
		for n in "${NODES[@]}"; do
			if [[ -f $WORK/$n.log ]]; then
				echo "----- $n log (last ${LOG_TAIL:-25} lines) -----" >&2
				tail -n "${LOG_TAIL:-25}" "$WORK/$n.log" >&2 || true
			fi
		done
	fi
	exit 1
}

# stop_all sends SIGTERM to every daemon still running, gives each 5 s,
# then SIGKILL.
stop_all() {
	local n
	for n in "${NODES[@]}"; do
		if [[ -n ${PID[$n]:-} ]] && kill -0 "${PID[$n]}" 2>/dev/null; then
			kill -TERM "${PID[$n]}" 2>/dev/null || true
		fi
	done
	for n in "${NODES[@]}"; do
		if [[ -n ${PID[$n]:-} ]]; then
			reap "${PID[$n]}"
		fi
	done
}

# reap PID waits up to 5 s for a process that was asked to stop, then
# SIGKILLs it, and collects it.
reap() {
	local i
	for ((i = 0; i < 50; i++)); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# remove_work removes the work dir unless the variable named $1 is set.
remove_work() {
	if [[ -n $WORK && -z ${!1:-} ]]; then
		rm -rf "$WORK"
	elif [[ -n $WORK ]]; then
		say "work dir kept: $WORK"
	fi
}

# dweb NODE ARGS... runs the CLI against NODE's daemon, bounded in time.
dweb() {
	local node=$1
	shift
	timeout "$CALL_TIMEOUT" "$DWEB" --data "$WORK/$node" "$@"
}

# same_bytes ORIG COPY NAME fails unless COPY holds exactly ORIG's bytes
# (cmp, from diffutils, which every Debian machine has; on a mismatch it
# names the first differing byte).
same_bytes() {
	cmp -- "$1" "$2" >&2 || fail "$3: the download differs from the original"
}

# jfield FIELD reads the first string field FIELD of the JSON on stdin.
jfield() { sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p' | head -n 1; }
# jnum FIELD reads the first number field FIELD of the JSON on stdin.
jnum() { { grep -o '"'"$1"'":[0-9]*' || true; } | head -n 1 | cut -d: -f2; }

# start NODE [ARGS...] starts NODE's daemon (`dweb serve --json ARGS`,
# through serve_in if defined) and waits (bounded) for its ready line;
# ADDR[NODE] gets its address.
start() {
	local node=$1 i
	shift
	STEP="start $node"
	: >"$WORK/$node.out"
	local cmd=("$DWEB" --data "$WORK/$node" --json serve "$@")
	if declare -F serve_in >/dev/null; then
		serve_in "$node" "${cmd[@]}" >"$WORK/$node.out" 2>>"$WORK/$node.log" &
	else
		"${cmd[@]}" >"$WORK/$node.out" 2>>"$WORK/$node.log" &
	fi
	PID[$node]=$!
	for ((i = 0; i < 300; i++)); do
		if grep -q '"socket"' "$WORK/$node.out" 2>/dev/null; then
			ADDR[$node]=$(jfield addr <"$WORK/$node.out")
			say "$node up: $(cat "$WORK/$node.out")"
			return 0
		fi
		kill -0 "${PID[$node]}" 2>/dev/null || fail "$node exited before it was ready"
		sleep 0.1
	done
	fail "$node not ready after 30 s"
}

# stop NODE sends SIGTERM and waits (bounded) for a clean exit that
# removes the node's socket.
stop() {
	local node=$1 i rc=0
	STEP="stop $node"
	kill -TERM "${PID[$node]}"
	for ((i = 0; i < 150; i++)); do
		kill -0 "${PID[$node]}" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "${PID[$node]}" 2>/dev/null; then fail "$node still running 15 s after SIGTERM"; fi
	wait "${PID[$node]}" || rc=$?
	PID[$node]=
	((rc == 0)) || fail "$node exited with status $rc after SIGTERM"
	[[ ! -e $WORK/$node/dweb.sock ]] || fail "$node left its socket behind"
}

# wait_files NODE N: NODE's file list of group $GROUP shows exactly N
# files (bounded: 60 s); more than N fails at once.
wait_files() {
	local node=$1 want=$2 i got=0 out
	for ((i = 0; i < 300; i++)); do
		if out=$(dweb "$node" --json file list "$GROUP" 2>>"$WORK/cli.log"); then
			got=$(grep -o '"name":"' <<<"$out" | wc -l)
			if ((got == want)); then return 0; fi
			((got < want)) || fail "$node lists $got files of the group, want exactly $want: $out"
		fi
		sleep 0.2
	done
	fail "$node lists $got files of the group, want $want (after 60 s)"
}
