// Command save is libsave.so, the library the Save Android app loads
// (System.loadLibrary("save")) as its backend: the natives of its
// net.opendasharchive.openarchive.services.snowbird.SnowbirdBridge class,
// built with -buildmode=c-shared (make android-lib; docs/ffi.md,
// "libsave.so"). jni.c holds the JNI entry points and the status callback
// into the JVM; the functions here convert their arguments and call the
// lifecycle of package service. No panic crosses into the JVM.
package main

/*
#include <stdint.h>
#include <stdlib.h>

void save_status(int code, const uint16_t *msg, int len);
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"unicode/utf16"
	"unsafe"

	"github.com/dwebkit/dweb/ffi/save/internal/service"
)

func main() {}

// Environment variables read once, at the first call from the app: for
// tests and debugging on a desktop JVM; the app sets none of them.
const (
	envHTTP   = "DWEB_SAVE_HTTP"   // the API's TCP address instead of 127.0.0.1:8080
	envListen = "DWEB_SAVE_LISTEN" // the node's QUIC address instead of 0.0.0.0:0
	envLog    = "DWEB_SAVE_LOG"    // log level: debug, info, warn, error (log.go)
)

var (
	svcOnce sync.Once
	svc     *service.Service
)

// theService returns the process's one Service, made at the first call.
func theService() *service.Service {
	svcOnce.Do(func() {
		svc = service.New(service.Options{
			HTTPAddr:   os.Getenv(envHTTP),
			ListenAddr: os.Getenv(envListen),
			Status:     sendStatus,
			Log:        newLogger(),
		})
	})
	return svc
}

// sendStatus calls SnowbirdBridge.updateStatusFromRust(code, msg) through
// jni.c (nothing if no native was called yet).
func sendStatus(code service.Status, msg string) {
	u := utf16.Encode([]rune(msg))
	if len(u) == 0 {
		u = []uint16{'?'}
	}
	C.save_status(C.int(code), (*C.uint16_t)(unsafe.Pointer(&u[0])), C.int(len(u)))
}

// goString converts a Java string passed as UTF-16; a null reference
// (n < 0) is "", which Start refuses as a path.
func goString(p *C.uint16_t, n C.int) string {
	if p == nil || n <= 0 {
		return ""
	}
	return string(utf16.Decode(unsafe.Slice((*uint16)(unsafe.Pointer(p)), int(n))))
}

// cUTF16 returns s as malloc'd UTF-16 for jni.c to turn into a jstring and
// free, with its length in *n.
func cUTF16(s string, n *C.int) *C.uint16_t {
	u := utf16.Encode([]rune(s))
	p := (*C.uint16_t)(C.malloc(C.size_t(2 * (len(u) + 1))))
	copy(unsafe.Slice((*uint16)(unsafe.Pointer(p)), len(u)), u)
	*n = C.int(len(u))
	return p
}

// recovered turns a panic into an error and reports it as status 6.
func recovered(v any) error {
	err := fmt.Errorf("internal error: %v", v)
	sendStatus(service.Error, err.Error())
	return err
}

//export saveInitialize
func saveInitialize() {
	defer func() {
		if v := recover(); v != nil {
			recovered(v)
		}
	}()
	theService()
}

// saveStart returns what startServer returns: service.StartedMessage, or
// "Server failed to start: " and the reason (also sent as status 6).
//
//export saveStart
func saveStart(base *C.uint16_t, baseLen C.int, sock *C.uint16_t, sockLen C.int, outLen *C.int) (out *C.uint16_t) {
	defer func() {
		if v := recover(); v != nil {
			out = cUTF16("Server failed to start: "+recovered(v).Error(), outLen)
		}
	}()
	msg, err := theService().Start(goString(base, baseLen), goString(sock, sockLen))
	if err != nil {
		msg = "Server failed to start: " + err.Error()
	}
	return cUTF16(msg, outLen)
}

//export saveStop
func saveStop() {
	defer func() {
		if v := recover(); v != nil {
			recovered(v)
		}
	}()
	theService().Stop()
}
