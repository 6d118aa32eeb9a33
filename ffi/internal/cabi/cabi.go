// Package cabi calls libdweb's C exports, as declared by ffi/dweb.h, from
// Go: the tests of the C surface use it, because a _test.go file cannot
// import "C" (libtailscale tests its C API the same way). Its C code
// refers to the exports without defining them, so it links only into a
// binary that holds them: the ffi package's own test binary. Nothing else
// may import it.
package cabi

/*
#cgo CFLAGS: -I${SRCDIR}/../..
#include <stdint.h>
#include <stdlib.h>
#include "dweb.h"

void cabi_on_event(const char *event_json, void *ctx);
*/
import "C"

import (
	"sync"
	"unsafe"
)

// New calls dweb_new(config): a handle > 0 or a negative DWEB_ERR_*.
func New(config string) int64 {
	cs := C.CString(config)
	defer C.free(unsafe.Pointer(cs))
	return int64(C.dweb_new(cs))
}

// Close calls dweb_close(h) and forgets h's event function.
func Close(h int64) int {
	rc := int(C.dweb_close(C.int64_t(h)))
	sinks.Delete(h)
	return rc
}

// Call calls dweb_call(h, method, params) and returns the response JSON,
// freed with dweb_free.
func Call(h int64, method, params string) string {
	cm, cp := C.CString(method), C.CString(params)
	defer C.free(unsafe.Pointer(cm))
	defer C.free(unsafe.Pointer(cp))
	out := C.dweb_call(C.int64_t(h), cm, cp)
	defer C.dweb_free(out)
	return C.GoString(out)
}

// sinks maps a handle to the Go function its callback feeds.
var sinks sync.Map // int64 -> func(string)

// OnEvents sets h's event callback to a C function that hands each event's
// JSON to fn (copied while the callback runs), through
// dweb_set_event_callback with a ctx that carries h. It returns that
// call's result.
func OnEvents(h int64, fn func(eventJSON string)) int {
	sinks.Store(h, fn)
	ctx := (*C.int64_t)(C.malloc(C.size_t(unsafe.Sizeof(C.int64_t(0))))) // kept for the handle's life
	*ctx = C.int64_t(h)
	return int(C.dweb_set_event_callback(C.int64_t(h), C.dweb_event_fn(C.cabi_on_event), unsafe.Pointer(ctx)))
}

//export cabiEvent
func cabiEvent(eventJSON *C.char, ctx unsafe.Pointer) {
	h := int64(*(*C.int64_t)(ctx))
	if fn, ok := sinks.Load(h); ok {
		fn.(func(string))(C.GoString(eventJSON))
	}
}
