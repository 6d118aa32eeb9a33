//go:build !android && !savelogcat

package main

import (
	"log/slog"
	"os"
)

// newLogger logs to stderr at the level of DWEB_SAVE_LOG; unset: nothing.
func newLogger() *slog.Logger {
	level, ok := logLevel(slog.LevelInfo)
	if !ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
