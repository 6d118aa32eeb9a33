#!/usr/bin/env bash
# bench-dedup.sh [DWEB] [BENCH FLAGS...] — run `dweb bench dedup --json`
# (default binary: ./dweb) with rsync on PATH, so that its JSON has
# rsync's "Literal data" for each edit (`rsync --stats --no-whole-file`)
# next to dweb's bytes. If rsync is missing it is installed first with
# apt-get (as root, or through sudo when that needs no password); if that
# cannot be done the bench runs anyway and reports rsync_literal_bytes as
# null, saying why in its "rsync" field. The bench itself never installs
# anything. Example: scripts/bench-dedup.sh ./dweb --size 256MiB
set -euo pipefail

BIN=${1:-./dweb}
shift $(($# > 0 ? 1 : 0))

if ! command -v rsync >/dev/null 2>&1; then
	SUDO=
	if [ "$(id -u)" != 0 ]; then
		if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi
	fi
	if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
		echo "bench-dedup: installing rsync with apt-get" >&2
		$SUDO apt-get install -y -q rsync >&2 ||
			{ $SUDO apt-get update -q >&2 && $SUDO apt-get install -y -q rsync >&2; } ||
			echo "bench-dedup: could not install rsync; rsync_literal_bytes will be null" >&2
	else
		echo "bench-dedup: rsync is missing and cannot be installed here (no root, no apt-get); rsync_literal_bytes will be null" >&2
	fi
fi
exec "$BIN" bench dedup --json "$@"
