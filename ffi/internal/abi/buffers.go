package abi

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// MaxAddBytes bounds one dweb_add_file_bytes buffer: 1 GiB. Larger files
// are added by path.
const MaxAddBytes = 1 << 30

// SetNewError records err as the last failure of New (LastError(0)).
func SetNewError(err error) {
	newErrMu.Lock()
	newErrMsg = err.Error()
	newErrMu.Unlock()
}

// SetLastError records err as h's last error, if h is open.
func SetLastError(h int64, err error) {
	if n, lerr := lookup(h); lerr == nil {
		n.setErr(err)
	}
}

// withNode runs fn on node h under the call timeout, recovering panics and
// recording a failure as h's last error.
func withNode(h int64, fn func(ctx context.Context, n *node) (any, error)) (res any, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, Recovered(v)
		}
		if err != nil {
			SetLastError(h, err)
		}
	}()
	n, err := lookup(h)
	if err != nil {
		return nil, err
	}
	if !n.enter() {
		return nil, Errorf(CodeClosed, "handle %d is closing", h)
	}
	defer n.inflight.Done()
	ctx, cancel := context.WithTimeout(n.ctx, n.timeout)
	defer cancel()
	return fn(ctx, n)
}

// AddBytes adds data as a file of a group: params {"group", "name"}. It
// returns the JSON response of file.add. data is only read during the call.
func AddBytes(h int64, params []byte, data []byte) []byte {
	res, err := withNode(h, func(ctx context.Context, n *node) (any, error) {
		var q struct {
			Group string `json:"group"`
			Name  string `json:"name"`
		}
		if err := decodeStrict("params", params, &q); err != nil {
			return nil, err
		}
		g, err := n.resolve(q.Group)
		if err != nil {
			return nil, err
		}
		return n.addBytes(ctx, g, q.Name, data)
	})
	if err != nil {
		return ErrorResponse(err)
	}
	return resultResponse(res)
}

// ReadInto reads a file of a group into buf: params {"group", "name",
// "repo"?}. It returns the file's size. If the file is larger than buf it
// returns the size and a CodeRange error; a file is fetched from peers
// only once buf is known to be large enough, and buf is filled only on
// success.
func ReadInto(h int64, params []byte, buf []byte) (int64, error) {
	res, err := withNode(h, func(ctx context.Context, n *node) (any, error) {
		q, err := parseTarget(params, false)
		if err != nil {
			return nil, err
		}
		g, err := n.resolve(q.Group)
		if err != nil {
			return nil, err
		}
		repo := q.repo
		files, err := n.b.ListFiles(ctx, g.ID)
		if err != nil {
			return nil, err
		}
		var size int64 = -1
		for _, f := range files {
			if f.Name == q.Name && (repo.IsZero() || f.Repo == repo) {
				size = max(size, f.Size)
			}
		}
		if size < 0 {
			return nil, Errorf(CodeNotFound, "file %q not found in group %s", q.Name, g.Name)
		}
		if size > int64(len(buf)) {
			return size, Errorf(CodeRange, "file %q is %d bytes, buffer is %d", q.Name, size, len(buf))
		}
		tmpRoot := filepath.Join(n.cfg.DataDir, "ffi-tmp")
		if err := os.MkdirAll(tmpRoot, 0o700); err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp(tmpRoot, "read-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		path, err := filepath.Abs(filepath.Join(dir, "file"))
		if err != nil {
			return nil, err
		}
		fi, err := n.b.GetFile(ctx, g.ID, repo, q.Name, path, nil)
		if err != nil {
			return nil, err
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if st.Size() > int64(len(buf)) {
			return st.Size(), Errorf(CodeRange, "file %q is %d bytes, buffer is %d", q.Name, st.Size(), len(buf))
		}
		k, err := f.ReadAt(buf[:st.Size()], 0)
		if err != nil && int64(k) != st.Size() {
			return nil, fmt.Errorf("read %q: %w", fi.Name, err)
		}
		return int64(k), nil
	})
	size, _ := res.(int64)
	return size, err
}
