package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/netem"
	"github.com/quic-go/quic-go"
)

// TestStreamOverLossyLink moves 1 MiB over a link with a 30 ms round trip,
// jitter, 1 % loss each way and a 10 MB/s bottleneck: the handshake and
// the stream recover every lost datagram and the bytes arrive whole. (At
// 1 % loss a loss-based congestion controller gets about
// 1.22 × 1400 B / 30 ms / √0.01 = 0.57 MB/s, Mathis et al. 1997: the
// bottleneck is not what limits this transfer.)
func TestStreamOverLossyLink(t *testing.T) {
	a, b := newTestEndpoint(t), newTestEndpoint(t)
	const size = 1 << 20
	want := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(want)
	b.Handle(ProtoBlobs, func(ctx context.Context, _ Peer, s *quic.Stream) {
		var hdr [8]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			return
		}
		s.Write(want[:binary.BigEndian.Uint64(hdr[:])])
	})
	link, err := netem.New(b.LocalAddr(), netem.Options{Delay: 15 * time.Millisecond, Jitter: 2 * time.Millisecond, Loss: 0.01, Rate: 10e6, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	s, err := a.OpenStream(ctx, b.ID(), link.Addr(), ProtoBlobs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], size)
	if _, err := s.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, not the %d sent", len(got), size)
	}
	up, down := link.Up(), link.Down()
	if up.Lost+down.Lost == 0 {
		t.Fatalf("link lost %d up and %d down: the test did not exercise recovery", up.Lost, down.Lost)
	}
	if down.Bytes < size {
		t.Fatalf("link delivered %d bytes down, less than the stream's %d", down.Bytes, size)
	}
	// Handshake and request: at least two round trips; 1 MiB at 10 MB/s: 105 ms.
	if took < 165*time.Millisecond {
		t.Fatalf("1 MiB over a 10 MB/s, 30 ms link took %v: the link did not shape it", took)
	}
	t.Logf("1 MiB in %v; lost %d up, %d down", took, up.Lost, down.Lost)
}

// TestShapedEndpoint moves 256 KiB each way between an endpoint whose own
// socket is shaped (Options.Link: 10 ms each way, 2 % loss) and a plain
// one, dialled from either side: the shaped node is reached at the address
// it listens on, datagrams were lost on its link in both directions, and
// the bytes arrive whole.
func TestShapedEndpoint(t *testing.T) {
	shaped, err := Listen(Options{Identity: key.NewKeypair(), Link: &netem.Options{Delay: 10 * time.Millisecond, Loss: 0.02, Seed: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer shaped.Close()
	plain := newTestEndpoint(t)
	const size = 256 << 10
	want := make([]byte, size)
	rand.NewChaCha8([32]byte{2}).Read(want)
	serve := func(ctx context.Context, _ Peer, s *quic.Stream) {
		got := make([]byte, size)
		if _, err := io.ReadFull(s, got); err != nil {
			return
		}
		s.Write(got)
	}
	shaped.Handle(ProtoBlobs, serve)
	plain.Handle(ProtoBlobs, serve)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, dir := range []struct{ from, to *Endpoint }{{plain, shaped}, {shaped, plain}} {
		start := time.Now()
		s, err := dir.from.OpenStream(ctx, dir.to.ID(), dir.to.LocalAddr(), ProtoBlobs)
		if err != nil {
			t.Fatal(err)
		}
		go s.Write(want)
		got, err := io.ReadAll(s)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes back, not the %d sent", len(got), size)
		}
		if took := time.Since(start); took < 20*time.Millisecond {
			t.Fatalf("echo took %v, less than the link's 20 ms round trip", took)
		}
	}
	c := shaped.udp.(*netem.Conn)
	up, down := c.Up(), c.Down()
	t.Logf("shaped link: up %+v, down %+v", up, down)
	if up.Lost == 0 || down.Lost == 0 || up.Datagrams == 0 || down.Datagrams == 0 {
		t.Fatalf("link saw up %+v, down %+v: want datagrams delivered and lost both ways", up, down)
	}
}
