// Package wakeups counts how often a process's threads woke up, from the
// kernel's per-thread scheduler counters, for the measurements of an idle
// (paused) node: a loop, ticker or timer left running in a process shows
// as wakeups whatever code it belongs to, including the Go runtime's own.
//
// A thread's voluntary context switches count the times it gave up the
// CPU by blocking: each follows one wakeup (a timer, a socket, a futex).
// Count sums them over every thread of the process, read from
// /proc/PID/task/*/status (Linux only). Threads that exited between two
// reads take their counts with them, so a difference of two Counts is a
// lower bound when threads come and go; an idle Go process keeps its
// threads.
package wakeups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
)

// ErrUnsupported is returned where /proc has no per-thread status.
var ErrUnsupported = errors.New("wakeups: needs Linux /proc")

// Count returns the voluntary context switches of every live thread of
// process pid, summed, and how many threads it has.
func Count(pid int) (switches int64, threads int, err error) {
	if runtime.GOOS != "linux" && runtime.GOOS != "android" {
		return 0, 0, ErrUnsupported
	}
	paths, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return 0, 0, err
	}
	if len(paths) == 0 {
		return 0, 0, fmt.Errorf("wakeups: no threads of process %d in /proc", pid)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		n, ok := voluntary(b)
		if !ok {
			return 0, 0, fmt.Errorf("wakeups: %s has no voluntary_ctxt_switches", p)
		}
		switches += n
		threads++
	}
	return switches, threads, nil
}

// voluntary reads the voluntary_ctxt_switches line of a status file.
func voluntary(status []byte) (int64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if ok && string(k) == "voluntary_ctxt_switches" {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
