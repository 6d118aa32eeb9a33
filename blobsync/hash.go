package blobsync

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/zeebo/blake3"
)

// Hash is the BLAKE3-256 hash of a blob's bytes: the name of the blob, the
// same 32 bytes that `b3sum` prints as 64 hex digits.
type Hash [32]byte

// ParseHash parses the 64 lowercase or uppercase hex digits of a hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("blobsync: hash %q: want %d hex digits, got %d", truncate(s, 80), 2*len(h), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("blobsync: hash %q: %w", truncate(s, 80), err)
	}
	return h, nil
}

// String returns the hash as 64 lowercase hex digits, as `b3sum` prints it.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zero bytes (no hash set).
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText returns the hash as 64 lowercase hex digits.
func (h Hash) MarshalText() ([]byte, error) {
	b := make([]byte, 2*len(h))
	hex.Encode(b, h[:])
	return b, nil
}

// UnmarshalText parses 64 hex digits; see ParseHash.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// HashBytes returns the BLAKE3-256 hash of b.
func HashBytes(b []byte) Hash { return blake3.Sum256(b) }

// HashFile returns the BLAKE3-256 hash of the file at path and its size in
// bytes. It streams the file through github.com/zeebo/blake3 with a fixed
// 256 KiB buffer, so memory stays bounded whatever the file's size.
func HashFile(path string) (Hash, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: hash file: %w", err)
	}
	defer f.Close()
	hs := blake3.New()
	n, err := io.CopyBuffer(hs, f, make([]byte, ioBufSize))
	if err != nil {
		return Hash{}, 0, fmt.Errorf("blobsync: hash file %s: %w", path, err)
	}
	var h Hash
	hs.Sum(h[:0])
	return h, n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
