//go:build !linux

package main

import "os/exec"

// peakRSSMB is the process's peak resident set size in MB: 0, not
// measured on this system (the benches report Linux's figures).
func peakRSSMB() float64 { return 0 }

// btFileSystem names the file system holding dir: not told on this system.
func btFileSystem(string) string { return "unknown" }

// dieWithParent: no such kernel feature here; the benches stop their
// children themselves (and a bench killed outright may leave them).
func dieWithParent(*exec.Cmd) {}
