package main

import (
	"log/slog"
	"os"
)

// logLevel returns the level DWEB_SAVE_LOG names, def if it is unset, and
// whether it was set (an unknown name is info).
func logLevel(def slog.Level) (slog.Level, bool) {
	v := os.Getenv(envLog)
	if v == "" {
		return def, false
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(v)); err != nil {
		level = slog.LevelInfo
	}
	return level, true
}
