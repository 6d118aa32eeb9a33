package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/zeebo/blake3"
)

// runCLI runs one dweb command line in-process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHashMatchesBlake3AndB3sum(t *testing.T) {
	dir := t.TempDir()
	sizes := []int{0, 1, 1023, 1024, 1025, 16 << 10, 16<<10 + 1, 1<<20 + 7}
	var paths []string
	for _, n := range sizes {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + n)
		}
		p := filepath.Join(dir, fmt.Sprintf("f%d", n))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	code, out, errOut := runCLI(t, append([]string{"hash"}, paths...)...)
	if code != 0 {
		t.Fatalf("hash: exit %d, stderr %q", code, errOut)
	}
	var want bytes.Buffer
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := blake3.Sum256(b)
		fmt.Fprintf(&want, "%s  %s\n", hex.EncodeToString(sum[:]), p)
	}
	if out != want.String() {
		t.Fatalf("hash output\n%s\nwant (zeebo/blake3)\n%s", out, want.String())
	}
	if b3, err := exec.LookPath("b3sum"); err == nil {
		got, err := exec.Command(b3, paths...).Output()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != out {
			t.Fatalf("hash output\n%s\nb3sum\n%s", out, got)
		}
	} else {
		t.Log("b3sum not in PATH; compared with zeebo/blake3 only")
	}
}

func TestHashMissingFile(t *testing.T) {
	code, out, errOut := runCLI(t, "hash", filepath.Join(t.TempDir(), "nope"))
	if code != exitError || out != "" || !bytes.Contains([]byte(errOut), []byte("nope")) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
