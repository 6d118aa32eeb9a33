package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// relayDumper writes what a relay splices to files in dir, one per circuit
// and direction (`dweb serve --relay --relay-dump DIR`):
// circuit-NNNNNN-to-target (the initiator's bytes) and
// circuit-NNNNNN-to-initiator (the reserved node's). It is how a test sees
// a relay's own view of the bytes it carries, which must be ciphertext
// only (scripts/nat-test.sh).
type relayDumper struct {
	dir string
	log *slog.Logger
}

// newRelayDumper creates dir (0700) if needed.
func newRelayDumper(dir string, log *slog.Logger) (*relayDumper, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--relay-dump: %w", err)
	}
	return &relayDumper{dir: dir, log: log}, nil
}

// tap is core.Options.RelayTap. A file it cannot create leaves that
// direction untapped, logged as an error.
func (d *relayDumper) tap(circuit uint64, toTarget bool) io.WriteCloser {
	dir := "to-initiator"
	if toTarget {
		dir = "to-target"
	}
	path := filepath.Join(d.dir, fmt.Sprintf("circuit-%06d-%s", circuit, dir))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		d.log.Error("relay dump", "err", err)
		return nil
	}
	return f
}
