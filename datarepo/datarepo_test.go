package datarepo_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/blobsync"
	"github.com/dwebkit/dweb/datarepo"
	"github.com/dwebkit/dweb/internal/key"
	"github.com/dwebkit/dweb/internal/record"
	"github.com/dwebkit/dweb/internal/testnet"
)

func openBlobs(t *testing.T, n *testnet.Node) *blobsync.Store {
	t.Helper()
	s, err := blobsync.OpenStore(n.Store, filepath.Join(n.Dir, "blobs"), blobsync.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRepoWriteReadAcrossNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 3)
	writerBlobs, readerBlobs := openBlobs(t, net[0]), openBlobs(t, net[2])
	secret := record.Secret(key.NewSecret())

	repo, kp, err := datarepo.Create(ctx, net[0].DHT, writerBlobs, secret, "alice's phone")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "photo.jpg")
	os.WriteFile(p, []byte("not really a jpeg"), 0o600)
	added, err := repo.AddFiles(ctx, []string{p})
	if err != nil || len(added) != 1 || added[0].MediaType != "image/jpeg" {
		t.Fatalf("AddFiles = %+v, %v", added, err)
	}
	td := datarepo.TunnelDescriptor{Node: key.NewKeypair().ID(), Static: [32]byte{1}, Addrs: []string{"127.0.0.1:9"}}
	if err := repo.SetTunnel(ctx, 0, td); err != nil {
		t.Fatal(err)
	}

	// Another node reads everything with the group secret alone.
	r, err := datarepo.OpenKey(ctx, net[2].DHT, readerBlobs, secret, repo.Key())
	if err != nil {
		t.Fatal(err)
	}
	if r.Writable() {
		t.Fatal("reader's handle is writable")
	}
	if name, err := r.Name(ctx); err != nil || name != "alice's phone" {
		t.Fatalf("Name = %q, %v", name, err)
	}
	fetched := 0
	fetch := func(ctx context.Context, h blobsync.Hash) error {
		fetched++
		b, err := writerBlobs.ReadAll(h, 1<<20)
		if err != nil {
			return err
		}
		_, err = readerBlobs.AddBytes(ctx, b)
		return err
	}
	c, _, err := r.Collection(ctx, fetch)
	if err != nil || fetched != 1 || len(c.Entries) != 1 || c.Entries[0].Hash != added[0].Hash {
		t.Fatalf("Collection = %+v, fetched %d, %v", c, fetched, err)
	}
	got, ok, err := r.Tunnel(ctx, 0)
	if err != nil || !ok || got.Node != td.Node || got.Addrs[0] != td.Addrs[0] {
		t.Fatalf("Tunnel = %+v %v %v", got, ok, err)
	}
	if err := r.SetName(ctx, "mallory"); !errors.Is(err, datarepo.ErrReadOnly) {
		t.Fatalf("read-only SetName: %v", err)
	}

	// Without the group secret the values do not open.
	stranger, err := datarepo.OpenKey(ctx, net[1].DHT, readerBlobs, record.Secret(key.NewSecret()), repo.Key())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.Name(ctx); !errors.Is(err, record.ErrDecrypt) {
		t.Fatalf("Name with a wrong secret: %v", err)
	}

	// Delete, and a reopened writer continues at the next seq.
	again, err := datarepo.OpenWritable(net[1].DHT, writerBlobs, secret, kp)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.DeleteFile(ctx, "photo.jpg"); err != nil {
		t.Fatal(err)
	}
	if err := again.DeleteFile(ctx, "photo.jpg"); !errors.Is(err, datarepo.ErrFileNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	c, _, err = r.Collection(ctx, fetch)
	if err != nil || len(c.Entries) != 0 {
		t.Fatalf("after delete: %+v %v", c, err)
	}
	if err := again.ClearTunnel(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.Tunnel(ctx, 0); ok || err != nil {
		t.Fatalf("cleared tunnel still there: %v %v", ok, err)
	}
}

func TestBadNamesRefused(t *testing.T) {
	ctx := context.Background()
	net := testnet.New(t, 1)
	repo, _, err := datarepo.Create(ctx, net[0].DHT, openBlobs(t, net[0]), record.Secret(key.NewSecret()), "r")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "..", "a/b", "nul\x00", string([]byte{0xff, 0xfe})} {
		if err := repo.SetName(ctx, name); !errors.Is(err, datarepo.ErrBadName) {
			t.Errorf("SetName(%q) = %v, want ErrBadName", name, err)
		}
	}
	if _, err := repo.AddFiles(ctx, []string{t.TempDir()}); err == nil {
		t.Error("adding a directory succeeded")
	}
	if err := repo.SetTunnel(ctx, datarepo.MaxTunnels, datarepo.TunnelDescriptor{}); err == nil {
		t.Error("tunnel slot out of range accepted")
	}
}

// TestBeforePublish: the hook sees each new collection, stored, before its
// hash is published; the hash then published is the one it saw.
func TestBeforePublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 2)
	blobs := openBlobs(t, net[0])
	repo, _, err := datarepo.Create(ctx, net[0].DHT, blobs, record.Secret(key.NewSecret()), "r")
	if err != nil {
		t.Fatal(err)
	}
	var seen []blobsync.Hash
	repo.BeforePublish(func(h blobsync.Hash, c *blobsync.Collection) {
		if ok, _ := blobs.Has(h); !ok {
			t.Error("hook called before the collection blob was stored")
		}
		if cur, _, _ := repo.CollectionHash(ctx); cur == h {
			t.Error("hook called after the hash was published")
		}
		if len(c.Entries) != len(seen)+1 {
			t.Errorf("hook's collection has %d entries, want %d", len(c.Entries), len(seen)+1)
		}
		seen = append(seen, h)
	})
	for _, name := range []string{"a.txt", "b.txt"} {
		p := filepath.Join(t.TempDir(), name)
		os.WriteFile(p, []byte(name), 0o600)
		if _, err := repo.AddFiles(ctx, []string{p}); err != nil {
			t.Fatal(err)
		}
	}
	if cur, _, err := repo.CollectionHash(ctx); err != nil || len(seen) != 2 || cur != seen[1] {
		t.Fatalf("published %s (%v), hook saw %v", cur, err, seen)
	}
}

// TestWriteSealedAtMaxSeq: a subkey whose value is at record.MaxSeq has no
// next seq; WriteSealed says so instead of signing one past the limit.
func TestWriteSealedAtMaxSeq(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 2)
	secret, kp := record.Secret(key.NewSecret()), key.NewKeypair()
	desc, err := record.NewDescriptor(kp, datarepo.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := datarepo.WriteSealed(ctx, net[0].DHT, desc, datarepo.SubkeyName, kp, secret, []byte(`{"name":"a"}`)); err != nil || seq != 0 {
		t.Fatalf("first write: seq %d, %v", seq, err)
	}
	sealed, err := secret.Seal(desc.Key(), datarepo.SubkeyName, []byte(`{"name":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	v, err := record.NewValue(desc.Key(), datarepo.SubkeyName, record.MaxSeq, sealed, kp)
	if err != nil {
		t.Fatal(err)
	}
	if err := net[0].DHT.Set(ctx, desc, datarepo.SubkeyName, v); err != nil {
		t.Fatal(err)
	}
	_, err = datarepo.WriteSealed(ctx, net[1].DHT, desc, datarepo.SubkeyName, kp, secret, []byte(`{"name":"c"}`))
	if !errors.Is(err, record.ErrSeqRange) {
		t.Fatalf("write after MaxSeq: %v, want record.ErrSeqRange", err)
	}
	if pt, err := datarepo.ReadSealed(ctx, net[1].DHT, desc.Key(), datarepo.SubkeyName, secret); err != nil || string(pt) != `{"name":"b"}` {
		t.Fatalf("value after the refused write: %q, %v", pt, err)
	}
}

// TestTunnelsSkipBadSlot: a tunnel slot that does not decode, or does not
// decrypt, is skipped with a warning; the good slots after it are still
// listed.
func TestTunnelsSkipBadSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 2)
	secret := record.Secret(key.NewSecret())
	repo, kp, err := datarepo.Create(ctx, net[0].DHT, openBlobs(t, net[0]), secret, "r")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := record.NewDescriptor(kp, datarepo.Schema)
	if err != nil {
		t.Fatal(err)
	}
	// Slot 0: sealed bytes that are no CBOR descriptor. Slot 1: not sealed.
	if _, err := datarepo.WriteSealed(ctx, net[0].DHT, desc, datarepo.SubkeyTunnelFirst, kp, secret, []byte{0xff, 0x00}); err != nil {
		t.Fatal(err)
	}
	raw, err := record.NewValue(desc.Key(), datarepo.SubkeyTunnelFirst+1, 0, make([]byte, 64), kp)
	if err != nil {
		t.Fatal(err)
	}
	if err := net[0].DHT.Set(ctx, desc, datarepo.SubkeyTunnelFirst+1, raw); err != nil {
		t.Fatal(err)
	}
	td := datarepo.TunnelDescriptor{Node: key.NewKeypair().ID(), Static: [32]byte{1}, Addrs: []string{"127.0.0.1:9"}}
	if err := repo.SetTunnel(ctx, 2, td); err != nil {
		t.Fatal(err)
	}

	r, err := datarepo.OpenKey(ctx, net[1].DHT, nil, secret, repo.Key())
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	r.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	tds, err := r.Tunnels(ctx)
	if err != nil || len(tds) != 1 || tds[0].Node != td.Node {
		t.Fatalf("Tunnels = %+v, %v; want the descriptor of slot 2", tds, err)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 2 {
		t.Fatalf("%d warnings, want 2:\n%s", n, logs.String())
	}
	if _, _, err := r.Tunnel(ctx, 0); !errors.Is(err, datarepo.ErrBadValue) {
		t.Fatalf("Tunnel(0) = %v, want ErrBadValue", err)
	}
}

// TestAddReader: a stream becomes a file of the repo's collection, named
// by its hash; a stream that breaks off leaves the collection as it was
// and the store without its bytes; a bad name is refused before a byte is
// read.
func TestAddReader(t *testing.T) {
	ctx := context.Background()
	net := testnet.New(t, 1)
	blobs := openBlobs(t, net[0])
	repo, _, err := datarepo.Create(ctx, net[0].DHT, blobs, record.Secret(key.NewSecret()), "r")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("interview audio ", 200000))
	e, err := repo.AddReader(ctx, "talk.mp3", strings.NewReader(string(data)), 0)
	if err != nil || e.Hash != blobsync.HashBytes(data) || e.Size != int64(len(data)) || e.MediaType != "audio/mpeg" {
		t.Fatalf("AddReader = %+v, %v", e, err)
	}
	c, before, err := repo.Collection(ctx, nil)
	if err != nil || len(c.Entries) != 1 || !reflect.DeepEqual(c.Entries[0], e) {
		t.Fatalf("collection %+v, %v", c, err)
	}

	boom := errors.New("link lost")
	cut := io.MultiReader(strings.NewReader(string(data[:len(data)/2])), errReader{boom})
	if _, err := repo.AddReader(ctx, "cut.mp3", cut, 0); !errors.Is(err, boom) {
		t.Fatalf("broken stream: %v", err)
	}
	if _, after, err := repo.Collection(ctx, nil); err != nil || after != before {
		t.Fatalf("collection changed to %s (%v), was %s", after, err, before)
	}
	if u, err := blobs.Usage(); err != nil || u.Blobs != 3 { // the file, the empty collection and the one listing it
		t.Fatalf("usage %+v %v", u, err)
	}
	read := 0
	if _, err := repo.AddReader(ctx, "a/b", readCounter{&read}, 0); !errors.Is(err, datarepo.ErrBadName) || read != 0 {
		t.Fatalf("bad name: %v, %d bytes read", err, read)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type readCounter struct{ n *int }

func (r readCounter) Read(p []byte) (int, error) { *r.n += len(p); return len(p), nil }

// TestAddFilesChunking: with SetChunking, a file above the chunk threshold
// is stored as chunks: its entry keeps the whole file's BLAKE3 (what b3sum
// prints) and names a chunk list, the whole-file blob is not stored, and
// re-adding it with one byte changed stores at most two chunks; a file at
// the threshold stays one blob. Without SetChunking nothing is chunked.
func TestAddFilesChunking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 1)
	blobs := openBlobs(t, net[0])
	repo, _, err := datarepo.Create(ctx, net[0].DHT, blobs, record.Secret(key.NewSecret()), "phone")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := make([]byte, 3*blobsync.ChunkThreshold)
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	small := big[:blobsync.ChunkThreshold]
	added, err := repo.AddFiles(ctx, []string{write("plain.bin", big[1:])})
	if err != nil || !added[0].Chunks.IsZero() {
		t.Fatalf("without SetChunking: %+v, %v", added, err)
	}
	repo.SetChunking(true)
	added, err = repo.AddFiles(ctx, []string{write("film.mp4", big), write("small.bin", small)})
	if err != nil {
		t.Fatal(err)
	}
	film, sm := added[0], added[1]
	if film.Chunks.IsZero() || film.Hash != blobsync.HashBytes(big) || film.Size != int64(len(big)) {
		t.Fatalf("film entry %+v", film)
	}
	if !sm.Chunks.IsZero() || sm.Hash != blobsync.HashBytes(small) {
		t.Fatalf("a file at the threshold was chunked: %+v", sm)
	}
	if ok, err := blobs.HasFile(film); !ok || err != nil {
		t.Fatalf("HasFile(film) = %v, %v", ok, err)
	}
	if ok, err := blobs.Has(film.Hash); ok || err != nil {
		t.Fatalf("the whole film is stored as a blob too (%v, %v)", ok, err)
	}
	c, _, err := repo.Collection(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := c.Get("film.mp4"); !ok || e.Chunks != film.Chunks {
		t.Fatalf("published entry %+v", e)
	}
	l, err := blobs.ReadChunkList(film.Chunks)
	if err != nil {
		t.Fatal(err)
	}
	big[len(big)/2] ^= 1
	edited, err := repo.AddFiles(ctx, []string{write("film.mp4", big)})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := blobs.ReadChunkList(edited[0].Chunks)
	if err != nil {
		t.Fatal(err)
	}
	old := map[blobsync.Hash]bool{}
	for _, ch := range l.Chunks {
		old[ch.Hash] = true
	}
	fresh := 0
	for _, ch := range l2.Chunks {
		if !old[ch.Hash] {
			fresh++
		}
	}
	if fresh < 1 || fresh > 2 {
		t.Fatalf("one byte changed: %d new chunks of %d", fresh, len(l2.Chunks))
	}
}

// TestAddReaderChunking: with SetChunking, bytes streamed in through
// AddReader (the Save app's upload, the C ABI's bytes) are cut as they
// arrive, into the same chunk list as the same file added from disk, and
// the entry keeps the whole file's BLAKE3; a stream at the threshold
// stays one blob.
func TestAddReaderChunking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 1)
	blobs := openBlobs(t, net[0])
	repo, _, err := datarepo.Create(ctx, net[0].DHT, blobs, record.Secret(key.NewSecret()), "phone")
	if err != nil {
		t.Fatal(err)
	}
	repo.SetChunking(true)
	big := make([]byte, 2*blobsync.ChunkThreshold+12345)
	for i := range big {
		big[i] = byte(i*13 + i>>9)
	}
	e, err := repo.AddReader(ctx, "upload.mp4", io.MultiReader(bytes.NewReader(big)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if e.Chunks.IsZero() || e.Hash != blobsync.HashBytes(big) || e.Size != int64(len(big)) {
		t.Fatalf("streamed entry %+v: want chunks and the whole file's BLAKE3", e)
	}
	p := filepath.Join(t.TempDir(), "same.mp4")
	if err := os.WriteFile(p, big, 0o600); err != nil {
		t.Fatal(err)
	}
	added, err := repo.AddFiles(ctx, []string{p})
	if err != nil || added[0].Chunks != e.Chunks {
		t.Fatalf("the same bytes from a file: %+v, %v; want chunk list %s", added, err, e.Chunks)
	}
	c, _, err := repo.Collection(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Get("upload.mp4"); !ok || got.Chunks != e.Chunks || got.Hash != e.Hash {
		t.Fatalf("published entry %+v", got)
	}
	small, err := repo.AddReader(ctx, "note.txt", bytes.NewReader(big[:blobsync.ChunkThreshold]), 0)
	if err != nil || !small.Chunks.IsZero() || small.Hash != blobsync.HashBytes(big[:blobsync.ChunkThreshold]) {
		t.Fatalf("a stream at the threshold: %+v, %v; want one blob", small, err)
	}
}

// copyOnly is a real store seen through Blobs alone: a store without
// reference support.
type copyOnly struct{ datarepo.Blobs }

// TestAddFilesNoStoreCopy: AddFilesWith with NoStoreCopy keeps a large
// file by reference (the store's directory grows by its outboard only,
// the store reads the file, Store says "reference"), copies a small one
// ("copy"), keeps a large file of a chunked repo by reference unchunked,
// and copies when the Blobs cannot keep references. A directory is
// refused by name.
func TestAddFilesNoStoreCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	net := testnet.New(t, 1)
	blobs := openBlobs(t, net[0])
	secret := record.Secret(key.NewSecret())
	repo, kp, err := datarepo.Create(ctx, net[0].DHT, blobs, secret, "server")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, n int, seed byte) (string, []byte) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*13+i>>9) ^ seed
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p, b
	}
	bigPath, big := write("archive.tar", 3<<20+5, 1)
	smallPath, _ := write("note.txt", 900, 2)
	before := testnet.DirBytes(t, blobs.Dir())
	added, err := repo.AddFilesWith(ctx, []string{bigPath, smallPath}, datarepo.AddOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	if added[0].Store != datarepo.StoreReference || added[0].Hash != blobsync.HashBytes(big) || !added[0].Chunks.IsZero() {
		t.Fatalf("large file added %+v, want a reference", added[0])
	}
	if added[1].Store != datarepo.StoreCopy {
		t.Fatalf("small file kept as %q, want copy", added[1].Store)
	}
	if grew := testnet.DirBytes(t, blobs.Dir()) - before; grew > int64(len(big))/100 {
		t.Fatalf("the store's directory grew by %d bytes for a %d-byte file kept by reference", grew, len(big))
	}
	if p, err := blobs.RefPath(added[0].Hash); err != nil || p != bigPath {
		t.Fatalf("RefPath = %q, %v; want %q", p, err, bigPath)
	}
	if got, err := blobs.ReadAll(added[0].Hash, int64(len(big))); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("reading the reference back: %v", err)
	}
	c, _, err := repo.Collection(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := c.Get("archive.tar"); !ok || e.Hash != added[0].Hash {
		t.Fatalf("published entry %+v, %v", e, ok)
	}

	// A chunked repo keeps it by reference as one blob.
	repo.SetChunking(true)
	filmPath, film := write("film.mp4", 3*blobsync.ChunkThreshold, 3)
	added, err = repo.AddFilesWith(ctx, []string{filmPath}, datarepo.AddOptions{NoStoreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	if a := added[0]; a.Store != datarepo.StoreReference || !a.Chunks.IsZero() || a.Hash != blobsync.HashBytes(film) {
		t.Fatalf("chunked repo: %+v, want one blob by reference", a)
	}
	added, err = repo.AddFilesWith(ctx, []string{filmPath}, datarepo.AddOptions{})
	if err != nil || added[0].Store != datarepo.StoreChunks || added[0].Chunks.IsZero() {
		t.Fatalf("chunked repo, copy: %+v, %v", added, err)
	}

	// A store without references copies.
	plain, err := datarepo.OpenWritable(net[0].DHT, copyOnly{blobs}, secret, kp)
	if err != nil {
		t.Fatal(err)
	}
	otherPath, _ := write("other.bin", 1<<20, 4)
	added, err = plain.AddFilesWith(ctx, []string{otherPath}, datarepo.AddOptions{NoStoreCopy: true})
	if err != nil || added[0].Store != datarepo.StoreCopy {
		t.Fatalf("a store without references: %+v, %v; want a copy", added, err)
	}
	if p, err := blobs.RefPath(added[0].Hash); err != nil || p != "" {
		t.Fatalf("RefPath = %q, %v; want the store's own copy", p, err)
	}

	if _, err := repo.AddFilesWith(ctx, []string{dir}, datarepo.AddOptions{NoStoreCopy: true}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
}
