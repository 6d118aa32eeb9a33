// The C half of the event callback: Go cannot call a C function pointer
// directly, so it calls dweb_trampoline, which calls fn. The thread-local
// flag lets the exports detect calls made from inside the callback (where
// dweb_close would wait for itself).
#include <stddef.h>
#include "dweb.h"

static _Thread_local int in_callback;

__attribute__((visibility("hidden")))
void dweb_trampoline(dweb_event_fn fn, const char *event_json, void *ctx) {
	in_callback = 1;
	fn(event_json, ctx);
	in_callback = 0;
}

__attribute__((visibility("hidden")))
int dweb_in_callback(void) { return in_callback; }
