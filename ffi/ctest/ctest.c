/*
 * ctest drives libdweb through its C ABI only, as a mobile app would: two
 * nodes on loopback share a file through a group invite, then every export
 * gets garbage, then the library must have no handle, operation or extra
 * goroutine left. Built and run by `make ctest` (and under valgrind by
 * `make ctest-valgrind`). Prints "N passed, M failed"; exits 1 on failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dweb.h"

static int passed, failed;

static void check(int ok, const char *fmt, ...) {
	if (ok) {
		passed++;
		return;
	}
	failed++;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
}

/* ---- tiny JSON helpers (enough for the library's own output) ---- */

/* json_str copies the string value of the first "key" in json into out,
 * decoding \", \\, \/ and ASCII \uXXXX escapes. Returns 0 if not found. */
static int json_str(const char *json, const char *key, char *out, size_t n) {
	char pat[128];
	snprintf(pat, sizeof pat, "\"%s\":\"", key);
	const char *p = json ? strstr(json, pat) : NULL;
	if (!p || n == 0)
		return 0;
	p += strlen(pat);
	size_t k = 0;
	while (*p && *p != '"' && k + 1 < n) {
		if (*p == '\\' && p[1] == 'u') {
			unsigned v;
			if (sscanf(p + 2, "%4x", &v) != 1)
				return 0;
			out[k++] = (char)v;
			p += 6;
		} else if (*p == '\\' && p[1]) {
			out[k++] = p[1];
			p += 2;
		} else {
			out[k++] = *p++;
		}
	}
	out[k] = 0;
	return *p == '"';
}

/* json_int returns the integer value of the first "key" in json, or -1. */
static long long json_int(const char *json, const char *key) {
	char pat[128];
	snprintf(pat, sizeof pat, "\"%s\":", key);
	const char *p = json ? strstr(json, pat) : NULL;
	if (!p)
		return -1;
	return strtoll(p + strlen(pat), NULL, 10);
}

static int is_error(const char *resp, const char *code) {
	char pat[128];
	snprintf(pat, sizeof pat, "{\"error\":{\"code\":\"%s\"", code);
	return resp && strncmp(resp, pat, strlen(pat)) == 0;
}

static int is_result(const char *resp) { return resp && strncmp(resp, "{\"result\":", 10) == 0; }

/* call runs dweb_call and returns the malloc'd response (never NULL). */
static char *call(int64_t h, const char *method, const char *fmt, ...) {
	char params[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(params, sizeof params, fmt, ap);
	va_end(ap);
	char *r = dweb_call(h, method, params);
	if (!r) {
		fprintf(stderr, "dweb_call(%s) returned NULL\n", method);
		exit(2);
	}
	return r;
}

/* expect_ok calls method and checks the result; returns the response. */
static char *expect_ok(int64_t h, const char *method, const char *fmt, ...) {
	char params[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(params, sizeof params, fmt, ap);
	va_end(ap);
	char *r = call(h, method, "%s", params);
	check(is_result(r), "%s %s: %s", method, params, r);
	return r;
}

/* expect_err calls method and checks it fails with code. */
static void expect_err(int64_t h, const char *method, const char *params, const char *code) {
	char *r = dweb_call(h, method, params);
	check(is_error(r, code), "%s(%s) want error %s, got %s", method ? method : "NULL",
	      params ? params : "NULL", code, r ? r : "NULL");
	dweb_free(r);
}

/* ---- events ---- */

#define MAX_EVENTS 1024

struct sink {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	char *events[MAX_EVENTS];
	int n;
	int64_t self;        /* the handle this sink listens to */
	volatile int close_from_cb; /* if set, the next event tries dweb_close(self) */
	int close_rc;
	int set_rc; /* and dweb_set_event_callback(self) from inside the callback */
};

static void on_event(const char *json, void *ctx) {
	struct sink *s = ctx;
	if (s->close_from_cb) {
		s->close_rc = dweb_close(s->self);
		s->set_rc = dweb_set_event_callback(s->self, on_event, s);
		s->close_from_cb = 0;
	}
	pthread_mutex_lock(&s->mu);
	if (s->n < MAX_EVENTS)
		s->events[s->n++] = strdup(json);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

static void sink_init(struct sink *s, int64_t h) {
	memset(s, 0, sizeof *s);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->self = h;
}

static void sink_free(struct sink *s) {
	for (int i = 0; i < s->n; i++)
		free(s->events[i]);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
}

/* wait_op waits up to secs for the op.done or op.failed event of op and
 * returns a malloc'd copy of it (NULL on timeout). */
static char *wait_op(struct sink *s, long long op, int secs) {
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += secs;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		for (int i = 0; i < s->n; i++) {
			const char *e = s->events[i];
			if (json_int(e, "op") == op &&
			    (strstr(e, "\"type\":\"op.done\"") || strstr(e, "\"type\":\"op.failed\""))) {
				char *c = strdup(e);
				pthread_mutex_unlock(&s->mu);
				return c;
			}
		}
		if (pthread_cond_timedwait(&s->cond, &s->mu, &dl) == ETIMEDOUT) {
			pthread_mutex_unlock(&s->mu);
			return NULL;
		}
	}
}

/* wait_event waits up to secs for an event containing both a and b and
 * returns a malloc'd copy of it (NULL on timeout). */
static char *wait_event(struct sink *s, const char *a, const char *b, int secs) {
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += secs;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		for (int i = 0; i < s->n; i++) {
			const char *e = s->events[i];
			if (strstr(e, a) && strstr(e, b)) {
				char *c = strdup(e);
				pthread_mutex_unlock(&s->mu);
				return c;
			}
		}
		if (pthread_cond_timedwait(&s->cond, &s->mu, &dl) == ETIMEDOUT) {
			pthread_mutex_unlock(&s->mu);
			return NULL;
		}
	}
}

/* count_progress counts op.progress events of op; *last gets the last one's done. */
static int count_progress(struct sink *s, long long op, long long *last_done, long long *last_total) {
	int c = 0;
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->n; i++) {
		const char *e = s->events[i];
		if (strstr(e, "\"type\":\"op.progress\"") && json_int(e, "op") == op) {
			c++;
			*last_done = json_int(e, "done");
			*last_total = json_int(e, "total");
		}
	}
	pthread_mutex_unlock(&s->mu);
	return c;
}

/* ---- files ---- */

static void write_random(const char *path, unsigned char *buf, size_t n) {
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(rand() & 0xff);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, n, f) != n) {
		perror(path);
		exit(2);
	}
	fclose(f);
}

static unsigned char *read_all(const char *path, size_t *n) {
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long sz = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *b = malloc(sz > 0 ? (size_t)sz : 1);
	*n = fread(b, 1, (size_t)sz, f);
	fclose(f);
	return b;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
	(void)st, (void)flag, (void)ftw;
	return remove(p);
}

static long long stat_of(const char *key) {
	char *s = dweb_debug_stats();
	long long v = json_int(s, key);
	dweb_free(s);
	return v;
}

/* ---- the tests ---- */

static int64_t new_node(const char *dir, const char *name, const char *boot) {
	char cfg[4096];
	if (boot)
		snprintf(cfg, sizeof cfg,
		         "{\"data_dir\":\"%s/%s\",\"listen\":\"127.0.0.1:0\",\"device_name\":\"%s\",\"bootstrap\":[\"%s\"]}",
		         dir, name, name, boot);
	else
		snprintf(cfg, sizeof cfg, "{\"data_dir\":\"%s/%s\",\"listen\":\"127.0.0.1:0\",\"device_name\":\"%s\"}",
		         dir, name, name);
	int64_t h = dweb_new(cfg);
	if (h <= 0) {
		char msg[1024];
		dweb_last_error(0, msg, sizeof msg);
		fprintf(stderr, "dweb_new(%s) = %lld: %s\n", name, (long long)h, msg);
	}
	return h;
}

#define PHOTO_SIZE (300 * 1024 + 17)
#define BIG_SIZE (4 * 1024 * 1024)

static void bad_inputs(int64_t a, const char *group);

int main(void) {
	srand(42);
	long long g0 = stat_of("goroutines");
	check(stat_of("handles") == 0, "no handles at start");

	char dir[] = "/tmp/dweb-ctest-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}

	int64_t a = new_node(dir, "alice", NULL);
	check(a > 0, "dweb_new alice = %lld", (long long)a);
	if (a <= 0)
		return 1;
	char *r = expect_ok(a, "node.id", "{}");
	char contact[512] = "", node_id[128] = "";
	check(json_str(r, "contact", contact, sizeof contact) && strchr(contact, '@'), "node.id contact: %s", r);
	check(json_str(r, "node_id", node_id, sizeof node_id), "node.id node_id: %s", r);
	dweb_free(r);

	int64_t b = new_node(dir, "bob", contact);
	check(b > a, "dweb_new bob = %lld", (long long)b);
	if (b <= 0)
		return 1;
	check(stat_of("handles") == 2, "two handles open");

	struct sink sa, sb;
	sink_init(&sa, a);
	sink_init(&sb, b);
	check(dweb_set_event_callback(a, on_event, &sa) == 0, "set callback alice");
	check(dweb_set_event_callback(b, on_event, &sb) == 0, "set callback bob");

	/* alice: a group and two files, one by path, one from bytes */
	r = expect_ok(a, "group.create", "{\"name\":\"family\"}");
	char group[128] = "";
	check(json_str(r, "key", group, sizeof group), "group.create key: %s", r);
	dweb_free(r);

	char path[1024];
	static unsigned char photo[PHOTO_SIZE];
	snprintf(path, sizeof path, "%s/photo.bin", dir);
	write_random(path, photo, sizeof photo);
	r = expect_ok(a, "file.add", "{\"group\":\"%s\",\"path\":\"%s\"}", group, path);
	check(json_int(r, "size") == PHOTO_SIZE, "file.add size: %s", r);
	dweb_free(r);

	const char note[] = "a note added from a C buffer\n";
	r = dweb_add_file_bytes(a, "{\"group\":\"family\",\"name\":\"note.txt\"}", note, strlen(note));
	check(is_result(r) && json_int(r, "size") == (long long)strlen(note), "dweb_add_file_bytes: %s", r);
	dweb_free(r);

	r = expect_ok(a, "group.invite", "{\"group\":\"%s\"}", group);
	char uri[4096] = "";
	check(json_str(r, "uri", uri, sizeof uri) && strncmp(uri, "save+dweb:", 10) == 0, "group.invite: %s", r);
	dweb_free(r);

	/* bob joins from the URI alone and lists the files */
	r = expect_ok(b, "group.join", "{\"uri\":\"%s\"}", uri);
	char joined[128] = "";
	check(json_str(r, "key", joined, sizeof joined) && strcmp(joined, group) == 0, "group.join key: %s", r);
	dweb_free(r);
	r = expect_ok(b, "file.list", "{\"group\":\"%s\"}", group);
	check(strstr(r, "\"name\":\"photo.bin\"") && strstr(r, "\"name\":\"note.txt\""), "file.list on bob: %s", r);
	dweb_free(r);
	/* the files of the group bob joined reach his callback as file.added events */
	char *fa = wait_event(&sb, "\"type\":\"file.added\"", "\"name\":\"photo.bin\"", 15);
	check(fa && strstr(fa, "\"kind\":\"file.added\"") && strstr(fa, "\"hash\":\""), "file.added event on bob: %s",
	      fa ? fa : "timeout");
	free(fa);

	/* bob downloads the photo as a long operation with progress events */
	char out[1024];
	snprintf(out, sizeof out, "%s/photo-copy.bin", dir);
	r = expect_ok(b, "sync.download", "{\"group\":\"%s\",\"name\":\"photo.bin\",\"path\":\"%s\"}", group, out);
	long long op = json_int(r, "op");
	check(op > 0, "sync.download op id: %s", r);
	dweb_free(r);
	char *ev = wait_op(&sb, op, 60);
	check(ev && strstr(ev, "\"type\":\"op.done\"") && strstr(ev, "\"method\":\"sync.download\""),
	      "download completion event: %s", ev ? ev : "timeout");
	free(ev);
	long long done = -1, total = -1;
	int np = count_progress(&sb, op, &done, &total);
	check(np >= 1 && done == PHOTO_SIZE && total == PHOTO_SIZE, "progress events: %d, last %lld/%lld", np, done,
	      total);
	size_t got_n = 0;
	unsigned char *got = read_all(out, &got_n);
	check(got && got_n == PHOTO_SIZE && memcmp(got, photo, PHOTO_SIZE) == 0, "downloaded bytes equal (%zu)", got_n);
	free(got);

	/* bob reads the note into a buffer: first the size (ERANGE), then the bytes */
	size_t need = 0;
	char params[1024];
	snprintf(params, sizeof params, "{\"group\":\"%s\",\"name\":\"note.txt\"}", group);
	int rc = dweb_read_file(b, params, NULL, 0, &need);
	check(rc == DWEB_ERR_RANGE && need == strlen(note), "read_file size probe: rc %d need %zu", rc, need);
	char small[4] = "xyz";
	rc = dweb_read_file(b, params, small, sizeof small, &need);
	check(rc == DWEB_ERR_RANGE && need == strlen(note) && strcmp(small, "xyz") == 0, "read_file small buffer: %d", rc);
	char *buf = malloc(need);
	size_t got_size = 0;
	rc = dweb_read_file(b, params, buf, need, &got_size);
	check(rc == 0 && got_size == strlen(note) && memcmp(buf, note, got_size) == 0, "read_file: rc %d size %zu", rc,
	      got_size);
	free(buf);

	/* file.read to a path, synchronously */
	snprintf(out, sizeof out, "%s/note-copy.txt", dir);
	r = expect_ok(b, "file.read", "{\"group\":\"family\",\"name\":\"note.txt\",\"path\":\"%s\"}", out);
	dweb_free(r);
	got = read_all(out, &got_n);
	check(got && got_n == strlen(note) && memcmp(got, note, got_n) == 0, "file.read bytes equal");
	free(got);

	/* sync.refresh, op.start and sync.status */
	r = expect_ok(b, "sync.refresh", "{\"group\":\"%s\"}", group);
	op = json_int(r, "op");
	dweb_free(r);
	ev = wait_op(&sb, op, 60);
	check(ev && strstr(ev, "\"type\":\"op.done\"") && strstr(ev, "photo.bin"), "sync.refresh done: %s",
	      ev ? ev : "timeout");
	free(ev);
	/* sync.fetch: bob holds every file already, so it fetches nothing */
	r = expect_ok(b, "sync.fetch", "{\"group\":\"%s\"}", group);
	op = json_int(r, "op");
	dweb_free(r);
	ev = wait_op(&sb, op, 60);
	check(ev && strstr(ev, "\"type\":\"op.done\"") && strstr(ev, "\"all_files\":[\"note.txt\",\"photo.bin\"]") &&
	          !strstr(ev, "\"refreshed_files\":[\"") && !strstr(ev, "\"failed_files\":[\""),
	      "sync.fetch done: %s", ev ? ev : "timeout");
	free(ev);
	r = expect_ok(a, "op.start", "{\"method\":\"group.list\",\"params\":{}}");
	op = json_int(r, "op");
	dweb_free(r);
	ev = wait_op(&sa, op, 30);
	check(ev && strstr(ev, "\"type\":\"op.done\"") && strstr(ev, "\"name\":\"family\""), "op.start group.list: %s",
	      ev ? ev : "timeout");
	free(ev);
	r = expect_ok(b, "sync.status", "{}");
	check(strstr(r, "\"operations\":[]") && strstr(r, "\"files\":2"), "sync.status: %s", r);
	dweb_free(r);

	/* a download cancelled right away ends with exactly one final event */
	snprintf(path, sizeof path, "%s/big.bin", dir);
	unsigned char *big = malloc(BIG_SIZE);
	write_random(path, big, BIG_SIZE);
	free(big);
	r = expect_ok(a, "file.add", "{\"group\":\"%s\",\"path\":\"%s\"}", group, path);
	dweb_free(r);
	snprintf(out, sizeof out, "%s/big-copy.bin", dir);
	r = expect_ok(b, "sync.download", "{\"group\":\"%s\",\"name\":\"big.bin\",\"path\":\"%s\"}", group, out);
	op = json_int(r, "op");
	dweb_free(r);
	char cp[64];
	snprintf(cp, sizeof cp, "{\"op\":%lld}", op);
	r = call(b, "op.cancel", "%s", cp);
	check(is_result(r) || is_error(r, "not_found"), "op.cancel: %s", r);
	int cancelled = is_result(r);
	dweb_free(r);
	ev = wait_op(&sb, op, 60);
	check(ev && (cancelled ? (strstr(ev, "\"code\":\"cancelled\"") || strstr(ev, "op.done")) : strstr(ev, "op.done") != NULL),
	      "cancelled download ends: %s", ev ? ev : "timeout");
	free(ev);
	expect_err(b, "op.cancel", cp, "not_found");

	/* the other methods */
	r = expect_ok(b, "group.get", "{\"group\":\"family\"}");
	check(strstr(r, group) != NULL, "group.get by name: %s", r);
	dweb_free(r);
	r = expect_ok(b, "group.list", "{}");
	check(strstr(r, group) != NULL, "group.list: %s", r);
	dweb_free(r);
	r = expect_ok(b, "node.peers", "{}");
	check(strstr(r, node_id) != NULL, "node.peers lists alice: %s", r);
	dweb_free(r);
	r = expect_ok(a, "file.delete", "{\"group\":\"%s\",\"name\":\"note.txt\"}", group);
	dweb_free(r);
	snprintf(params, sizeof params, "{\"group\":\"%s\",\"name\":\"note.txt\"}", group);
	expect_err(a, "file.delete", params, "not_found");

	bad_inputs(a, group);

	/* dweb_close from inside the callback is refused, not a deadlock */
	sb.close_from_cb = 1;
	r = expect_ok(b, "op.start", "{\"method\":\"node.id\",\"params\":{}}");
	op = json_int(r, "op");
	dweb_free(r);
	ev = wait_op(&sb, op, 30);
	check(ev != NULL && sb.close_rc == DWEB_ERR_BUSY, "dweb_close from callback = %d", sb.close_rc);
	check(sb.set_rc == 0, "dweb_set_event_callback from callback = %d", sb.set_rc);
	free(ev);

	r = expect_ok(b, "group.leave", "{\"group\":\"%s\"}", group);
	dweb_free(r);
	expect_err(b, "group.get", "{\"group\":\"family\"}", "not_found");

	/* close both; nothing may be left */
	check(dweb_close(b) == 0, "close bob");
	check(dweb_close(a) == 0, "close alice");
	check(dweb_close(a) == DWEB_ERR_UNKNOWN_HANDLE, "second close is an unknown handle");
	expect_err(a, "node.id", "{}", "unknown_handle");
	check(stat_of("handles") == 0, "no handles after close");
	check(stat_of("operations") == 0, "no operations after close");
	long long g = 0;
	for (int i = 0; i < 100; i++) {
		g = stat_of("goroutines");
		if (g <= g0)
			break;
		usleep(100 * 1000);
	}
	check(g <= g0, "goroutines back to %lld, have %lld", g0, g);

	sink_free(&sa);
	sink_free(&sb);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}

/* bad_inputs feeds every export NULL, empty, invalid and oversized input. */
static void bad_inputs(int64_t a, const char *group) {
	char msg[256];
	size_t n = 0;
	char *huge = malloc(DWEB_MAX_INPUT + 2);
	memset(huge, ' ', DWEB_MAX_INPUT + 1);
	huge[0] = '{';
	huge[DWEB_MAX_INPUT] = '}';
	huge[DWEB_MAX_INPUT + 1] = 0;
	const char *bad_utf8 = "{\"name\":\"\xff\xfe\"}";

	/* dweb_new */
	check(dweb_new(NULL) == DWEB_ERR_INVALID, "dweb_new(NULL)");
	check(dweb_new("") == DWEB_ERR_INVALID, "dweb_new(\"\")");
	check(dweb_new("{") == DWEB_ERR_INVALID, "dweb_new({)");
	check(dweb_new("[]") == DWEB_ERR_INVALID, "dweb_new([])");
	check(dweb_new("{}") == DWEB_ERR_INVALID, "dweb_new({}) without data_dir");
	check(dweb_new("{\"data_dir\":5}") == DWEB_ERR_INVALID, "dweb_new data_dir number");
	check(dweb_new("{\"data_dir\":\"/tmp/x\",\"bogus\":1}") == DWEB_ERR_INVALID, "dweb_new unknown field");
	check(dweb_new("{\"data_dir\":\"/tmp/x\",\"log_level\":\"loud\"}") == DWEB_ERR_INVALID, "dweb_new bad log level");
	check(dweb_new(bad_utf8) == DWEB_ERR_INVALID, "dweb_new invalid UTF-8");
	check(dweb_new(huge) == DWEB_ERR_TOO_LARGE, "dweb_new oversized");
	check(dweb_last_error(0, msg, sizeof msg) == 0 && strstr(msg, "over"), "last dweb_new error: %s", msg);

	/* dweb_close */
	check(dweb_close(0) == DWEB_ERR_UNKNOWN_HANDLE, "dweb_close(0)");
	check(dweb_close(-7) == DWEB_ERR_UNKNOWN_HANDLE, "dweb_close(-7)");
	check(dweb_close(999999) == DWEB_ERR_UNKNOWN_HANDLE, "dweb_close(999999)");

	/* dweb_call */
	expect_err(999999, "node.id", "{}", "unknown_handle");
	expect_err(0, "node.id", "{}", "unknown_handle");
	expect_err(a, NULL, "{}", "null_argument");
	expect_err(a, "node.id", NULL, "null_argument");
	expect_err(a, "", "{}", "unknown_method");
	expect_err(a, "no.such", "{}", "unknown_method");
	expect_err(a, "node.id\xff", "{}", "invalid_utf8");
	expect_err(a, huge, "{}", "too_large");
	expect_err(a, "node.id", "", "invalid_json");
	expect_err(a, "node.id", "{", "invalid_json");
	expect_err(a, "node.id", "{} {}", "invalid_json");
	expect_err(a, "group.create", bad_utf8, "invalid_utf8");
	expect_err(a, "group.create", huge, "too_large");
	expect_err(a, "node.id", "[]", "bad_params");
	expect_err(a, "node.id", "{\"bogus\":1}", "bad_params");
	expect_err(a, "group.create", "{\"name\":5}", "bad_params");
	expect_err(a, "group.create", "{\"name\":\"\"}", "bad_input");
	expect_err(a, "group.join", "{\"uri\":\"garbage\"}", "bad_input");
	expect_err(a, "group.join", "{}", "bad_params");
	expect_err(a, "group.get", "{}", "bad_params");
	expect_err(a, "group.get", "{\"group\":\"nonesuch\"}", "not_found");
	expect_err(a, "group.invite", "{\"group\":\"nonesuch\"}", "not_found");
	expect_err(a, "group.leave", "{\"group\":\"nonesuch\"}", "not_found");
	expect_err(a, "file.list", "{\"group\":\"nonesuch\"}", "not_found");
	expect_err(a, "file.add", "{\"group\":\"family\"}", "bad_params");
	expect_err(a, "file.add", "{\"group\":\"family\",\"path\":\"relative.txt\"}", "bad_input");
	expect_err(a, "file.add", "{\"group\":\"family\",\"name\":\"../x\",\"data\":\"aGk=\"}", "bad_input");
	expect_err(a, "file.add", "{\"group\":\"family\",\"name\":\"x\",\"data\":\"not base64!\"}", "bad_params");
	expect_err(a, "file.read", "{\"group\":\"family\",\"name\":\"photo.bin\",\"path\":\"rel\"}", "bad_input");
	expect_err(a, "file.read", "{\"group\":\"family\",\"name\":\"nonesuch\",\"path\":\"/tmp/x\"}", "not_found");
	expect_err(a, "file.delete", "{\"group\":\"family\"}", "bad_params");
	expect_err(a, "sync.download", "{\"group\":\"family\",\"path\":\"/tmp/x\"}", "bad_params");
	expect_err(a, "sync.download", "{\"group\":\"nonesuch\",\"name\":\"a\",\"path\":\"/tmp/x\"}", "not_found");
	expect_err(a, "sync.refresh", "{\"group\":\"\"}", "bad_params");
	expect_err(a, "sync.status", "{\"group\":\"nonesuch\"}", "not_found");
	expect_err(a, "op.start", "{\"method\":\"no.such\"}", "unknown_method");
	expect_err(a, "op.start", "{\"method\":\"sync.refresh\",\"params\":{}}", "bad_params");
	expect_err(a, "op.cancel", "{\"op\":123456}", "not_found");
	expect_err(a, "op.cancel", "{\"op\":\"x\"}", "bad_params");

	/* dweb_set_event_callback */
	check(dweb_set_event_callback(999999, on_event, NULL) == DWEB_ERR_UNKNOWN_HANDLE, "set callback unknown handle");
	check(dweb_set_event_callback(0, NULL, NULL) == DWEB_ERR_UNKNOWN_HANDLE, "set callback handle 0");

	/* dweb_last_error */
	check(dweb_last_error(a, NULL, 10) == DWEB_ERR_INVALID, "last_error NULL buf");
	check(dweb_last_error(a, msg, 0) == DWEB_ERR_INVALID, "last_error size 0");
	check(dweb_last_error(999999, msg, sizeof msg) == DWEB_ERR_UNKNOWN_HANDLE, "last_error unknown handle");
	char tiny[4];
	check(dweb_last_error(a, tiny, sizeof tiny) == DWEB_ERR_RANGE && strlen(tiny) == 3, "last_error truncates");
	check(dweb_last_error(a, msg, sizeof msg) == 0 && strlen(msg) > 0, "last_error message: %s", msg);

	/* dweb_read_file */
	char params[512];
	snprintf(params, sizeof params, "{\"group\":\"%s\",\"name\":\"photo.bin\"}", group);
	char buf[16];
	check(dweb_read_file(a, params, buf, sizeof buf, NULL) == DWEB_ERR_INVALID, "read_file NULL out_size");
	check(dweb_read_file(a, params, NULL, 10, &n) == DWEB_ERR_INVALID, "read_file NULL buf");
	check(dweb_read_file(a, NULL, buf, sizeof buf, &n) == DWEB_ERR_INVALID, "read_file NULL params");
	check(dweb_read_file(a, "", buf, sizeof buf, &n) == DWEB_ERR_INVALID, "read_file empty params");
	check(dweb_read_file(a, "{\"group\":\"\xff\"}", buf, sizeof buf, &n) == DWEB_ERR_INVALID, "read_file bad UTF-8");
	check(dweb_read_file(a, huge, buf, sizeof buf, &n) == DWEB_ERR_TOO_LARGE, "read_file oversized");
	check(dweb_read_file(999999, params, buf, sizeof buf, &n) == DWEB_ERR_UNKNOWN_HANDLE, "read_file unknown handle");
	check(dweb_read_file(a, "{\"group\":\"family\",\"name\":\"nonesuch\"}", buf, sizeof buf, &n) == DWEB_ERR_NOT_FOUND,
	      "read_file missing file");
	check(dweb_read_file(a, "{\"group\":\"family\",\"name\":\"x\",\"path\":\"/tmp/x\"}", buf, sizeof buf, &n) ==
	          DWEB_ERR_INVALID,
	      "read_file with path");

	/* dweb_add_file_bytes */
	char *r = dweb_add_file_bytes(a, "{\"group\":\"family\",\"name\":\"x\"}", NULL, 5);
	check(is_error(r, "null_argument"), "add_bytes NULL data: %s", r);
	dweb_free(r);
	r = dweb_add_file_bytes(a, NULL, "abc", 3);
	check(is_error(r, "null_argument"), "add_bytes NULL params: %s", r);
	dweb_free(r);
	r = dweb_add_file_bytes(a, "{\"group\":\"family\",\"name\":\"x\"}", "abc", (size_t)1 << 40);
	check(is_error(r, "too_large"), "add_bytes oversized: %s", r);
	dweb_free(r);
	r = dweb_add_file_bytes(a, huge, "abc", 3);
	check(is_error(r, "too_large"), "add_bytes oversized params: %s", r);
	dweb_free(r);
	r = dweb_add_file_bytes(a, "{\"group\":\"family\",\"name\":\"../x\"}", "abc", 3);
	check(is_error(r, "bad_input"), "add_bytes bad name: %s", r);
	dweb_free(r);
	r = dweb_add_file_bytes(999999, "{\"group\":\"family\",\"name\":\"x\"}", "abc", 3);
	check(is_error(r, "unknown_handle"), "add_bytes unknown handle: %s", r);
	dweb_free(r);

	/* dweb_free */
	dweb_free(NULL);
	check(1, "dweb_free(NULL)");
	free(huge);
}
