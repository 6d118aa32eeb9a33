package rcmgr

import (
	"errors"
	"fmt"
)

// ErrLimit is what every *LimitError matches with errors.Is.
var ErrLimit = errors.New("rcmgr: resource limit reached")

// LimitError is a refusal: the scope Scope (for Key: the node ID, the IP
// address or the prefix; "" for the system scope) already holds Limit
// resources of kind Kind. Test it with errors.As, or errors.Is(err,
// ErrLimit).
type LimitError struct {
	Scope Scope
	Kind  Kind
	Key   string
	Limit int
}

func (e *LimitError) Error() string {
	if e.Scope == ScopeSystem {
		return fmt.Sprintf("rcmgr: %s limit of the node reached (%d)", e.Kind, e.Limit)
	}
	return fmt.Sprintf("rcmgr: %s limit of %s %s reached (%d)", e.Kind, e.Scope, e.Key, e.Limit)
}

// Unwrap returns ErrLimit.
func (e *LimitError) Unwrap() error { return ErrLimit }
