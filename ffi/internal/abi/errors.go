package abi

import (
	"context"
	"errors"
	"fmt"

	"github.com/dwebkit/dweb/core"
)

// Code is the string error code of a JSON error ({"error":{"code":...}})
// and of an op.failed event. Each Code also has a negative integer form
// (Code.Num) for the exports that return an int. The list is part of the
// ABI and documented in docs/ffi.md; codes are only ever added.
type Code string

// Error codes.
const (
	CodeNullArgument  Code = "null_argument"  // a required pointer was NULL
	CodeInvalidUTF8   Code = "invalid_utf8"   // a string argument is not UTF-8
	CodeInvalidJSON   Code = "invalid_json"   // params or config is not one JSON value
	CodeTooLarge      Code = "too_large"      // a string argument exceeds MaxInput
	CodeUnknownHandle Code = "unknown_handle" // no open node has this handle
	CodeUnknownMethod Code = "unknown_method" // dweb_call method not in the table
	CodeBadParams     Code = "bad_params"     // JSON is valid but its fields are wrong
	CodeBadInput      Code = "bad_input"      // core rejected the input (bad URI, bad name, relative path)
	CodeNotFound      Code = "not_found"      // unknown group, file, version of a file or operation
	CodeAmbiguous     Code = "ambiguous"      // a name matches several groups or files
	CodeRange         Code = "range"          // a caller buffer is too small (ERANGE)
	CodeBusy          Code = "busy"           // not allowed from inside the event callback
	CodeCancelled     Code = "cancelled"      // the operation was cancelled (op.cancel or dweb_close)
	CodeTimeout       Code = "timeout"        // the call exceeded its time limit
	CodeClosed        Code = "closed"         // the node is closing
	CodeFailed        Code = "failed"         // the operation failed (network, disk); see message
	CodePaused        Code = "paused"         // the node is paused (node.pause) and the call needs the network
	CodeInternal      Code = "internal"       // a bug: a recovered panic
)

// Integer forms, as returned by dweb_new, dweb_close and the buffer exports.
const (
	NumOK            = 0
	NumInvalid       = -1 // null_argument, invalid_utf8, invalid_json, bad_params, bad_input
	NumUnknownHandle = -2
	NumTooLarge      = -3
	NumRange         = -4
	NumBusy          = -5
	NumNotFound      = -6
	NumFailed        = -7 // failed, timeout, cancelled, closed, paused, ambiguous, unknown_method
	NumInternal      = -8
)

// Num returns the integer form of c.
func (c Code) Num() int {
	switch c {
	case CodeNullArgument, CodeInvalidUTF8, CodeInvalidJSON, CodeBadParams, CodeBadInput:
		return NumInvalid
	case CodeUnknownHandle:
		return NumUnknownHandle
	case CodeTooLarge:
		return NumTooLarge
	case CodeRange:
		return NumRange
	case CodeBusy:
		return NumBusy
	case CodeNotFound:
		return NumNotFound
	case CodeInternal:
		return NumInternal
	}
	return NumFailed
}

// Error is an error with its ABI code.
type Error struct {
	Code Code
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code c.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Err: fmt.Errorf(format, args...)}
}

// ErrorJSON is the JSON form of an error: {"code":"...","message":"..."}.
type ErrorJSON struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// CodeOf maps any error to its ABI code: the one place where core's
// sentinel errors meet the ABI's codes.
func CodeOf(err error) Code {
	var ae *Error
	var bi *core.BadInputError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ae):
		return ae.Code
	case errors.As(err, &bi):
		return CodeBadInput
	case errors.Is(err, core.ErrUnknownGroup), errors.Is(err, core.ErrFileNotFound), errors.Is(err, core.ErrVersionNotFound):
		return CodeNotFound
	case errors.Is(err, core.ErrAmbiguous):
		return CodeAmbiguous
	case errors.Is(err, core.ErrPaused):
		return CodePaused
	case errors.Is(err, errClosed):
		return CodeClosed
	case errors.Is(err, context.Canceled):
		return CodeCancelled
	case errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	}
	return CodeFailed
}

// errClosed is the cause of a node context cancelled by Close.
var errClosed = errors.New("node is closing")

// toJSON returns the JSON form of err.
func toJSON(err error) ErrorJSON { return ErrorJSON{Code: CodeOf(err), Message: err.Error()} }
