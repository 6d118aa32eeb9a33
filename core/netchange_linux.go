//go:build linux && !android

package core

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// watchAddrs subscribes to the kernel's notifications of address, link
// and route changes (a NETLINK_ROUTE socket bound to their multicast
// groups) and sends on the channel once per notification read, until ctx
// ends; the channel is closed then, or if reading fails. The socket is
// read through the runtime's poller, so nothing wakes between
// notifications.
func watchAddrs(ctx context.Context) (<-chan struct{}, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	groups := uint32(unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	f := os.NewFile(uintptr(fd), "netlink-route")
	stop := context.AfterFunc(ctx, func() { f.Close() })
	c := make(chan struct{}, 1)
	go func() {
		defer close(c)
		defer stop()
		defer f.Close()
		buf := make([]byte, 1<<16)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}()
	return c, nil
}
