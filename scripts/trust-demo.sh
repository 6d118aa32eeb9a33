#!/usr/bin/env bash
# trust-demo.sh — removing a member for good, with five dweb daemons on
# 127.0.0.1 (docs/trust.md).
#
# Builds ./build/dweb, then in a temporary work dir starts five `dweb serve`
# processes: alice, and bob, carol, dave and eve bootstrapped from her.
# alice creates a membership-checked group (`group create --checked`) and
# invites bob and carol as members and dave as a viewer, each with an
# invite sealed to the contact code its daemon prints (`dweb contact`);
# eve, holding carol's invite, must fail to join with it. alice adds a
# file; bob, carol and dave download it (cmp). dave, a viewer, must fail
# to add a file. alice removes carol; the script times how long until bob
# and dave both hold the new epoch (rotation_ms). bob adds a file: alice
# and dave download it (cmp), carol must fail to get it and receive 0
# blob bytes meanwhile (her node's traffic counter), her `group ping` of
# bob must be refused at the handshake, and her copy of the first file
# stays.
#
# Needs: go, and what every Debian machine has (coreutils' `timeout`,
# diffutils' `cmp`, head, /dev/urandom).
# Env: DWEB_DEMO_KEEP=1 keeps the work dir.
#
# Output: progress on stderr; the last line on stdout is exactly one JSON
# object:
# {"ok": true, "removed_member_new_bytes": 0, "removed_member_tunnel": "refused",
#  "viewer_write": "refused", "sealed_invite_other_key": "refused", "rotation_ms": N}
# On failure: the failed step, the daemons' log tails, exit 1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CALL_TIMEOUT=120
NODES=(alice bob carol dave eve)
declare -A PID ADDR
STEP=init
WORK=

NAME=trust-demo
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
trap 'fail "command failed (exit $?): $BASH_COMMAND"' ERR

cleanup() {
	stop_all
	remove_work DWEB_DEMO_KEEP
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }

WORK=$(mktemp -d /tmp/dweb-trust.XXXXXX) # short: socket paths must stay < 108 bytes
mkdir -p "$WORK/src" "$WORK/got"
head -c $((1 << 20)) /dev/urandom >"$WORK/src/before.bin"
head -c $((1 << 20)) /dev/urandom >"$WORK/src/after.bin"

# --- build and start ----------------------------------------------------------
STEP="build"
mkdir -p "$ROOT/build"
(cd "$ROOT" && go build -o build/dweb ./cmd/dweb)
DWEB=$ROOT/build/dweb

start alice --listen 127.0.0.1:0 --device-name alice
STEP="alice contact"
BOOT=$(dweb alice --json node id | jfield contact)
[[ -n $BOOT ]] || fail "no contact from alice"
for n in bob carol dave eve; do
	start "$n" --listen 127.0.0.1:0 --bootstrap "$BOOT" --device-name "$n"
done

# --- the group and its invites --------------------------------------------------
STEP="alice creates a membership-checked group"
GROUP=$(dweb alice --json group create newsroom --checked | jfield key)
[[ -n $GROUP ]] || fail "no group key"
declare -A CONTACT INVITE
for n in bob carol dave; do
	STEP="alice invites $n"
	CONTACT[$n]=$(dweb "$n" --json contact | jfield contact)
	[[ -n ${CONTACT[$n]} ]] || fail "no contact code from $n"
	role=member
	[[ $n == dave ]] && role=viewer
	INVITE[$n]=$(dweb alice group invite "$GROUP" --for "${CONTACT[$n]}" --role "$role" --member-name "$n")
	[[ ${INVITE[$n]} == save+dweb:* ]] || fail "no invite for $n"
done
say "invite for carol: ${INVITE[carol]:0:70}... (${#INVITE[carol]} characters, no key in it)"

STEP="eve uses carol's invite"
if out=$(dweb eve group join "${INVITE[carol]}" 2>&1); then
	fail "eve joined with carol's sealed invite: $out"
fi
grep -q "made for" <<<"$out" || fail "eve's refusal does not say the invite was made for another key: $out"
SEALED=refused
say "eve refused: $out"

for n in bob carol dave; do
	STEP="$n joins"
	dweb "$n" --json group join "${INVITE[$n]}" >/dev/null
done

# --- a file before the removal ------------------------------------------------------
STEP="alice adds before.bin"
dweb alice --json file add "$GROUP" "$WORK/src/before.bin" >/dev/null
for n in bob carol dave; do
	wait_files "$n" 1
	STEP="$n gets before.bin"
	dweb "$n" --json file get "$GROUP" before.bin -o "$WORK/got/$n-before.bin" >/dev/null
	same_bytes "$WORK/src/before.bin" "$WORK/got/$n-before.bin" "$n's before.bin"
done

STEP="dave, a viewer, adds a file"
if out=$(dweb dave file add "$GROUP" "$WORK/src/after.bin" 2>&1); then
	fail "a viewer added a file: $out"
fi
grep -q "viewer" <<<"$out" || fail "the viewer's refusal does not say why: $out"
VIEWER=refused
say "dave refused: $out"

# --- the removal ------------------------------------------------------------------
STEP="carol's traffic before the removal"
CAROL_RX0=$(dweb carol --json node status | jnum blob_bytes_received)
[[ -n $CAROL_RX0 ]] || fail "no traffic counter from carol"

STEP="alice removes carol"
t0=$(now_ms)
dweb alice --json group remove "$GROUP" "${CONTACT[carol]}" >/dev/null
STEP="bob and dave reach epoch 1"
for ((i = 0; ; i++)); do
	eb=$(dweb bob --json group members "$GROUP" | jnum epoch)
	ed=$(dweb dave --json group members "$GROUP" | jnum epoch)
	if [[ $eb == 1 && $ed == 1 ]]; then break; fi
	((i < 600)) || fail "bob (epoch $eb) and dave (epoch $ed) not in epoch 1 after 60 s"
	sleep 0.1
done
ROTATION_MS=$(($(now_ms) - t0))
say "bob and dave hold the new epoch ${ROTATION_MS} ms after the removal"

# --- a file after the removal -------------------------------------------------------
STEP="bob adds after.bin"
dweb bob --json file add "$GROUP" "$WORK/src/after.bin" >/dev/null
for n in alice dave; do
	wait_files "$n" 2
	STEP="$n gets after.bin"
	dweb "$n" --json file get "$GROUP" after.bin -o "$WORK/got/$n-after.bin" >/dev/null
	same_bytes "$WORK/src/after.bin" "$WORK/got/$n-after.bin" "$n's after.bin"
done

STEP="carol tries to get after.bin"
dweb carol --json group sync "$GROUP" >/dev/null 2>&1 || true
if dweb carol --json file get "$GROUP" after.bin -o "$WORK/got/carol-after.bin" >/dev/null 2>&1; then
	fail "the removed member got a file added after her removal"
fi
[[ ! -e $WORK/got/carol-after.bin ]] || fail "the removed member's output file exists"
CAROL_RX1=$(dweb carol --json node status | jnum blob_bytes_received)
NEW_BYTES=$((CAROL_RX1 - CAROL_RX0))
((NEW_BYTES == 0)) || fail "the removed member received $NEW_BYTES blob bytes after her removal"

STEP="carol pings bob"
BOB_ID=$(dweb bob --json node id | jfield node_id)
PING=$(dweb carol --json group ping "$GROUP")
TUNNEL=$({ grep -o '"node_id":"'"$BOB_ID"'","result":"[a-z]*"' <<<"$PING" || true; } | sed 's/.*"result":"\([a-z]*\)"/\1/')
[[ $TUNNEL == refused ]] || fail "carol's tunnel to bob: '$TUNNEL', want refused ($PING)"

STEP="carol keeps her copy"
same_bytes "$WORK/src/before.bin" "$WORK/got/carol-before.bin" "carol's before.bin"

echo "{\"ok\": true, \"removed_member_new_bytes\": $NEW_BYTES, \"removed_member_tunnel\": \"$TUNNEL\", \"viewer_write\": \"$VIEWER\", \"sealed_invite_other_key\": \"$SEALED\", \"rotation_ms\": $ROTATION_MS}"
