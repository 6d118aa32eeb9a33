package uri

import (
	"errors"
	"fmt"
)

// ErrScheme is wrapped by the *ParamError that ParseInvite returns when the
// input does not start with "save+dweb:" (compared case-insensitively).
// Test for it with errors.Is.
var ErrScheme = errors.New("not a save+dweb URI")

// ParamError is the only error type ParseInvite returns. Param names the
// query parameter at fault ("v", "dht", "enc", "pk", "sk", "for", "ik",
// "lv", "lh", "bs", "name", or an unknown parameter's decoded name); it is
// empty when the fault is in the URI as a whole (size, scheme, characters,
// shape). Reason is a short lower-case phrase such as "missing",
// "duplicated", "not a 32-byte key in base64url" or "unsupported version 3
// (this build reads up to 2)".
//
// When the fault comes from another package's check (key.ErrBadKey) or is a
// scheme mismatch (ErrScheme), the error unwraps to it.
type ParamError struct {
	Param  string
	Reason string

	err error // wrapped cause, may be nil
}

// Error returns one line: `invite: parameter "enc": missing`, or
// `invite: <reason>` when Param is empty.
func (e *ParamError) Error() string {
	if e.Param == "" {
		return "invite: " + e.Reason
	}
	return fmt.Sprintf("invite: parameter %q: %s", e.Param, e.Reason)
}

// Unwrap returns the underlying cause (ErrScheme, key.ErrBadKey) or nil.
func (e *ParamError) Unwrap() error { return e.err }

func paramErr(param, reason string) *ParamError {
	return &ParamError{Param: param, Reason: reason}
}

func paramErrf(param string, cause error, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Reason: fmt.Sprintf(format, args...), err: cause}
}
