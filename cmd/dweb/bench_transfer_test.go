package main

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/internal/netem"
	"github.com/dwebkit/dweb/internal/store"
	"github.com/zeebo/blake3"
)

// The bench runs each receiver in a child process, a re-exec of its own
// binary. Under go test that binary is the test binary: with
// DWEB_TEST_RUN_MAIN set, it runs dweb's main instead of the tests.
func init() {
	if os.Getenv("DWEB_TEST_RUN_MAIN") == "1" {
		main()
	}
}

// TestBenchTransferSmall runs `dweb bench transfer` end to end on a small
// blob with two providers: children, tunnels, verified download, figures.
func TestBenchTransferSmall(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	const size = 8 << 20
	res, err := benchTransfer(context.Background(), t.TempDir(), size, 2, btOptions{tls: true, rounds: 1, files: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Hash == "" || res.MBs <= 0 || res.BaselineMBs <= 0 || res.Ratio <= 0 {
		t.Fatalf("result %+v", res)
	}
	checkTransport(t, res, "tls", "tls")
	checkProviderBytes(t, res, size)
	if res.OneProviderMBs <= 0 || res.Speedup <= 0 {
		t.Fatalf("no one-provider run: %+v", res)
	}
}

// TestBenchTransferFiles runs the bench on a collection of small files:
// the receiver downloads it with DownloadCollection (children requests).
func TestBenchTransferFiles(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	const size, files = 4 << 20, 100
	res, err := benchTransfer(context.Background(), t.TempDir(), size, 2, btOptions{tls: true, rounds: 1, files: files})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Files != files || res.FilesPerSec <= 0 || res.MBs <= 0 {
		t.Fatalf("result %+v", res)
	}
	checkTransport(t, res, "tls", "tls")
	checkProviderBytes(t, res, size)
}

// TestBenchTransferNegotiated: providers that decline the TLS transport
// mode give Noise tunnels, and the result says so, not what was asked.
func TestBenchTransferNegotiated(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	const size = 1 << 20
	for _, tc := range []struct {
		name         string
		tls, decline bool
		want         string
	}{
		{"asked noise", false, false, "noise"},
		{"tls declined", true, true, "noise"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := benchTransfer(context.Background(), t.TempDir(), size, 1, btOptions{tls: tc.tls, rounds: 1, files: 1, providerNoTLS: tc.decline})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Verified {
				t.Fatalf("result %+v", res)
			}
			asked := "noise"
			if tc.tls {
				asked = "tls"
			}
			checkTransport(t, res, tc.want, asked)
		})
	}
}

// TestBTVerify: the check behind "verified" fails on a received blob whose
// bytes on disk differ from its source, and on one missing, extra or
// repeated.
func TestBTVerify(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	data := make([]byte, 200<<10) // large enough for its own data file
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want, err := btSourceHashes([]string{src})
	if err != nil {
		t.Fatal(err)
	}
	if w := blake3.Sum256(data); want[""] != hex.EncodeToString(w[:]) {
		t.Fatalf("source hash %s, want %x", want[""], w)
	}
	db, err := store.Open(filepath.Join(dir, "db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	bs, err := blobsync.OpenStore(db, filepath.Join(dir, "blobs"), blobsync.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := bs.AddFile(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := btHashStored(bs, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := btVerify(want, []btReceived{{Hash: got}}); err != nil {
		t.Fatalf("intact blob: %v", err)
	}
	for _, bad := range [][]btReceived{
		nil,
		{{Hash: got}, {Hash: got}},
		{{Hash: got}, {Name: "other", Hash: got}},
		{{Name: "other", Hash: got}},
	} {
		if err := btVerify(want, bad); err == nil {
			t.Errorf("btVerify(%v) passed", bad)
		}
	}
	// One byte flipped on disk, behind the store's back: Open does not
	// verify, so the hash shows it.
	f, err := os.OpenFile(filepath.Join(bs.Dir(), h.String()+".data"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{data[1000] ^ 1}, 1000); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = btHashStored(bs, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := btVerify(want, []btReceived{{Hash: got}}); err == nil {
		t.Fatal("a blob changed on disk passed")
	}
}

// checkTransport fails unless the result reports the tunnel transport
// negotiated as want and the one asked as asked.
func checkTransport(t *testing.T, res *benchTransferResult, want, asked string) {
	t.Helper()
	if res.TunnelTransport != want || res.TunnelAsked != asked {
		t.Fatalf("tunnel transport %q (asked %q), want %q (asked %q)", res.TunnelTransport, res.TunnelAsked, want, asked)
	}
}

// TestBenchTransferLink runs the bench over an emulated path (--rtt,
// --loss): the collection still arrives verified, every run pays the
// round trips, and the link reports what it dropped.
func TestBenchTransferLink(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	const size, files = 2 << 20, 20
	o := btOptions{tls: true, rounds: 1, files: files, noPool: true, link: netem.Options{Delay: 10 * time.Millisecond, Loss: 0.005}}
	res, err := benchTransfer(context.Background(), t.TempDir(), size, 1, o)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Files != files || !res.NoPool || res.Link == nil || res.Link.RTTms != 20 || res.Link.Loss != 0.005 {
		t.Fatalf("result %+v", res)
	}
	checkTransport(t, res, "tls", "tls")
	checkProviderBytes(t, res, size)
	// Tunnel handshake, collection, children request: three round trips
	// at least, after the QUIC handshake outside the clock.
	if res.ReceiverSeconds < 0.06 || res.BaselineSeconds < 0.02 {
		t.Fatalf("dweb %.3f s, baseline %.3f s over a 20 ms round trip", res.ReceiverSeconds, res.BaselineSeconds)
	}
	// Three runs of 2 MiB: about 4500 datagrams, 22 lost on average.
	if res.Link.Lost == 0 {
		t.Fatalf("the link lost nothing at 0.5 %%: %+v", res.Link)
	}
	// Without the pool the collection blob and the children batch each
	// open their own tunnel.
	if res.Tunnels.Reused != 0 || res.Tunnels.Opened < 2 {
		t.Fatalf("--no-pool: tunnels %+v, want none reused and at least 2 opened", res.Tunnels)
	}
}

// checkProviderBytes fails unless the providers sent size new bytes in all.
func checkProviderBytes(t *testing.T, res *benchTransferResult, size int64) {
	t.Helper()
	var sum int64
	for _, b := range res.ProviderBytes {
		sum += b
	}
	if sum != size {
		t.Fatalf("providers sent %v new bytes, want %d in all", res.ProviderBytes, size)
	}
}

// TestBenchTransferE2E runs --e2e on a small file: two `dweb serve`
// children (the test binary running main) share it, a fresh receiver
// daemon gets it with `dweb file get` under each export method, and cp
// copies it; every output must hash to the source.
func TestBenchTransferE2E(t *testing.T) {
	t.Setenv("DWEB_TEST_RUN_MAIN", "1")
	const size = 4 << 20
	dir := t.TempDir()
	res, err := benchTransfer(context.Background(), dir, size, 1, btOptions{tls: true, rounds: 1, files: 1, e2e: true})
	if err != nil {
		t.Fatal(err)
	}
	e := res.E2E
	if e == nil || !e.Verified || e.MBs <= 0 || e.CopyMBs <= 0 || e.MoveMBs <= 0 || e.MoveExport != "move" || e.RatioToBenchMove <= 0 || e.CpMBs <= 0 || e.RatioToRaw <= 0 || e.RatioToBench <= 0 || e.FileSystem == "" {
		t.Fatalf("e2e result %+v", e)
	}
	// The default get wrote the file as the download verified it (or,
	// where the temp dir's file system clones, cloned the store's copy).
	if e.Exports["mirror"]+e.Exports["reflink"] != 1 || len(e.Exports) != 1 {
		t.Fatalf("e2e exports %v, want the one default get's \"mirror\"", e.Exports)
	}
	// The receiving daemon's CPU for the get is counted (in 10 ms ticks:
	// the sender's for 4 MiB may be under one).
	if e.CPU.Receiver <= 0 || e.CPU.Sender < 0 {
		t.Fatalf("e2e cpu_s %+v", e.CPU)
	}
	// Each receiver and its output are gone after its get.
	for _, p := range []string{"bob", "got", "cp-copy"} {
		if _, err := os.Stat(filepath.Join(dir, "e2e", p)); !os.IsNotExist(err) {
			t.Errorf("e2e/%s left behind (%v)", p, err)
		}
	}
}
