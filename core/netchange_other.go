//go:build !linux || android

package core

import (
	"context"
	"errors"
)

// watchAddrs: the kernel's notifications are not read here (Android
// refuses apps a bound netlink socket; other systems differ), so
// watchNetwork compares the addresses every addrPoll.
func watchAddrs(context.Context) (<-chan struct{}, error) {
	return nil, errors.New("no address notifications on this system")
}
