package core

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dwebkit/dweb/internal/key"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "123": 123, "50GiB": 50 << 30, "50 gib": 50 << 30, "1.5KiB": 1536, "2MB": 2e6,
		"3k": 3 << 10, "1TiB": 1 << 40, "7B": 7, " 10 MiB ": 10 << 20, "0.5GB": 5e8,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1e9", "1.0001B", "abc", "10PiB0", "9999999999TiB", "NaN", "+5"} {
		var bi *BadInputError
		if _, err := ParseSize(in); !errors.As(err, &bi) {
			t.Errorf("ParseSize(%q): %v, want a *BadInputError", in, err)
		}
	}
}

// TestBackupQuota: a backup whose quota holds the small file but not the
// large one downloads the first, refuses the second with a QuotaError that
// names the quota and the bytes held and needed, and reports it per group.
func TestBackupQuota(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	boot := startNode(t, filepath.Join(tmp, "boot"))
	alice := startNode(t, filepath.Join(tmp, "alice"), boot.Contact())
	const quota = 1 << 20
	backup := startWith(t, filepath.Join(tmp, "backup"), Options{Bootstrap: []string{boot.Contact()}, Backup: true, StorageQuota: quota}, false)

	small, _ := writeFile(t, tmp, "note.txt", 300<<10)
	big, _ := writeFile(t, tmp, "clip.mp4", 2<<20)
	g, _, inv := newGroup(ctx, t, alice, "newsroom", small, big)
	join(ctx, t, inv, backup)
	waitFor(t, "a pass that meets the quota", func() bool {
		st, ok := backupGroupStatus(backup, g.ID)
		return ok && st.Files == 2 && st.Held == 1 && st.OverQuota == 1
	})
	st, _ := backupGroupStatus(backup, g.ID)
	if st.Missing != 1 || st.BytesHeld != 300<<10 || len(st.Errors) != 1 ||
		!strings.Contains(st.Errors[0], "storage quota of 1.0 MiB reached: ") || !strings.Contains(st.Errors[0], " held, ") ||
		!strings.Contains(st.Errors[0], "2.0 MiB more needed") {
		t.Fatalf("status %+v", st)
	}
	all := backup.BackupStatus()
	if all.Quota != quota || all.StoreBytes < 300<<10 || all.StoreBytes > quota || all.ErrorsByKind["quota"] < 1 || all.ErrorsByKind["download"] != 0 {
		t.Fatalf("quota %d, store bytes %d, errors by kind %v", all.Quota, all.StoreBytes, all.ErrorsByKind)
	}
	u, err := backup.StorageUsage()
	if err != nil || u.Quota != quota || u.Bytes != all.StoreBytes || u.Reserved != 0 {
		t.Fatalf("usage %+v, %v", u, err)
	}

	// The same check, directly: a typed error with the figures (held
	// counts the collections too).
	_, err = backup.reserveStorage(quota)
	var qe *QuotaError
	if !errors.Is(err, ErrQuota) || !errors.As(err, &qe) || qe.Quota != quota || qe.Held != u.Bytes || qe.Need != quota {
		t.Fatalf("reserve the whole quota again: %v", err)
	}
	release, err := backup.reserveStorage(quota - u.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.reserveStorage(1); !errors.Is(err, ErrQuota) {
		t.Fatalf("one byte over the quota with a reservation held: %v", err)
	}
	release()
	release() // idempotent
	if u, err := backup.StorageUsage(); err != nil || u.Reserved != 0 {
		t.Fatalf("reserved %d after release (%v)", u.Reserved, err)
	}
	if r, err := alice.reserveStorage(1 << 40); err != nil { // no quota
		t.Fatal(err)
	} else {
		r()
	}
}

// TestQuotaOnAddAndGet: a member's own adds and downloads respect its
// storage quota too, with a clear error and nothing stored.
func TestQuotaOnAddAndGet(t *testing.T) {
	tmp := t.TempDir()
	ctx := testContext(t, 60*time.Second)
	alice := startNode(t, filepath.Join(tmp, "alice"))
	bob := startWith(t, filepath.Join(tmp, "bob"), Options{Bootstrap: []string{alice.Contact()}, StorageQuota: 1 << 20}, false)

	big, _ := writeFile(t, tmp, "big.bin", 2<<20)
	g, _, inv := newGroup(ctx, t, alice, "g", big)
	join(ctx, t, inv, bob)
	if _, err := bob.AddFiles(ctx, g.ID, []string{big}); !errors.Is(err, ErrQuota) {
		t.Fatalf("bob adds 2 MiB under a 1 MiB quota: %v, want ErrQuota", err)
	}
	_, err := bob.GetFile(ctx, g.ID, key.RecordKey{}, "big.bin", filepath.Join(tmp, "out"), nil)
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("bob gets 2 MiB under a 1 MiB quota: %v, want ErrQuota", err)
	}
	if u, err := bob.StorageUsage(); err != nil || u.Bytes > 1<<20 {
		t.Fatalf("bob's store after the refusals: %+v, %v", u, err)
	}
	small, _ := writeFile(t, tmp, "small.txt", 1000)
	if _, err := bob.AddFiles(ctx, g.ID, []string{small}); err != nil {
		t.Fatalf("a small add under the quota: %v", err)
	}

	// Uploads (AddReader) reserve as the bytes arrive: a stream and a
	// buffer over the quota are refused with nothing stored; one under it
	// goes through.
	before, err := bob.StorageUsage()
	if err != nil {
		t.Fatal(err)
	}
	stream := io.LimitReader(neverEnding('x'), 2<<20)
	if _, _, err := bob.AddReader(ctx, g.ID, "up.bin", stream, 0); !errors.Is(err, ErrQuota) {
		t.Fatalf("bob uploads a 2 MiB stream under a 1 MiB quota: %v, want ErrQuota", err)
	}
	if _, _, err := bob.AddReader(ctx, g.ID, "buf.bin", bytes.NewReader(make([]byte, 2<<20)), 0); !errors.Is(err, ErrQuota) {
		t.Fatalf("bob adds a 2 MiB buffer under a 1 MiB quota: %v, want ErrQuota", err)
	}
	if u, err := bob.StorageUsage(); err != nil || u != before {
		t.Fatalf("bob's store after the refused uploads: %+v, was %+v (%v)", u, before, err)
	}
	if _, _, err := bob.AddReader(ctx, g.ID, "up.bin", io.LimitReader(neverEnding('y'), 300<<10), 0); err != nil {
		t.Fatalf("a 300 KiB upload under the quota: %v", err)
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 40: "5.0 TiB", 3 << 50: "3072.0 TiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
