//go:build android || savelogcat

package main

/*
#cgo LDFLAGS: -llog
#include <stdlib.h>
#include <android/log.h>
*/
import "C"

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"unsafe"
)

// newLogger logs to logcat under the tag "dweb" (an app's stderr goes
// nowhere), at info and above, or at the level of DWEB_SAVE_LOG. The tag
// savelogcat builds it on a desktop too, against Debian's liblog (make
// jvmtest-android-headers).
func newLogger() *slog.Logger {
	level, _ := logLevel(slog.LevelInfo)
	out := &logcatOut{tag: C.CString("dweb")}
	return slog.New(&logcatHandler{out: out, h: slog.NewTextHandler(&out.buf, &slog.HandlerOptions{
		Level: level,
		// logcat stamps each line with its own time and priority.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{}
			}
			return a
		},
	})})
}

// logcatOut is the one buffer every logcatHandler formats a record into,
// then writes to logcat with the record's priority.
type logcatOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tag *C.char
}

type logcatHandler struct {
	out *logcatOut
	h   slog.Handler // writes into out.buf
}

func (l *logcatHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *logcatHandler) Handle(ctx context.Context, r slog.Record) error {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	l.out.buf.Reset()
	if err := l.h.Handle(ctx, r); err != nil {
		return err
	}
	msg := C.CString(strings.TrimSuffix(l.out.buf.String(), "\n"))
	defer C.free(unsafe.Pointer(msg))
	C.__android_log_write(priority(r.Level), l.out.tag, msg)
	return nil
}

func (l *logcatHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logcatHandler{out: l.out, h: l.h.WithAttrs(as)}
}

func (l *logcatHandler) WithGroup(name string) slog.Handler {
	return &logcatHandler{out: l.out, h: l.h.WithGroup(name)}
}

func priority(level slog.Level) C.int {
	switch {
	case level >= slog.LevelError:
		return C.ANDROID_LOG_ERROR
	case level >= slog.LevelWarn:
		return C.ANDROID_LOG_WARN
	case level >= slog.LevelInfo:
		return C.ANDROID_LOG_INFO
	}
	return C.ANDROID_LOG_DEBUG
}
