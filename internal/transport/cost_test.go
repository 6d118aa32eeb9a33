package transport

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/transport/rcmgr"
	"github.com/quic-go/quic-go"
)

// BenchmarkConnCost measures what an idle connection costs, both ends in
// this process (divide by two for one end): 300 endpoints connect to one,
// and the heap in use and the memory obtained from the OS grow by the
// reported bytes per connection. docs/limits.md sizes the presets with it.
//
//	go test ./internal/transport -run '^$' -bench ConnCost -benchtime 1x
func BenchmarkConnCost(b *testing.B) {
	const n = 300
	no := rcmgr.Limit{Peer: -1, IP: -1, Prefix: -1, System: -1}
	for range b.N {
		srv, err := Listen(Options{Identity: key.NewKeypair(), Resources: rcmgr.New(rcmgr.Limits{Conns: no, Streams: no, Handshakes: no})})
		if err != nil {
			b.Fatal(err)
		}
		eps := make([]*Endpoint, n)
		for i := range eps {
			if eps[i], err = Listen(Options{Identity: key.NewKeypair()}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for _, e := range eps {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := e.Connect(ctx, srv.ID(), srv.LocalAddr())
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond) // handshakes settle on both ends
		runtime.ReadMemStats(&m1)
		b.ReportMetric(float64(m1.HeapInuse-m0.HeapInuse)/n/1024, "heap-KiB/conn-pair")
		b.ReportMetric(float64(m1.Sys-m0.Sys)/n/1024, "sys-KiB/conn-pair")
		for _, e := range eps {
			e.Close()
		}
		srv.Close()
	}
}

// BenchmarkStalledStreamCost measures what a stream stalled in its
// opening costs, both ends in this process: 8 peers open 250 streams each
// that send the protocol byte and one more, to a handler that waits to
// read its first frame.
//
//	go test ./internal/transport -run '^$' -bench StalledStreamCost -benchtime 1x
func BenchmarkStalledStreamCost(b *testing.B) {
	const peers, perPeer = 8, 250
	no := rcmgr.Limit{Peer: -1, IP: -1, Prefix: -1, System: -1}
	for range b.N {
		srv, err := Listen(Options{Identity: key.NewKeypair(), FirstFrameTimeout: time.Minute,
			Resources: rcmgr.New(rcmgr.Limits{Conns: no, Streams: no, Handshakes: no})})
		if err != nil {
			b.Fatal(err)
		}
		srv.Handle(ProtoTunnel, func(ctx context.Context, _ Peer, s *quic.Stream) {
			var hdr [2]byte
			s.Read(hdr[:])
			s.Read(hdr[:]) // the rest of a length that never comes
		})
		eps := make([]*Endpoint, peers)
		for i := range eps {
			if eps[i], err = Listen(Options{Identity: key.NewKeypair()}); err != nil {
				b.Fatal(err)
			}
			if err := eps[i].Connect(context.Background(), srv.ID(), srv.LocalAddr()); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		g0 := runtime.NumGoroutine()
		for _, e := range eps {
			for range perPeer {
				s, err := e.OpenStream(context.Background(), srv.ID(), srv.LocalAddr(), ProtoTunnel)
				if err != nil {
					b.Fatal(err)
				}
				s.Write([]byte{0})
			}
		}
		for srv.Resources().Usage().Streams < peers*perPeer {
			time.Sleep(10 * time.Millisecond)
		}
		runtime.ReadMemStats(&m1)
		n := float64(peers * perPeer)
		b.ReportMetric(float64(m1.HeapInuse-m0.HeapInuse)/n/1024, "heap-KiB/stream-pair")
		b.ReportMetric(float64(m1.StackInuse-m0.StackInuse)/n/1024, "stack-KiB/stream-pair")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/stream-pair")
		for _, e := range eps {
			e.Close()
		}
		srv.Close()
	}
}
