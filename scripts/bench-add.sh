#!/usr/bin/env bash
# bench-add.sh FILE [ROUNDS] [DWEB...] — time the real `dweb file add` of
# FILE with each dweb binary given (default: ./dweb), ROUNDS times each
# (default 3), alternating binaries, with `b3sum --num-threads 1` of FILE
# after each round when b3sum is on PATH. Each add runs against a fresh
# `dweb serve` on a temp data dir (a group created first) and is timed from
# the CLI's start to its exit. Compares builds of different commits on one
# file in one session (`dweb bench import --cli` times only its own build).
# With UPLOAD=1 in the environment it times the Save app's upload instead:
# a POST of FILE's bytes to /api/groups/G/repos/R/media/NAME on the
# daemon's socket (curl), into a repo created first.
# Prints one JSON line per measurement:
#   {"bin": "...", "round": N, "ms": N, "mb_s": N, "hash": "..."}
#   {"bin": "b3sum --num-threads 1", "round": N, "ms": N, "mb_s": N}
set -euo pipefail

FILE=${1:?usage: bench-add.sh FILE [ROUNDS] [DWEB...]}
ROUNDS=${2:-3}
shift $(($# < 2 ? $# : 2))
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=(./dweb)
SIZE=$(stat -c %s "$FILE")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s%N; }
line() { # bin round start end [hash]
	local ms=$((($4 - $3) / 1000000))
	printf '{"bin": "%s", "round": %d, "ms": %d, "mb_s": %.1f%s}\n' "$1" "$2" "$ms" \
		"$(echo "$SIZE / 1000 / ($ms + 0.001)" | bc -l)" "${5:+, \"hash\": \"$5\"}"
}

add_once() { # bin round
	local bin=$1 d pid g s e h
	d=$(mktemp -d "$WORK/node-XXXX")
	"$bin" --data "$d/n" --json serve --log-level warn >"$d/out" 2>"$d/log" &
	pid=$!
	for _ in $(seq 300); do grep -q '"socket"' "$d/out" 2>/dev/null && break; sleep 0.1; done
	g=$("$bin" --data "$d/n" --json group create bench | sed -n 's/.*"key": *"\([^"]*\)".*/\1/p')
	if [ "${UPLOAD:-}" = 1 ]; then
		local sock api repo
		sock=$(sed -n 's/.*"socket": *"\([^"]*\)".*/\1/p' "$d/out" | head -1)
		api=(curl -sf --unix-socket "$sock")
		repo=$("${api[@]}" -H 'Content-Type: application/json' -d '{"name":"bench"}' "http://dweb/api/groups/$g/repos" |
			sed -n 's/.*"key": *"\([^"]*\)".*/\1/p')
		s=$(now)
		"${api[@]}" -X POST -H 'Content-Type: application/octet-stream' -T "$FILE" \
			"http://dweb/api/groups/$g/repos/$repo/media/bench.bin" >"$d/add"
		e=$(now)
		h=$(sed -n 's/.*"file_hash": *"\([0-9a-f]*\)".*/\1/p' "$d/add")
	else
		s=$(now)
		"$bin" --data "$d/n" --json file add "$g" "$FILE" >"$d/add"
		e=$(now)
		h=$(sed -n 's/.*"hash": *"\([0-9a-f]*\)".*/\1/p' "$d/add" | head -1)
	fi
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	rm -rf "$d"
	line "$bin" "$2" "$s" "$e" "$h"
}

for r in $(seq "$ROUNDS"); do
	for bin in "${BINS[@]}"; do
		add_once "$bin" "$r"
	done
	if command -v b3sum >/dev/null; then
		s=$(now)
		b3sum --num-threads 1 "$FILE" >/dev/null
		line "b3sum --num-threads 1" "$r" "$s" "$(now)"
	fi
done
