package tunnel

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/dwebkit/dweb/internal/transport/rcmgr/rcmgrtest"
)

// relayNodeOn is newRelayNode on listen, with the resource manager rm
// (nil: the endpoint's own).
func relayNodeOn(t testing.TB, listen string, rm *rcmgr.Manager, opts RelayOptions) *relayNode {
	t.Helper()
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: listen, Resources: rm})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRelay(ep, opts)
	t.Cleanup(func() {
		r.Close()
		ep.Close()
	})
	return &relayNode{ep: ep, relay: r}
}

// TestRelayReservationsBySybils: fresh node IDs of one /24 get no more
// than the strangers' share of that prefix, strangers together no more
// than theirs, with the shorter TTL; members of the relay's group (a
// membership proof under its PSK) still get reservations, the full TTL,
// up to the prefix's share; and every refusal is counted by scope.
func TestRelayReservationsBySybils(t *testing.T) {
	ctx := testCtx(t)
	psk := PSK(key.NewSecret())
	// The transport's limits of a public relay, so that only the
	// reservation limits bind here.
	tl := rcmgr.ServerLimits()
	tl.LocalAddrs = true
	rm := rcmgr.New(tl)
	lim := RelayLimits{
		MaxReservations:                  8,
		MaxStrangerReservations:          3,
		MaxReservationsPerPrefix:         4,
		MaxStrangerReservationsPerPrefix: 2,
		ReservationTTL:                   time.Hour,
		StrangerReservationTTL:           time.Minute,
	}
	r := relayNodeOn(t, "127.0.0.1:0", rm, RelayOptions{Serve: true, Limits: lim,
		GroupPSKs: func() [][32]byte { return [][32]byte{psk} }})
	reserve := func(listen string, psks ...[32]byte) (*Reservation, error) {
		n := relayNodeOn(t, listen, nil, RelayOptions{GroupPSKs: func() [][32]byte { return psks }})
		return n.relay.Reserve(ctx, r.peer())
	}
	count := func(listen func(i int) string, tries int, psks ...[32]byte) (granted int) {
		for i := range tries {
			res, err := reserve(listen(i), psks...)
			switch {
			case err == nil:
				granted++
				wantTTL := lim.StrangerReservationTTL
				if len(psks) > 0 && psks[0] == psk {
					wantTTL = lim.ReservationTTL
				}
				if ttl := time.Until(res.Expires); ttl > wantTTL || ttl < wantTTL-5*time.Second {
					t.Errorf("reservation lasts %v, want %v", ttl, wantTTL)
				}
			case !errors.Is(err, ErrRelayLimit):
				t.Fatalf("reserve: %v, want ok or ErrRelayLimit", err)
			}
		}
		return granted
	}
	// 20 fresh IDs from one /24, no proof (or a proof for a group the
	// relay is not in): the strangers' share of the prefix.
	other := PSK(key.NewSecret())
	if n := count(func(i int) string { return fmt.Sprintf("127.0.30.%d:0", i+1) }, 20, other); n != 2 {
		t.Fatalf("20 strangers of one /24 got %d reservations, want 2", n)
	}
	// Members of the group from the same /24: the rest of the prefix's share.
	if n := count(func(i int) string { return fmt.Sprintf("127.0.30.%d:0", 100+i) }, 5, psk); n != 2 {
		t.Fatalf("5 members of the crowded /24 got %d reservations, want 2", n)
	}
	// Strangers of many /24s: the strangers' share of the relay (3, 2 taken).
	if n := count(func(i int) string { return fmt.Sprintf("127.0.%d.1:0", 31+i) }, 5); n != 1 {
		t.Fatalf("5 strangers of 5 /24s got %d reservations, want 1", n)
	}
	// Members of other /24s: up to MaxReservations (8, 5 taken).
	if n := count(func(i int) string { return fmt.Sprintf("127.0.%d.1:0", 41+i) }, 5, psk); n != 3 {
		t.Fatalf("5 members of 5 /24s got %d reservations, want 3", n)
	}
	st := r.relay.Stats()
	if st.Reservations != 8 || st.Strangers != 3 {
		t.Fatalf("relay holds %d reservations, %d of strangers; want 8 and 3", st.Reservations, st.Strangers)
	}
	for _, c := range []struct {
		scope rcmgr.Scope
		kind  rcmgr.Kind
		want  float64
	}{
		{rcmgr.ScopePrefix, KindRelayStranger, 18},
		{rcmgr.ScopePrefix, KindRelayReservation, 3},
		{rcmgr.ScopeSystem, KindRelayStranger, 4},
		{rcmgr.ScopeSystem, KindRelayReservation, 2},
	} {
		if got := rcmgrtest.Refused(t, rm, c.scope, c.kind); got != c.want {
			t.Errorf("refused{%s,%s} = %v, want %v", c.scope, c.kind, got, c.want)
		}
	}
}

// TestMembershipProof: the proof depends on the group, the relay and the
// node, so it proves nothing elsewhere.
func TestMembershipProof(t *testing.T) {
	psk, other := PSK(key.NewSecret()), PSK(key.NewSecret())
	r1, r2, n1, n2 := key.NewKeypair().ID(), key.NewKeypair().ID(), key.NewKeypair().ID(), key.NewKeypair().ID()
	p := MembershipProof(psk, r1, n1)
	if p != MembershipProof(psk, r1, n1) {
		t.Fatal("not deterministic")
	}
	for name, q := range map[string][32]byte{
		"other group": MembershipProof(other, r1, n1),
		"other relay": MembershipProof(psk, r2, n1),
		"other node":  MembershipProof(psk, r1, n2),
		"swapped":     MembershipProof(psk, n1, r1),
	} {
		if q == p {
			t.Errorf("%s: same proof", name)
		}
	}
}
