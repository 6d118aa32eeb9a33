#!/usr/bin/env bash
# bench-share.sh [SIZE_MB] — the figures of docs/BENCHMARKS.md for sharing a
# file, all taken in one run on this machine:
#   - dweb: scripts/demo.sh with one SIZE_MB file of random bytes (default
#     300): bob's join + first list (join_ms) and the verified download of the
#     file through a Noise tunnel over QUIC on loopback, written to disk
#     (download_ms, dweb_mb_s);
#   - b3sum hashing the same file (b3sum_mb_s), and a plain cp of it
#     (cp_mb_s), as baselines.
# Prints one JSON object. MB = 10^6 bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-300}
command -v b3sum >/dev/null || { echo "bench-share: b3sum not found (apt-get install b3sum)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file="$work/big-$size_mb.bin"
head -c "$((size_mb * 1000000))" /dev/urandom >"$file"
bytes=$(stat -c %s "$file")

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
rate() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.1f", (ms > 0 ? b / 1e6 / (ms / 1000) : 0) }'; }

cat "$file" >/dev/null # same page-cache state for every reader
t0=$(now_ms); b3sum "$file" >/dev/null; t1=$(now_ms)
b3sum_ms=$((t1 - t0))
t0=$(now_ms); cp "$file" "$work/copy.bin"; sync "$work/copy.bin"; t1=$(now_ms)
cp_ms=$((t1 - t0))
rm -f "$work/copy.bin"

out=$(scripts/demo.sh "$file" | tail -n 1)
join_ms=$(sed -n 's/.*"join_ms": *\([0-9]*\).*/\1/p' <<<"$out")
download_ms=$(sed -n 's/.*"download_ms": *\([0-9]*\).*/\1/p' <<<"$out")
[ -n "$join_ms" ] && [ -n "$download_ms" ] || { echo "bench-share: demo.sh did not report: $out" >&2; exit 1; }

printf '{"size_bytes": %d, "join_ms": %d, "download_ms": %d, "dweb_mb_s": %s, "b3sum_ms": %d, "b3sum_mb_s": %s, "cp_ms": %d, "cp_mb_s": %s, "cores": %d}\n' \
	"$bytes" "$join_ms" "$download_ms" "$(rate "$bytes" "$download_ms")" \
	"$b3sum_ms" "$(rate "$bytes" "$b3sum_ms")" "$cp_ms" "$(rate "$bytes" "$cp_ms")" "$(nproc)"
