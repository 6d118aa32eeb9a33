package httpapi

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// The guard keeps the API local to its owner (docs/http-api.md, "Who can
// drive the API"). A web page the phone's or the desktop's browser opens
// can send requests to 127.0.0.1:8080: cross-site "simple" requests
// (text/plain bodies, form posts, image loads) and, through DNS rebinding,
// requests under a hostile name that resolves to 127.0.0.1. The guard
// refuses them before any route runs, as tailscale's LocalAPI and
// syncthing's GUI do:
//
//   - On TCP, the Host must be a loopback name or address (localhost,
//     127.0.0.0/8, [::1], any port): a rebinding page's Host is its own
//     name.
//   - Any request that carries Origin or Referer, or a Sec-Fetch-Site other
//     than "none", came from a browser page: the Save app sends none.
//   - A JSON route's body must be declared application/json (decode), which
//     a cross-site simple request cannot declare.
//   - dweb's own routes (/dweb/v1/..., two of which read or write
//     arbitrary paths on the daemon's machine) and /metrics are reachable
//     over TCP only with "Authorization: Bearer TOKEN" (Options.Token,
//     which the daemon keeps in a 0600 file); without a token, only on the
//     unix socket, whose file mode 0600 admits the daemon's user alone.
//
// Requests on the unix socket skip the Host and token checks: no browser
// reaches a unix socket.
func guard(token string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
		h.Set("Cache-Control", "no-store")
		if msg := refusal(token, r); msg != "" {
			writeError(w, r, http.StatusForbidden, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refusal says why the guard refuses r, or "" if it does not.
func refusal(token string, r *http.Request) string {
	switch {
	case r.Header.Get("Origin") != "":
		return "refused: request from a web page (Origin " + clip(r.Header.Get("Origin")) + "); the local API serves local apps only"
	case r.Header.Get("Referer") != "":
		return "refused: request from a web page (Referer set); the local API serves local apps only"
	case r.Header.Get("Sec-Fetch-Site") != "" && r.Header.Get("Sec-Fetch-Site") != "none":
		return "refused: request from a web page (Sec-Fetch-Site " + clip(r.Header.Get("Sec-Fetch-Site")) + "); the local API serves local apps only"
	}
	if onUnixSocket(r) {
		return ""
	}
	if !loopbackHost(r.Host) {
		return "refused: Host " + clip(r.Host) + " is not a loopback name or address (localhost, 127.0.0.1, [::1])"
	}
	if !isSaveRoute(r.URL.Path) && !validToken(token, r) {
		if token == "" {
			return "refused: " + r.URL.Path + " is served on the unix socket only"
		}
		return "refused: " + r.URL.Path + " over TCP needs Authorization: Bearer with the token of the daemon's api.token file"
	}
	return ""
}

// onUnixSocket reports whether r arrived on a unix socket listener.
func onUnixSocket(r *http.Request) bool {
	a, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return a != nil && a.Network() == "unix"
}

// loopbackHost reports whether a Host header names this machine's
// loopback: "localhost" or a loopback IP, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	return IsLoopbackHost(host)
}

// validToken reports whether r carries "Authorization: Bearer token" (a
// constant-time comparison); never with an empty token.
func validToken(token string, r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// clip bounds a header value quoted in an error.
func clip(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s) + `"`
}

// TokenFile is the name, in the daemon's data directory, of the file that
// holds the token of dweb's own routes over TCP (mode 0600).
const TokenFile = "api.token"

// LoadOrCreateToken reads the token in path, or writes a new one there
// (32 random bytes in hex, mode 0600) if the file does not exist. A file
// that others can read or write is refused: the token would not be its
// owner's alone.
func LoadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		var raw [32]byte
		rand.Read(raw[:])
		tok := hex.EncodeToString(raw[:])
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", fmt.Errorf("API token: %w", err)
		}
		_, err = f.WriteString(tok + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("API token: %w", err)
		}
		return tok, nil
	}
	if err != nil {
		return "", fmt.Errorf("API token: %w", err)
	}
	if fi, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("API token: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("API token %s: mode %v, want 0600 (chmod 600 it)", path, fi.Mode().Perm())
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		return "", fmt.Errorf("API token %s: %d characters, want at least 32", path, len(tok))
	}
	return tok, nil
}
