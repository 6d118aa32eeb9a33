/*
 * dweb.h — the C ABI of dweb, a peer-to-peer backend for sharing files in
 * small trusted groups. Link libdweb.so (c-shared) or libdweb.a (c-archive).
 * Full contract, method list, events and build steps: docs/ffi.md.
 *
 * Ownership
 *   - Strings passed in (const char *) are UTF-8, NUL-terminated, at most
 *     DWEB_MAX_INPUT bytes, and only read during the call: the library
 *     copies what it keeps.
 *   - Strings returned as char * are malloc'd by the library; free each
 *     exactly once with dweb_free. They are never NULL.
 *   - Caller buffers (dweb_last_error, dweb_read_file) are written only
 *     within their stated size; a too-small buffer gives DWEB_ERR_RANGE.
 *   - The event JSON passed to the callback is valid only during the call.
 *
 * Threading
 *   Every function may be called from any thread, concurrently. Calls block
 *   their thread until done (dweb_new while bootstrapping, dweb_call for
 *   synchronous methods, at most the call timeout); long work (sync.download,
 *   sync.refresh, sync.fetch, op.start) returns an operation id at once and reports
 *   through events. Events for one handle are delivered one at a time, in
 *   order, on a library thread. From inside the callback you may call
 *   dweb_call and dweb_set_event_callback, but not dweb_close (it returns
 *   DWEB_ERR_BUSY).
 *
 * Errors
 *   Integer returns: 0 or > 0 on success, a negative DWEB_ERR_* on failure;
 *   dweb_last_error gives the message. dweb_call and dweb_add_file_bytes
 *   return {"error":{"code":"...","message":"..."}} instead; the string
 *   codes are listed in docs/ffi.md.
 */
#ifndef DWEB_H
#define DWEB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every string argument is at most this many bytes (1 MiB). */
#define DWEB_MAX_INPUT (1 << 20)

/* Negative results of the integer-returning functions. */
#define DWEB_OK                  0
#define DWEB_ERR_INVALID        -1 /* NULL argument, invalid UTF-8 or JSON, bad config/params */
#define DWEB_ERR_UNKNOWN_HANDLE -2 /* no open node has this handle */
#define DWEB_ERR_TOO_LARGE      -3 /* input over DWEB_MAX_INPUT (or a byte buffer over 1 GiB) */
#define DWEB_ERR_RANGE          -4 /* caller buffer too small (see each function) */
#define DWEB_ERR_BUSY           -5 /* dweb_close called from inside the event callback */
#define DWEB_ERR_NOT_FOUND      -6 /* unknown group or file */
#define DWEB_ERR_FAILED         -7 /* the operation failed: network, disk, timeout, closing */
#define DWEB_ERR_INTERNAL       -8 /* a bug inside the library (a recovered panic) */

/*
 * The event callback: event_json is one JSON object with a "type" field,
 * valid only during the call; ctx is the pointer given to
 * dweb_set_event_callback. Types: the node's events as they happen
 * (file.added, file.removed, file.changed, repo.changed, member.joined,
 * member.left, download.progress, publication.state, peer.reachable,
 * peer.unreachable, lagged), in the JSON
 * of GET /dweb/v1/events ({"id","time","kind","group","repo","payload"})
 * with "type" = the kind; and this ABI's own (op.progress, op.done,
 * op.failed, group.changed, events.dropped). docs/ffi.md lists them.
 */
typedef void (*dweb_event_fn)(const char *event_json, void *ctx);

/*
 * Opens and starts a node. config_json is an object:
 *   {"data_dir": "/abs/dir" (required), "listen": "127.0.0.1:0",
 *    "bootstrap": ["nodeID@host:port"], "device_name": "phone",
 *    "device_key": "<32 bytes, URL-safe base64>", "call_timeout_ms": 60000,
 *    "log_level": "" | "debug" | "info" | "warn" | "error"}
 * device_name names this node's repo in the groups it creates or joins; the
 * node keeps it, so a later dweb_new may omit it ("dweb device" if never
 * given).
 * Blocks while the node bootstraps (at most 30 s). Returns a handle > 0, or
 * a negative DWEB_ERR_*; dweb_last_error(0, ...) then says why.
 */
int64_t dweb_new(const char *config_json);

/*
 * Stops node h: cancels its operations (each ends with an op.failed event,
 * code "cancelled"), waits for in-flight calls, closes the node, delivers
 * the last events, and frees the handle. After it returns the callback is
 * not called again for h and h is invalid. Returns 0,
 * DWEB_ERR_UNKNOWN_HANDLE, DWEB_ERR_BUSY (from the callback thread) or
 * DWEB_ERR_FAILED (the node closed with an error; the handle is freed).
 */
int dweb_close(int64_t h);

/*
 * Runs method with params_json (a JSON object; "{}" when there are none)
 * on node h. Returns a malloc'd JSON string, {"result": ...} or
 * {"error": {"code": "...", "message": "..."}}, to free with dweb_free.
 * Methods: node.id, node.peers, node.contact, node.pause, node.resume,
 * node.network_changed, group.create, group.join, group.list,
 * group.get, group.invite, group.leave, repo.list, repo.rename, file.add,
 * file.list, file.read, file.delete, sync.refresh, sync.download,
 * sync.fetch, sync.status, op.start, op.cancel (see docs/ffi.md).
 * group.create and group.join take an optional "repo_name", the name of
 * this node's repo in the group (default: the config's device_name).
 */
char *dweb_call(int64_t h, const char *method, const char *params_json);

/* Frees a string returned by the library. NULL is a no-op. */
void dweb_free(char *p);

/*
 * Sets the event callback of node h; fn NULL removes it. Events are only
 * queued while a callback is set. When this returns, the previous callback
 * is not running and will not be called again (unless called from inside
 * that callback), so its ctx may be freed. Returns 0 or
 * DWEB_ERR_UNKNOWN_HANDLE.
 */
int dweb_set_event_callback(int64_t h, dweb_event_fn fn, void *ctx);

/*
 * Copies the message of the last failed call on h (h == 0: the last failed
 * dweb_new in this process; "" if none) into buf, NUL-terminated. Returns
 * 0, DWEB_ERR_RANGE (truncated, still NUL-terminated), DWEB_ERR_INVALID
 * (buf NULL or buf_size 0) or DWEB_ERR_UNKNOWN_HANDLE.
 */
int dweb_last_error(int64_t h, char *buf, size_t buf_size);

/*
 * Reads a group's file into buf. params_json: {"group": key-or-name,
 * "name": "file", "repo": repo key (optional)}. On success returns 0 and
 * sets *out_size to the file's size. If buf_size is too small returns
 * DWEB_ERR_RANGE with *out_size set to the size needed and buf untouched
 * (call with buf NULL, buf_size 0 to learn the size). Fetches the file from
 * peers if needed, blocking up to the call timeout. Other errors: negative
 * DWEB_ERR_* with *out_size 0.
 */
int dweb_read_file(int64_t h, const char *params_json, void *buf, size_t buf_size, size_t *out_size);

/*
 * Adds size bytes at data as a file of a group. params_json: {"group":
 * key-or-name, "name": "photo.jpg"}. data is only read during the call;
 * size is at most 1 GiB (larger files: file.add with a path). Returns the
 * same malloc'd JSON as dweb_call("file.add"): a file object or an error.
 */
char *dweb_add_file_bytes(int64_t h, const char *params_json, const void *data, size_t size);

/*
 * For tests: a malloc'd JSON {"handles": n, "operations": n,
 * "goroutines": n} counting open handles, running operations and Go
 * goroutines in the process. Free with dweb_free.
 */
char *dweb_debug_stats(void);

#ifdef __cplusplus
}
#endif

#endif /* DWEB_H */
