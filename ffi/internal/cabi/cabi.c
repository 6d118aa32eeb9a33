// The callback libdweb calls: it hands the event to Go (cabiEvent). In a
// file of its own because a Go file with //export may only declare C.
#include "_cgo_export.h"

void cabi_on_event(const char *event_json, void *ctx) {
	cabiEvent((char *)event_json, ctx);
}
