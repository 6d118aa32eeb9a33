package httpapi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"time"
)

// AddrError is a refused or malformed TCP address for the API (a usage
// error of `dweb serve --http`).
type AddrError struct{ Err error }

func (e *AddrError) Error() string { return e.Err.Error() }
func (e *AddrError) Unwrap() error { return e.Err }

// ListenTCP opens the optional TCP listener of the API (`dweb serve --http
// HOST:PORT`; the JNI library's 127.0.0.1:8080). HOST must be a loopback
// address (127.0.0.0/8, ::1) or "localhost" unless allowRemote
// (--http-allow-remote) is set; an empty HOST (all interfaces) counts as
// remote. Errors are *AddrError for a bad or refused address, or the
// listen error.
func ListenTCP(addr string, allowRemote bool) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &AddrError{fmt.Errorf("--http %q: want HOST:PORT (e.g. 127.0.0.1:8080): %v", addr, err)}
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return nil, &AddrError{fmt.Errorf("--http %q: bad port: %v", addr, err)}
	}
	if !allowRemote && !IsLoopbackHost(host) {
		return nil, &AddrError{fmt.Errorf("--http %q: not a loopback address; any web page or host that reaches the port could drive the node: pass --http-allow-remote to serve it anyway", addr)}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --http %s: %w", addr, err)
	}
	return ln, nil
}

// IsLoopbackHost reports whether host is "localhost" or a loopback IP.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// MaxSocketPath is the longest unix socket path Linux accepts (sun_path is
// 108 bytes with the terminating NUL).
const MaxSocketPath = 107

// ListenUnix opens the API's unix socket at path, mode 0600 (only the
// owner's user can connect). The parent directory must exist. A socket file
// left by a process that is gone is replaced; one that a server still
// answers on, or a file that is not a socket, is an error.
func ListenUnix(path string) (net.Listener, error) {
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, longer than the %d a unix socket allows", path, len(path), MaxSocketPath)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("socket path %s: a file that is not a socket is in the way", path)
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("socket path %s: another server is listening on it", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket permissions: %w", err)
	}
	return ln, nil
}
