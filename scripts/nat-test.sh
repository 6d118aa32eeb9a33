#!/usr/bin/env bash
# nat-test.sh — two members behind NAT share a file through a relay.
#
# Needs root (network namespaces), iproute2 (`ip netns`), iptables (any
# backend), b3sum, go and coreutils `timeout`. If any is missing it prints
# why and exits 77 (skip): CI must report that as skipped, not passed, and
# fails when it can tell the machine could have run it (.ci/run).
#
# Topology, all in namespaces this script creates and removes (nothing is
# configured in the namespace it is started from):
#
#   pub   "the internet": bridge br0 10.77.0.1/24; the bootstrap+relay node
#         (dweb serve --relay) on 10.77.0.1:4433
#   ra    alice's router: wan 10.77.0.2 on br0, lan 192.168.10.1/24,
#         masquerading NAT (iptables MASQUERADE) and no inbound forwarding
#   rb    bob's router:   wan 10.77.0.3 on br0, lan 192.168.20.1/24, same NAT
#   alice 192.168.10.2, default route via ra
#   bob   192.168.20.2, default route via rb
#
# Neither alice nor bob can dial the other: their LAN addresses are not
# routed across pub, and each router drops unsolicited inbound packets.
# Alice keeps a reservation on the relay (--relays); bob joins her group
# from the invite and downloads her file, which must come through the
# relay (bob's log says path=relay). The script checks the file with
# b3sum, and checks what the relay itself spliced: the relay runs with
# --relay-dump, which writes every byte of every circuit it carries to a
# file per circuit and direction. Those files must hold at least the
# file's size in the direction alice -> bob (the download crossed the
# relay), and a plaintext marker written all through the file must appear
# in none of them (it crossed as ciphertext). A packet capture could not
# tell that: every packet on the bridge is QUIC, encrypted hop by hop
# whatever runs inside it.
#
# Env: DWEB_NAT_MB (file size in MiB, default 32), DWEB_NAT_KEEP=1 keeps the
# work dir.
#
# Output: progress on stderr; the last line on stdout is one JSON object:
# {"ok": true, "path": "relay", "mb_s": N}. On failure: the step, the
# daemons' log tails, exit 1. Every wait is bounded; an EXIT trap stops the
# daemons and deletes the namespaces.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MB=${DWEB_NAT_MB:-32}
CALL_TIMEOUT=120
GET_TIMEOUT=600
MARKER="DWEB-NAT-PLAINTEXT-MARKER-5b0c2e"
TAG="dw$$"
NS_PUB=$TAG-pub NS_RA=$TAG-ra NS_RB=$TAG-rb NS_A=$TAG-alice NS_B=$TAG-bob
ALL_NS=("$NS_A" "$NS_B" "$NS_RA" "$NS_RB" "$NS_PUB")
NODES=(relay alice bob)
declare -A PID ADDR NSOF=([relay]=$NS_PUB [alice]=$NS_A [bob]=$NS_B)
STEP=init
WORK=

NAME=nat-test
# shellcheck source=lib.sh
source "$ROOT/scripts/lib.sh"
skip() {
	echo "nat-test: SKIP: $*" >&2
	exit 77
}

# serve_in NODE CMD... runs a daemon in NODE's namespace (lib.sh's start).
serve_in() {
	local node=$1
	shift
	ip netns exec "${NSOF[$node]}" "$@"
}

cleanup() {
	local ns
	stop_all
	# Deleting a namespace deletes its interfaces, veth peers included.
	for ns in "${ALL_NS[@]}"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
	done
	remove_work DWEB_NAT_KEEP
}

# --- prerequisites: skip (77) rather than fail --------------------------------
(($(id -u) == 0)) || skip "needs root (network namespaces, NAT)"
for c in ip iptables b3sum go timeout; do
	command -v "$c" >/dev/null || skip "$c not found (Debian: apt-get install iproute2 iptables b3sum)"
done
trap cleanup EXIT
ip netns add "$NS_PUB" 2>/dev/null || skip "cannot create a network namespace (ip netns add failed: no CAP_SYS_ADMIN, or no netns support)"
ip netns exec "$NS_PUB" iptables -t nat -L POSTROUTING >/dev/null 2>&1 ||
	skip "iptables cannot use the nat table inside a namespace (kernel nf_nat/nft modules missing?)"
trap 'fail "command failed (exit $?): $BASH_COMMAND"' ERR

# --- network --------------------------------------------------------------------
STEP="namespaces"
for ns in "$NS_RA" "$NS_RB" "$NS_A" "$NS_B"; do ip netns add "$ns"; done
inns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}
for ns in "${ALL_NS[@]}"; do inns "$ns" ip link set lo up; done

STEP="public segment"
inns "$NS_PUB" ip link add br0 type bridge
inns "$NS_PUB" ip addr add 10.77.0.1/24 dev br0
inns "$NS_PUB" ip link set br0 up

# router NS WANADDR LANNET: a router namespace with its wan on br0 and a lan
# veth to the member namespace MEMBER; masquerading NAT on wan.
router() {
	local rt=$1 member=$2 wan=$3 lan=$4 host=$5 port=$6
	STEP="router $rt"
	ip link add "$port" netns "$NS_PUB" type veth peer name wan netns "$rt"
	inns "$NS_PUB" ip link set "$port" master br0 up
	inns "$rt" ip addr add "$wan/24" dev wan
	inns "$rt" ip link set wan up
	ip link add lan netns "$rt" type veth peer name eth0 netns "$member"
	inns "$rt" ip addr add "$lan.1/24" dev lan
	inns "$rt" ip link set lan up
	inns "$member" ip addr add "$lan.$host/24" dev eth0
	inns "$member" ip link set eth0 up
	inns "$member" ip route add default via "$lan.1"
	inns "$rt" sysctl -q -w net.ipv4.ip_forward=1
	inns "$rt" iptables -t nat -A POSTROUTING -o wan -j MASQUERADE
	inns "$rt" iptables -P FORWARD DROP
	inns "$rt" iptables -A FORWARD -i lan -o wan -j ACCEPT
	inns "$rt" iptables -A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
}
router "$NS_RA" "$NS_A" 10.77.0.2 192.168.10 2 pa
router "$NS_RB" "$NS_B" 10.77.0.3 192.168.20 2 pb

# --- build and start --------------------------------------------------------------
WORK=$(mktemp -d /tmp/dweb-nat.XXXXXX) # short: socket paths must stay < 108 bytes
STEP="build"
(cd "$ROOT" && go build -o "$WORK/dweb" ./cmd/dweb)
DWEB=$WORK/dweb

DUMP=$WORK/relay-dump
start relay --log-level debug --listen 10.77.0.1:4433 --relay --relay-dump "$DUMP"
RELAY=$(dweb relay --json node id | jfield contact)
[[ $RELAY == *@10.77.0.1:4433 ]] || fail "relay contact $RELAY"
start alice --log-level debug --listen 192.168.10.2:4000 --bootstrap "$RELAY" --relays "$RELAY"
start bob --log-level debug --listen 192.168.20.2:4000 --bootstrap "$RELAY"

STEP="alice's reservation"
for ((i = 0; i < 150; i++)); do
	grep -q 'msg=reserved' "$WORK/alice.log" && break
	sleep 0.1
done
grep -q 'msg=reserved' "$WORK/alice.log" || fail "alice holds no reservation on the relay after 15 s"

STEP="bob cannot dial alice"
# Alice's LAN is not routed from bob's side, and her router's NAT drops
# what nobody inside asked for: only the relay path is left.
if inns "$NS_RB" ip route get 192.168.10.2 >/dev/null 2>&1; then
	fail "bob's router has a route to alice's LAN"
fi

# --- alice shares, bob downloads ---------------------------------------------------
STEP="make the file"
SRC=$WORK/src.bin
head -c $((MB << 20)) /dev/urandom >"$SRC"
# The marker every 64 KiB, over the random bytes.
for ((off = 0; off < (MB << 20); off += 65536)); do
	printf '%s' "$MARKER" | dd of="$SRC" bs=1 seek=$off conv=notrunc status=none
done 2>/dev/null
grep -c -a "$MARKER" "$SRC" >/dev/null || fail "marker not in the source file"

STEP="alice creates the group"
GROUP=$(dweb alice --json group create nat | jfield key)
[[ -n $GROUP ]] || fail "no group key"
STEP="alice adds the file"
dweb alice --json file add "$GROUP" "$SRC" >/dev/null
STEP="alice invites"
INVITE=$(dweb alice group invite "$GROUP")

STEP="bob joins"
dweb bob --json group join "$INVITE" >/dev/null
STEP="bob lists the file"
for ((i = 0; i < 150; i++)); do
	if dweb bob --json file list "$GROUP" 2>>"$WORK/cli.log" | grep -q '"name":"src.bin"'; then break; fi
	sleep 0.2
done
dweb bob --json file list "$GROUP" | grep -q '"name":"src.bin"' || fail "bob does not list src.bin after 30 s"

STEP="bob downloads"
t0=$(date +%s%N)
timeout "$GET_TIMEOUT" "$DWEB" --data "$WORK/bob" --json file get "$GROUP" src.bin -o "$WORK/got.bin" >/dev/null
t1=$(date +%s%N)

STEP="b3sum"
want=$(b3sum --no-names "$SRC")
got=$(b3sum --no-names "$WORK/got.bin")
[[ $want == "$got" ]] || fail "b3sum $got, want $want"
say "b3sum ok: $got"

STEP="path"
grep -E 'msg="tunnel opened".*path=relay' "$WORK/bob.log" >/dev/null || fail "bob's log shows no tunnel through the relay"
if grep -E 'msg="tunnel opened".*path=direct' "$WORK/bob.log" | grep -q "peer=$(dweb alice --json node id | jfield node_id)"; then
	fail "bob reached alice directly: the NAT is not doing its job"
fi

STEP="what the relay spliced"
# Bob dialled alice through the relay: her bytes, the file among them,
# went to the initiator. The dump files are written as the relay splices,
# before it forwards each chunk, so they are complete once the download is.
shopt -s nullglob
dumps=("$DUMP"/circuit-*)
shopt -u nullglob
((${#dumps[@]} > 0)) || fail "the relay dumped no circuit"
to_bob=0
total=0
for f in "${dumps[@]}"; do
	n=$(stat -c %s "$f")
	total=$((total + n))
	[[ $f == *-to-initiator ]] && to_bob=$((to_bob + n))
	# grep -c counts lines; -a reads binary as text. A marker split across
	# two writes is still contiguous in the file.
	hits=$(grep -c -a -F -- "$MARKER" "$f" || true)
	((hits == 0)) || fail "the plaintext marker appears in $hits lines of what the relay spliced ($(basename "$f"))"
done
((to_bob >= MB << 20)) || fail "the relay spliced $to_bob bytes towards bob, less than the $((MB << 20))-byte file: the download did not cross it"
say "the relay spliced $total bytes in ${#dumps[@]} circuit directions ($to_bob towards bob); marker found 0 times"

STEP="done"
ns=$((t1 - t0))
mbs=$(awk -v b=$((MB << 20)) -v ns="$ns" 'BEGIN { printf "%.1f", b / 1048576 / (ns / 1e9) }')
echo "{\"ok\": true, \"path\": \"relay\", \"mb_s\": $mbs}"
