package httpapi

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")

	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v; want 0600", fi.Mode(), err)
	}
	go func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}(ln)
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Fatalf("second listener on a live socket: %v", err)
	}
	ln.Close()

	// A socket file nobody answers on (a process that died) is replaced.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatal("stale socket file gone before the test:", err)
	}
	ln, err = ListenUnix(sock)
	if err != nil {
		t.Fatal("stale socket not replaced:", err)
	}
	ln.Close()

	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	if _, err := ListenUnix(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file in the way: %v", err)
	}
	if _, err := ListenUnix(filepath.Join(dir, "missing", "api.sock")); err == nil {
		t.Fatal("missing parent directory: no error")
	}
	if _, err := ListenUnix("/" + strings.Repeat("a", MaxSocketPath)); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("long path: %v", err)
	}
}
