// Package fuzzcorpus keeps the checked-in corpus of dweb's fuzz targets
// (testdata/fuzz/FuzzXxx/ beside each target, in Go's "go test fuzz v1"
// file format) in step with the encoders. A target passes the seeds that
// the real encoder made, the valid inputs, to Add, which hands them to
// f.Add and, when the environment says DWEB_FUZZ_CORPUS=write, also writes
// each one to the target's corpus directory. Regenerate a package's corpus
// after a wire change with
//
//	DWEB_FUZZ_CORPUS=write go test -run '^FuzzXxx$' ./pkg
//
// Files it writes are named valid-<hash of the content>, and a write run
// first removes the target's old valid-* files; other files there (inputs
// the fuzzer found, kept as regression seeds) are left alone. Used by tests
// only.
package fuzzcorpus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Env is the environment variable that makes Add write the corpus.
const Env = "DWEB_FUZZ_CORPUS"

var (
	mu      sync.Mutex
	cleared = map[string]bool{}
)

// Add adds one seed (the target's arguments, in order) to f and, with
// DWEB_FUZZ_CORPUS=write, writes it to testdata/fuzz/<f.Name()>/. The
// argument types are those Go's corpus files hold; Add supports the ones
// dweb's targets use: []byte, string, bool, int, int64, uint16, uint32 and
// uint64.
func Add(f *testing.F, args ...any) {
	f.Helper()
	f.Add(args...)
	if os.Getenv(Env) != "write" {
		return
	}
	b, err := Marshal(args...)
	if err != nil {
		f.Fatal(err)
	}
	dir := filepath.Join("testdata", "fuzz", f.Name())
	mu.Lock()
	defer mu.Unlock()
	if !cleared[dir] {
		old, _ := filepath.Glob(filepath.Join(dir, "valid-*"))
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				f.Fatal(err)
			}
		}
		cleared[dir] = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	sum := sha256.Sum256(b)
	p := filepath.Join(dir, "valid-"+hex.EncodeToString(sum[:8]))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		f.Fatal(err)
	}
}

// Marshal encodes args as a corpus file, byte for byte as the go command
// writes one (internal/fuzz's marshalCorpusFile).
func Marshal(args ...any) ([]byte, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("fuzzcorpus: no arguments")
	}
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool, int, int64, uint16, uint32, uint64:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		default:
			return nil, fmt.Errorf("fuzzcorpus: argument of type %T not supported", a)
		}
	}
	return b.Bytes(), nil
}
