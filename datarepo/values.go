package datarepo

import (
	"encoding/json"
	"errors"
	"fmt"
)

// The values of a repo record as they are written and read. Whoever holds
// the group secret and the repo keypair (any member, for its own repo)
// chooses these bytes, so every reader checks them here before using them.

// ErrBadValue means a value read from a repo record does not decode, or
// breaks the bounds of its subkey.
var ErrBadValue = errors.New("datarepo: bad record value")

// encodeName is the value of subkey 0 for a repo named name.
func encodeName(name string) []byte {
	b, _ := json.Marshal(nameValue{Name: name})
	return b
}

// decodeName decodes the value of subkey 0: JSON {"name": ...} (other
// fields are ignored, for later versions) whose name passes the rules
// SetName applies. Errors wrap ErrBadValue, and ErrBadName too for a name
// that breaks the rules.
func decodeName(b []byte) (string, error) {
	var v nameValue
	if err := json.Unmarshal(b, &v); err != nil {
		return "", fmt.Errorf("%w: name value: %v", ErrBadValue, err)
	}
	if err := checkName(v.Name); err != nil {
		return "", fmt.Errorf("%w: name value: %w", ErrBadValue, err)
	}
	return v.Name, nil
}
