package abi

import (
	"context"
	"encoding/json"
	"fmt"
)

// response is the JSON dweb_call returns: exactly one of the fields.
type response struct {
	Result any        `json:"result,omitempty"`
	Error  *ErrorJSON `json:"error,omitempty"`
}

// emptyResult is the result of methods with nothing to say: {}.
type emptyResult struct{}

// ErrorResponse is the JSON body for err: {"error":{"code","message"}}.
func ErrorResponse(err error) []byte {
	e := toJSON(err)
	b, _ := json.Marshal(response{Error: &e})
	return b
}

func resultResponse(v any) []byte {
	if v == nil {
		v = emptyResult{}
	}
	b, err := json.Marshal(response{Result: v})
	if err != nil {
		return ErrorResponse(Errorf(CodeInternal, "encode result: %v", err))
	}
	return b
}

// Call runs method with params (JSON bytes) on node h and returns the JSON
// response. It never panics: a panic in a method becomes an "internal"
// error. Synchronous methods run under the node's call timeout; long ones
// (sync.download, sync.refresh, op.start) return {"op": id} at once.
func Call(h int64, method string, params []byte) (out []byte) {
	res, err := call(h, method, params)
	if err != nil {
		if n, lerr := lookup(h); lerr == nil {
			n.setErr(err)
		}
		return ErrorResponse(err)
	}
	return resultResponse(res)
}

func call(h int64, method string, params []byte) (res any, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, Recovered(v)
		}
	}()
	if err := CheckString("method", []byte(method)); err != nil {
		return nil, err
	}
	if err := CheckString("params", params); err != nil {
		return nil, err
	}
	n, err := lookup(h)
	if err != nil {
		return nil, err
	}
	m, q, err := parseCall(method, params)
	if err != nil {
		return nil, err
	}
	if !n.enter() {
		return nil, Errorf(CodeClosed, "handle %d is closing", h)
	}
	defer n.inflight.Done()
	if m.long {
		return m.run(n.ctx, n, q)
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.timeout)
	defer cancel()
	res, err = m.run(ctx, n, q)
	if err != nil && ctx.Err() != nil && context.Cause(n.ctx) == errClosed {
		err = &Error{Code: CodeClosed, Err: fmt.Errorf("%s: %w", method, err)}
	}
	return res, err
}
