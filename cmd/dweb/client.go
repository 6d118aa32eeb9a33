package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dwebkit/dweb/core"
	"github.com/dwebkit/dweb/httpapi"
)

// maxResponseBytes bounds a JSON response the CLI reads from its daemon.
const maxResponseBytes = 64 << 20

// noDaemonError says that nothing answers on the daemon socket; it exits with
// exitNoDaemon.
type noDaemonError struct {
	sock, dataDir string
}

func (e *noDaemonError) Error() string {
	return fmt.Sprintf("no daemon at %s (start one with: dweb serve --data %s)", e.sock, e.dataDir)
}

// remoteError is an error answered by the daemon: its HTTP status and message.
type remoteError struct {
	status int
	msg    string
}

func (e *remoteError) Error() string { return e.msg }

// client talks to the daemon's local HTTP API on its unix socket.
type client struct {
	sock    string
	dataDir string
	hc      *http.Client
}

func (a *app) client() *client {
	sock := a.socketPath()
	var d net.Dialer
	return &client{
		sock:    sock,
		dataDir: filepath.Dir(sock),
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", sock)
			},
			DisableCompression: true,
		}},
	}
}

// isNoDaemon reports whether err is a dial failure meaning no daemon listens.
func isNoDaemon(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// send makes one request with an optional JSON body and returns the response;
// the caller closes its body. Non-2xx answers become *remoteError.
func (c *client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	return c.sendWith(ctx, method, path, body, nil)
}

// sendWith is send with extra request headers hdr (may be nil).
func (c *client) sendWith(ctx context.Context, method, path string, body any, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://dweb"+path, rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if isNoDaemon(err) {
			return nil, &noDaemonError{c.sock, c.dataDir}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("daemon at %s: %w", c.sock, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		return nil, &remoteError{resp.StatusCode, errorMessage(resp.Status, b)}
	}
	return resp, nil
}

// errorMessage reads an error answer: dweb's routes answer an
// httpapi.ErrorBody, the Save routes a bare JSON string.
func errorMessage(status string, body []byte) string {
	var e httpapi.ErrorBody
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	var msg string
	if json.Unmarshal(body, &msg) == nil && msg != "" {
		return msg
	}
	return fmt.Sprintf("daemon answered %s: %s", status, strings.TrimSpace(string(body)))
}

// call makes one request and decodes the JSON answer into out (if non-nil).
func (c *client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(out); err != nil {
		return fmt.Errorf("daemon answer to %s %s: %w", method, path, err)
	}
	return nil
}

// getFile runs POST /dweb/v1/groups/{group}/files/get and reads its NDJSON
// stream, calling progress for each progress line; it returns the final line.
func (c *client) getFile(ctx context.Context, groupPath string, req httpapi.GetFileRequest, progress func(done, total int64)) (httpapi.GetFileLine, error) {
	resp, err := c.send(ctx, http.MethodPost, "/dweb/v1/groups/"+groupPath+"/files/get", req)
	if err != nil {
		return httpapi.GetFileLine{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l httpapi.GetFileLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return httpapi.GetFileLine{}, fmt.Errorf("daemon progress stream: %w", err)
		}
		switch {
		case l.Error != "":
			return l, &remoteError{l.Code, l.Error}
		case l.File != nil:
			return l, nil
		case l.Done != nil && l.Total != nil && progress != nil:
			progress(*l.Done, *l.Total)
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return httpapi.GetFileLine{}, ctx.Err()
		}
		return httpapi.GetFileLine{}, fmt.Errorf("daemon progress stream: %w", err)
	}
	return httpapi.GetFileLine{}, errors.New("daemon progress stream ended without a result")
}

// syncGroup runs POST /dweb/v1/groups/{group}/sync and reads its NDJSON
// stream, calling progress for each progress line; it returns the repos of
// the final line.
func (c *client) syncGroup(ctx context.Context, groupPath string, progress func(core.RefreshProgress)) ([]core.RepoRefresh, error) {
	resp, err := c.send(ctx, http.MethodPost, "/dweb/v1/groups/"+groupPath+"/sync", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20) // the final line lists every file name
	for sc.Scan() {
		var l httpapi.SyncLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("daemon progress stream: %w", err)
		}
		switch {
		case l.Error != "":
			return nil, &remoteError{l.Code, l.Error}
		case l.Repos != nil:
			return *l.Repos, nil
		case l.Progress != nil && progress != nil:
			progress(*l.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("daemon progress stream: %w", err)
	}
	return nil, errors.New("daemon progress stream ended without a result")
}
