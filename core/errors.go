package core

import "errors"

// Errors returned by the Backend; test with errors.Is.
var (
	ErrUnknownGroup = errors.New("unknown group")
	ErrFileNotFound = errors.New("file not found")
	ErrAmbiguous    = errors.New("ambiguous name")
	ErrNotStarted   = errors.New("backend not started")
)

// BadInputError is invalid input from the caller (a malformed invite URI, a
// bad name). The HTTP API and the C ABI report it as a client error.
type BadInputError struct{ Err error }

func (e *BadInputError) Error() string { return e.Err.Error() }
func (e *BadInputError) Unwrap() error { return e.Err }

func badInput(err error) error { return &BadInputError{Err: err} }
