package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dwebkit/dweb/internal/dht"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/dwebkit/dweb/internal/transport"
	"github.com/quic-go/quic-go"
)

// The soak's attacker, in the bench's own process (the daemons' memory is
// what is measured): in rounds until the run ends, against each victim in
// turn, fresh node identities on another loopback address open streams
// that send one byte and stall (a tunnel hello's first length byte, or a
// DHT request header announcing the largest request, as core's
// TestStalledStreams does), and store records in the DHT through the
// victim (Sybil stores: each identity a new owner of new records).
const (
	soakAttackAddr       = "127.0.40.1"
	soakAttackIDs        = 6  // identities per round
	soakAttackStreams    = 80 // stalled streams per identity: over the phone preset's 64 openings per peer
	soakAttackStores     = 8  // records each identity stores
	soakAttackHold       = 15 * time.Second
	soakAttackRoundPause = 2 * time.Second
)

// soakAttack is what the attacker saw.
type soakAttack struct {
	Rounds        int `json:"rounds"`
	IDs           int `json:"ids"`
	ConnRefused   int `json:"conn_refused"`   // connections the victim refused
	ConnFailed    int `json:"conn_failed"`    // connections that failed otherwise (a victim down, say)
	StreamsOpened int `json:"streams_opened"` // stalled streams the attacker got to send on
	Refused       int `json:"refused"`        // streams the victim reset as refused
	CutOff        int `json:"cut_off"`        // streams the victim cut at its opening deadline
	Held          int `json:"held"`           // streams still open after soakAttackHold, their victim up all along (a deadline missed)
	OtherEnd      int `json:"other_end"`      // streams that ended otherwise, their victim up all along
	VictimKilled  int `json:"victim_killed"`  // streams not ended by a refusal or the deadline whose victim was killed meanwhile (churn)
	Stores        int `json:"stores"`         // Sybil records stored
	StoreErrors   int `json:"store_errors"`   // Sybil stores refused or failed
}

// soakVictim is a node to attack: its index and contact.
type soakVictim struct {
	idx     int
	contact string
}

// soakAttackRun attacks victims until ctx ends; dir holds the Sybils'
// stores. killedSince reports whether node idx was killed after t.
func soakAttackRun(ctx context.Context, dir string, victims []soakVictim, killedSince func(idx int, t time.Time) bool) soakAttack {
	var (
		mu  sync.Mutex
		rep soakAttack
	)
	note := func(f func(r *soakAttack)) {
		mu.Lock()
		f(&rep)
		mu.Unlock()
	}
	for round := 0; ctx.Err() == nil && len(victims) > 0; round++ {
		v := victims[round%len(victims)]
		c, err := dht.ParseContact(v.contact)
		if err != nil {
			break
		}
		note(func(r *soakAttack) { r.Rounds++ })
		var wg sync.WaitGroup
		for i := range soakAttackIDs {
			wg.Go(func() {
				soakAttackID(ctx, filepath.Join(dir, fmt.Sprintf("sybil-%d-%d", round, i)), c, func(t time.Time) bool { return killedSince(v.idx, t) }, note)
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
		case <-time.After(soakAttackRoundPause):
		}
	}
	return rep
}

// soakAttackID is one fresh identity's attack on c.
// killed reports whether the victim was killed after a time.
func soakAttackID(ctx context.Context, dir string, c dht.Contact, killed func(time.Time) bool, note func(func(*soakAttack))) {
	ep, err := transport.Listen(transport.Options{Identity: key.NewKeypair(), ListenAddr: soakAttackAddr + ":0"})
	if err != nil {
		note(func(r *soakAttack) { r.ConnFailed++ })
		return
	}
	defer ep.Close()
	note(func(r *soakAttack) { r.IDs++ })
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = ep.Connect(cctx, c.ID, c.Addr)
	cancel()
	if err != nil {
		note(func(r *soakAttack) {
			if transport.Refused(err) {
				r.ConnRefused++
			} else {
				r.ConnFailed++
			}
		})
		return
	}
	// The run's end ends every stalled stream at once.
	defer context.AfterFunc(ctx, func() { ep.Close() })()
	var wg sync.WaitGroup
	for i := range soakAttackStreams {
		p, first := transport.ProtoTunnel, []byte{0}
		if i%2 == 1 {
			p, first = transport.ProtoDHT, binary.BigEndian.AppendUint32(nil, dht.MaxMessageSize)
		}
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := ep.OpenStream(octx, c.ID, c.Addr, p)
		cancel()
		if err != nil {
			note(func(r *soakAttack) {
				if transport.Refused(err) {
					r.Refused++
				} else {
					r.OtherEnd++
				}
			})
			continue
		}
		if _, err := s.Write(first); err != nil {
			note(func(r *soakAttack) { r.OtherEnd++ })
			continue
		}
		note(func(r *soakAttack) { r.StreamsOpened++ })
		opened := time.Now()
		wg.Go(func() {
			s.SetReadDeadline(time.Now().Add(soakAttackHold))
			_, err := io.ReadAll(s)
			var se *quic.StreamError
			var ne interface{ Timeout() bool }
			if ctx.Err() != nil {
				return // closed by the run's end, not by the victim
			}
			note(func(r *soakAttack) {
				switch {
				case errors.As(err, &se) && se.Remote && se.ErrorCode == transport.CodeRefused:
					r.Refused++
				case errors.As(err, &se) && se.Remote && se.ErrorCode == transport.CodeProtocolTimeout, err == nil:
					r.CutOff++
				case killed(opened):
					r.VictimKilled++
				case errors.As(err, &ne) && ne.Timeout():
					r.Held++
				default:
					r.OtherEnd++
				}
			})
		})
	}
	soakSybilStores(ctx, dir, ep, c, note)
	wg.Wait()
}

// soakSybilStores stores soakAttackStores new records through c from ep's
// identity, with a DHT of its own that knows only c.
func soakSybilStores(ctx context.Context, dir string, ep *transport.Endpoint, c dht.Contact, note func(func(*soakAttack))) {
	db, err := store.Open(dir, store.Options{})
	if err != nil {
		note(func(r *soakAttack) { r.StoreErrors += soakAttackStores })
		return
	}
	defer os.RemoveAll(dir)
	defer db.Close()
	d, err := dht.New(dht.Options{Endpoint: ep, Store: db, Bootstrap: []dht.Contact{c},
		ReplicateInterval: -1, RepublishInterval: -1, RefreshInterval: -1, QueueRetry: -1})
	if err != nil {
		note(func(r *soakAttack) { r.StoreErrors += soakAttackStores })
		return
	}
	defer d.Close()
	d.AddContacts(c)
	for range soakAttackStores {
		owner := key.NewKeypair()
		desc, err := record.NewDescriptor(owner, record.Schema{OwnerSubkeys: 1})
		var v *record.Value
		if err == nil {
			v, err = record.NewValue(desc.Key(), 0, 1, make([]byte, 512), owner)
		}
		if err == nil {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = d.Set(sctx, desc, 0, v)
			cancel()
		}
		note(func(r *soakAttack) {
			if err != nil {
				r.StoreErrors++
			} else {
				r.Stores++
			}
		})
	}
}
