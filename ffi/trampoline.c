// The C half of the event callback: Go cannot call a C function pointer
// directly, so it calls dweb_trampoline, which calls fn. The thread-local
// handle lets the exports detect calls made from inside a callback (where
// dweb_close would wait for itself) and know whose callback it is.
#include <stddef.h>
#include <stdint.h>
#include "dweb.h"

static _Thread_local int64_t in_callback;

__attribute__((visibility("hidden")))
void dweb_trampoline(dweb_event_fn fn, const char *event_json, void *ctx, int64_t h) {
	int64_t outer = in_callback;
	in_callback = h;
	fn(event_json, ctx);
	in_callback = outer;
}

__attribute__((visibility("hidden")))
int64_t dweb_in_callback(void) { return in_callback; }
