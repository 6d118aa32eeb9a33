// Command ffi is dweb's C ABI, built with -buildmode=c-shared (libdweb.so,
// Android) or -buildmode=c-archive (libdweb.a, iOS). The hand-written
// dweb.h in this directory is the contract; docs/ffi.md explains it. Every
// export converts its C arguments, calls package abi, and recovers any
// panic into an error: no panic crosses the boundary.
package main

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef void (*dweb_event_fn)(const char *event_json, void *ctx);
void dweb_trampoline(dweb_event_fn fn, const char *event_json, void *ctx, int64_t h);
int64_t dweb_in_callback(void); // the handle whose callback runs on this thread, or 0
*/
import "C"

import (
	"encoding/json"
	"errors"
	"unsafe"

	"github.com/dwebkit/dweb/ffi/internal/abi"
)

func main() {}

// goString copies a C string of at most abi.MaxInput bytes; longer strings
// are reported as too large without reading past MaxInput+1 bytes.
func goString(what string, p *C.char) ([]byte, error) {
	if p == nil {
		return nil, abi.Errorf(abi.CodeNullArgument, "%s is NULL", what)
	}
	n := C.strnlen(p, C.size_t(abi.MaxInput+1))
	if n > abi.MaxInput {
		return nil, abi.Errorf(abi.CodeTooLarge, "%s is over %d bytes", what, abi.MaxInput)
	}
	b := C.GoBytes(unsafe.Pointer(p), C.int(n))
	if err := abi.CheckString(what, b); err != nil {
		return nil, err
	}
	return b, nil
}

// cJSON returns b as a malloc'd NUL-terminated string for dweb_free.
func cJSON(b []byte) *C.char { return C.CString(string(b)) }

func num(err error) C.int64_t { return C.int64_t(abi.CodeOf(err).Num()) }

//export dweb_new
func dweb_new(config *C.char) (h C.int64_t) {
	defer func() {
		if v := recover(); v != nil {
			h = C.int64_t(abi.NumInternal)
		}
	}()
	b, err := goString("config", config)
	if err != nil {
		abi.SetNewError(err)
		return num(err)
	}
	id, err := abi.New(b)
	if err != nil {
		return num(err)
	}
	return C.int64_t(id)
}

//export dweb_close
func dweb_close(h C.int64_t) (rc C.int) {
	defer func() {
		if v := recover(); v != nil {
			rc = C.int(abi.NumInternal)
		}
	}()
	if C.dweb_in_callback() != 0 {
		return C.int(abi.NumBusy)
	}
	if err := abi.Close(int64(h)); err != nil {
		return C.int(num(err))
	}
	return 0
}

//export dweb_call
func dweb_call(h C.int64_t, method, params *C.char) (out *C.char) {
	defer func() {
		if v := recover(); v != nil {
			out = cJSON(abi.ErrorResponse(abi.Recovered(v)))
		}
	}()
	m, err := goString("method", method)
	if err != nil {
		return cJSON(abi.ErrorResponse(err))
	}
	p, err := goString("params", params)
	if err != nil {
		return cJSON(abi.ErrorResponse(err))
	}
	return cJSON(abi.Call(int64(h), string(m), p))
}

//export dweb_free
func dweb_free(p *C.char) {
	C.free(unsafe.Pointer(p))
}

//export dweb_set_event_callback
func dweb_set_event_callback(h C.int64_t, fn C.dweb_event_fn, ctx unsafe.Pointer) (rc C.int) {
	defer func() {
		if v := recover(); v != nil {
			rc = C.int(abi.NumInternal)
		}
	}()
	var sink func([]byte)
	if fn != nil {
		sink = func(ev []byte) {
			cs := C.CString(string(ev))
			C.dweb_trampoline(fn, cs, ctx, h)
			C.free(unsafe.Pointer(cs))
		}
	}
	if err := abi.SetEventSink(int64(h), sink, C.dweb_in_callback() == h); err != nil {
		return C.int(num(err))
	}
	return 0
}

//export dweb_last_error
func dweb_last_error(h C.int64_t, buf *C.char, size C.size_t) (rc C.int) {
	defer func() {
		if v := recover(); v != nil {
			rc = C.int(abi.NumInternal)
		}
	}()
	if buf == nil || size == 0 {
		return C.int(abi.NumInvalid)
	}
	msg, err := abi.LastError(int64(h))
	if err != nil {
		return C.int(num(err))
	}
	return C.int(copyOut(msg, buf, size))
}

// copyOut writes s NUL-terminated into buf of size bytes (> 0), truncated
// if it does not fit; it returns 0 or abi.NumRange when truncated.
func copyOut(s string, buf *C.char, size C.size_t) int {
	dst := unsafe.Slice((*byte)(unsafe.Pointer(buf)), int(size))
	k := copy(dst[:len(dst)-1], s)
	dst[k] = 0
	if k < len(s) {
		return abi.NumRange
	}
	return 0
}

//export dweb_read_file
func dweb_read_file(h C.int64_t, params *C.char, buf unsafe.Pointer, size C.size_t, outSize *C.size_t) (rc C.int) {
	defer func() {
		if v := recover(); v != nil {
			rc = C.int(abi.NumInternal)
			abi.SetLastError(int64(h), abi.Recovered(v))
		}
	}()
	fail := func(err error) C.int {
		abi.SetLastError(int64(h), err)
		return C.int(num(err))
	}
	if outSize == nil {
		return fail(abi.Errorf(abi.CodeNullArgument, "out_size is NULL"))
	}
	*outSize = 0
	if buf == nil && size > 0 {
		return fail(abi.Errorf(abi.CodeNullArgument, "buf is NULL but buf_size is %d", size))
	}
	if uint64(size) > 1<<62 {
		return fail(abi.Errorf(abi.CodeTooLarge, "buf_size %d is not a size", size))
	}
	p, err := goString("params", params)
	if err != nil {
		return fail(err)
	}
	var dst []byte
	if size > 0 {
		dst = unsafe.Slice((*byte)(buf), int(size))
	}
	n, err := abi.ReadInto(int64(h), p, dst)
	*outSize = C.size_t(n)
	var ae *abi.Error
	if errors.As(err, &ae) && ae.Code == abi.CodeRange {
		return C.int(abi.NumRange)
	}
	if err != nil {
		return C.int(num(err))
	}
	return 0
}

//export dweb_add_file_bytes
func dweb_add_file_bytes(h C.int64_t, params *C.char, data unsafe.Pointer, size C.size_t) (out *C.char) {
	defer func() {
		if v := recover(); v != nil {
			out = cJSON(abi.ErrorResponse(abi.Recovered(v)))
		}
	}()
	fail := func(err error) *C.char {
		abi.SetLastError(int64(h), err)
		return cJSON(abi.ErrorResponse(err))
	}
	if data == nil && size > 0 {
		return fail(abi.Errorf(abi.CodeNullArgument, "data is NULL but size is %d", size))
	}
	if uint64(size) > abi.MaxAddBytes {
		return fail(abi.Errorf(abi.CodeTooLarge, "size %d is over %d bytes; add large files by path", size, uint64(abi.MaxAddBytes)))
	}
	p, err := goString("params", params)
	if err != nil {
		return fail(err)
	}
	var src []byte
	if size > 0 {
		src = unsafe.Slice((*byte)(data), int(size))
	}
	return cJSON(abi.AddBytes(int64(h), p, src))
}

//export dweb_debug_stats
func dweb_debug_stats() (out *C.char) {
	defer func() {
		if v := recover(); v != nil {
			out = cJSON(abi.ErrorResponse(abi.Recovered(v)))
		}
	}()
	b, _ := json.Marshal(abi.GetStats())
	return cJSON(b)
}
