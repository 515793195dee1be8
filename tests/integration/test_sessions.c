/* tests/integration/test_sessions.c: the session.* methods against the real daemon
 * (PROTOCOL.md "sessions", "Limits", "Errors", "Conventions"): reply shapes, params checking,
 * validation and anomalies, expiry enforced before any sweep, idle sliding, rotation,
 * revocation across connections, listing, durability across SIGTERM and kill -9, the sweeper,
 * reads that never wait for the writer, the store cap, and the CLI.
 *
 * Waiting: replies are the signal. The only waits on the clock are where the wall clock is the
 * thing under test (expiry): they poll the wall clock until it passes the instant the daemon
 * named (expires_at / idle_expires_at), never longer. The two sweeper cases poll sys.stats in
 * a bounded loop because the sweeper signals nothing to clients. A touch (the write a validate
 * queues to slide the idle timeout) is not waited for by the daemon either; a later write's
 * reply on the same connection proves it committed (the writer applies in submission order). */
#include "calls.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include <tessera/tessera.h>

#include <lmdb.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SID_CHARS 43
#define HANDLE_CHARS 22

static json_t *create(tessera_client *c, json_t *params) {
  return tc_call_ok(c, "session.create", params);
}

static json_t *create_sub(tessera_client *c, const char *sub) {
  return create(c, json_pack("{s:s}", "sub", sub));
}

/* Validates sid (client may be NULL, stolen); returns the error code, "" on success, and the
 * result in *out when out is not NULL. */
static const char *validate(tessera_client *c, const char *sid, json_t *client, json_t **out) {
  static char code[32];
  json_t *p = json_pack("{s:s}", "sid", sid);
  if (client) json_object_set_new(p, "client", client);
  json_t *result = NULL;
  tessera_error err = {{0}, {0}};
  int rc = tessera_call(c, "session.validate", p, 30000, &result, &err);
  json_decref(p);
  TT_ASSERT_MSG(rc == 0 || rc == TESSERA_EREMOTE, "validate: %s", tessera_strerror(rc));
  snprintf(code, sizeof(code), "%s", rc == 0 ? "" : err.code);
  if (out)
    *out = result;
  else
    json_decref(result);
  return code;
}

static void expect_valid(tessera_client *c, const char *sid) {
  const char *code = validate(c, sid, NULL, NULL);
  TT_ASSERT_MSG(code[0] == 0, "validate %s: %s, expected success", sid, code);
}

static void expect_refused(tessera_client *c, const char *sid) {
  TT_EQ_STR(validate(c, sid, NULL, NULL), "unauthenticated");
}

static long long revoke_n(tessera_client *c, const char *key, const char *value) {
  json_t *r = tc_call_ok(c, "session.revoke", json_pack("{s:s}", key, value));
  long long n = tc_int(r, "revoked");
  json_decref(r);
  return n;
}

static int64_t wall_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Returns once the wall clock reads at least `second` (the thing under test is the clock). The
 * reference is time(), the clock the daemon reads: on Linux it is the coarse clock, which
 * turns a few milliseconds after CLOCK_REALTIME does. */
static void wait_wall_until(int64_t second) {
  while ((int64_t)time(NULL) < second) {
    int64_t left = second * 1000000000 - wall_ns();
    TT_ASSERT_MSG(left < 30 * 1000000000LL, "refusing to wait %lld s",
                  (long long)(left / 1000000000));
    if (left < 1000000) left = 1000000; /* past it on the fine clock: the coarse one follows */
    struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
    nanosleep(&ts, NULL);
  }
}

/* Waits for the next wall-clock second to begin and returns it, so that a few requests fit
 * well inside one second. */
static int64_t start_of_next_second(void) {
  int64_t s = (int64_t)time(NULL) + 1;
  wait_wall_until(s);
  return s;
}

/* A 43-char sid whose last char is not canonical: same 32 bytes, different text. */
static void non_canonical(const char *sid, char out[SID_CHARS + 1]) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  memcpy(out, sid, SID_CHARS + 1);
  const char *p = strchr(alphabet, sid[SID_CHARS - 1]);
  TT_ASSERT(p != NULL && ((p - alphabet) & 3) == 0); /* canonical: the unused 2 bits are zero */
  out[SID_CHARS - 1] = alphabet[(p - alphabet) | 1];
}

static void random_sid(char out[SID_CHARS + 1]) {
  uint8_t raw[32];
  randombytes_buf(raw, sizeof(raw));
  sodium_bin2base64(out, SID_CHARS + 1, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Pipelined creates: n sessions of params (borrowed) on c; each result is handed to each(). */
static void create_many(tessera_client *c, const json_t *params, int n,
                        void (*each)(json_t *r, int i, void *arg), void *arg) {
  enum { BATCH = 1000 };
  uint32_t ids[BATCH];
  for (int base = 0; base < n; base += BATCH) {
    int k = n - base < BATCH ? n - base : BATCH;
    for (int i = 0; i < k; i++) TT_EQ_INT(tessera_send(c, "session.create", params, &ids[i]), 0);
    for (int i = 0; i < k; i++) {
      json_t *r = NULL;
      tessera_error err = {{0}, {0}};
      int rc = tessera_wait(c, ids[i], 60000, &r, &err);
      TT_ASSERT_MSG(rc == 0, "create %d: %s (%s: %s)", base + i, tessera_strerror(rc), err.code,
                    err.message);
      if (each) each(r, base + i, arg);
      json_decref(r);
    }
  }
}

/* How many sessions session.list shows for sub, walking every page (limit 1000). */
static long long count_listed(tessera_client *c, const char *sub) {
  long long n = 0;
  char *after = NULL;
  for (int pages = 0;; pages++) {
    TT_ASSERT(pages < 1000);
    json_t *p = json_pack("{s:s, s:i}", "sub", sub, "limit", 1000);
    if (after) json_object_set_new(p, "after", json_string(after));
    json_t *l = tc_call_ok(c, "session.list", p);
    n += (long long)json_array_size(json_object_get(l, "sessions"));
    free(after);
    json_t *next = json_object_get(l, "next");
    after = next ? strdup(json_string_value(next)) : NULL;
    json_decref(l);
    if (!after) return n;
  }
}

typedef struct idset {
  char (*sid)[SID_CHARS + 1];
  char (*handle)[HANDLE_CHARS + 1];
} idset;

static void keep_ids(json_t *r, int i, void *arg) {
  idset *s = arg;
  snprintf(s->sid[i], SID_CHARS + 1, "%s", tc_str(r, "sid"));
  snprintf(s->handle[i], HANDLE_CHARS + 1, "%s", tc_str(r, "handle"));
}

static idset idset_new(int n) {
  idset s = {calloc((size_t)n, SID_CHARS + 1), calloc((size_t)n, HANDLE_CHARS + 1)};
  TT_ASSERT(s.sid && s.handle);
  return s;
}

static void idset_free(idset *s) {
  free(s->sid);
  free(s->handle);
}

/* Whether needle occurs in hay (not inlined: gcc's -Wnonnull misfires on memmem under UBSan). */
__attribute__((noinline)) static bool holds(const void *hay, size_t n, const void *needle,
                                            size_t nl) {
  return memmem(hay, n, needle, nl) != NULL;
}

/* ---- create ----------------------------------------------------------------------------- */

static void create_reply_shape(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  int64_t before = (int64_t)time(NULL);
  json_t *r = create_sub(c, "alice");
  int64_t after = (int64_t)time(NULL);
  TT_EQ_INT(json_object_size(r), 6);
  const char *sid = tc_str(r, "sid");
  TT_ASSERT_MSG(tc_is_b64url(sid, SID_CHARS), "sid '%s' is not 43 chars of base64url", sid);
  const char *handle = tc_str(r, "handle");
  TT_ASSERT_MSG(tc_is_b64url(handle, HANDLE_CHARS), "handle '%s'", handle);
  TT_ASSERT(strstr(sid, handle) == NULL);
  long long exp = tc_int(r, "expires_at"), in = tc_int(r, "expires_in");
  long long idle = tc_int(r, "idle_expires_at");
  /* The defaults: 8 h absolute, 30 min idle. */
  TT_ASSERT_MSG(exp >= before + 28800 && exp <= after + 28800, "expires_at %lld", exp);
  TT_ASSERT_MSG(in >= 28799 && in <= 28800, "expires_in %lld", in);
  TT_ASSERT_MSG(idle >= before + 1800 && idle <= after + 1800, "idle_expires_at %lld", idle);
  TT_ASSERT(idle <= exp);
  char want[256];
  snprintf(want, sizeof(want),
           "__Host-sid=%s; Path=/; Max-Age=%lld; Secure; HttpOnly; SameSite=Lax", sid, in);
  TT_EQ_STR(tc_str(r, "cookie"), want);
  json_decref(r);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void create_follows_configuration(void) {
  static const char *const args[] = {
      "--cookie-name", "app_session", "--cookie-samesite", "Strict", "--session-ttl", "10m",
      "--session-idle-ttl", "90", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  int64_t before = (int64_t)time(NULL);
  json_t *r = create_sub(c, "bob");
  int64_t after = (int64_t)time(NULL);
  long long exp = tc_int(r, "expires_at"), in = tc_int(r, "expires_in");
  long long idle = tc_int(r, "idle_expires_at");
  TT_ASSERT_MSG(exp >= before + 600 && exp <= after + 600, "expires_at %lld", exp);
  TT_ASSERT_MSG(in >= 599 && in <= 600, "expires_in %lld", in);
  TT_ASSERT_MSG(idle >= before + 90 && idle <= after + 90, "idle_expires_at %lld", idle);
  char want[256];
  snprintf(want, sizeof(want),
           "app_session=%s; Path=/; Max-Age=%lld; Secure; HttpOnly; SameSite=Strict",
           tc_str(r, "sid"), in);
  TT_EQ_STR(tc_str(r, "cookie"), want);
  TT_ASSERT(strstr(tc_str(r, "cookie"), "Domain") == NULL);
  json_decref(r);
  /* Explicit ttls beat the defaults; an idle timeout longer than the lifetime is capped. */
  before = (int64_t)time(NULL);
  r = create(c, json_pack("{s:s, s:i, s:i}", "sub", "bob", "ttl", 100, "idle_ttl", 500));
  after = (int64_t)time(NULL);
  exp = tc_int(r, "expires_at");
  TT_ASSERT(exp >= before + 100 && exp <= after + 100);
  TT_EQ_INT(tc_int(r, "idle_expires_at"), exp);
  const char *ma = strstr(tc_str(r, "cookie"), "; Max-Age=");
  TT_ASSERT(ma != NULL);
  long max_age = strtol(ma + 10, NULL, 10); /* 100, less the seconds the commit took */
  TT_ASSERT_MSG(max_age >= 95 && max_age <= 100, "Max-Age=%ld", max_age);
  json_decref(r);
  r = create(c, json_pack("{s:s, s:i}", "sub", "bob", "idle_ttl", 5));
  TT_ASSERT(tc_int(r, "idle_expires_at") <= (long long)time(NULL) + 5);
  TT_ASSERT(tc_int(r, "expires_at") >= before + 600);
  json_decref(r);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Sends session.create with {sub: <raw bytes>} on the wire and returns the error code. */
static void raw_create_code(const td_daemon *d, const char *key, const char *inner_key,
                            const char *bytes, size_t n, char *code, size_t cap) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 4);
  msgpack_pack_uint8(&pk, 0);
  msgpack_pack_uint32(&pk, 77);
  msgpack_pack_str_with_body(&pk, "session.create", 14);
  msgpack_pack_array(&pk, 1);
  msgpack_pack_map(&pk, inner_key ? 2 : 1);
  if (inner_key) {
    msgpack_pack_str_with_body(&pk, "sub", 3);
    msgpack_pack_str_with_body(&pk, "carol", 5);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, inner_key, strlen(inner_key));
  } else {
    msgpack_pack_str_with_body(&pk, key, strlen(key));
  }
  msgpack_pack_str_with_body(&pk, bytes, n);
  int fd = tw_connect(d->socket);
  tw_reader rd;
  tw_reader_init(&rd, fd);
  TT_ASSERT(tw_send(fd, sb.data, sb.size));
  uint32_t id = 0;
  TT_ASSERT_MSG(tw_read_response(&rd, 10000, &id, code, cap), "no reply to a raw create");
  TT_EQ_INT(id, 77);
  /* The connection stays usable. */
  TT_ASSERT(tw_send_request(fd, 78, "sys.ping"));
  char c2[32];
  TT_ASSERT(tw_read_response(&rd, 10000, &id, c2, sizeof(c2)));
  TT_EQ_INT(id, 78);
  TT_EQ_STR(c2, "");
  tw_reader_destroy(&rd);
  close(fd);
  msgpack_sbuffer_destroy(&sb);
}

static void create_rejects_bad_params(void) {
  static const char *const args[] = {
      "--session-ttl", "30m", "--session-idle-ttl", "10m", "--max-session-ttl", "1h", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  const char *m = "session.create";
  /* Durations: 1 .. --max-session-ttl, integers only. */
  json_decref(create(c, json_pack("{s:s, s:i, s:i}", "sub", "a", "ttl", 3600, "idle_ttl", 3600)));
  json_decref(create(c, json_pack("{s:s, s:i, s:i}", "sub", "a", "ttl", 1, "idle_ttl", 1)));
  tc_expect_error(c, m, json_pack("{s:s, s:i}", "sub", "a", "ttl", 3601), "bad_request", "ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:i}", "sub", "a", "idle_ttl", 3601), "bad_request",
               "idle_ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:I}", "sub", "a", "ttl", (json_int_t)INT64_MAX),
               "bad_request", "ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:i}", "sub", "a", "ttl", 0), "bad_request", "ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:i}", "sub", "a", "idle_ttl", 0), "bad_request", "idle_ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:i}", "sub", "a", "ttl", -5), "bad_request", "ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:i}", "sub", "a", "idle_ttl", -1), "bad_request",
               "idle_ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:f}", "sub", "a", "ttl", 1.5), "bad_request", "ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:f}", "sub", "a", "ttl", 60.0), "bad_request", "ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:s}", "sub", "a", "ttl", "60"), "bad_request", "ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:b}", "sub", "a", "ttl", 1), "bad_request", "ttl");
  tc_expect_error(c, m, json_pack("{s:s, s:n}", "sub", "a", "idle_ttl"), "bad_request", "idle_ttl");
  /* sub: 1..256 bytes of UTF-8. */
  char sub[300];
  memset(sub, 'x', sizeof(sub));
  sub[256] = 0;
  json_decref(create_sub(c, sub));
  sub[256] = 'x';
  sub[257] = 0;
  tc_expect_error(c, m, json_pack("{s:s}", "sub", sub), "bad_request", "sub");
  tc_expect_error(c, m, json_pack("{s:s}", "sub", ""), "bad_request", "sub");
  tc_expect_error(c, m, json_pack("{}"), "bad_request", "sub");
  tc_expect_error(c, m, NULL, "bad_request", "sub");
  tc_expect_error(c, m, json_pack("{s:i}", "sub", 5), "bad_request", "sub");
  json_decref(create_sub(c, "\xc3\xa9l\xc3\xa8ve \xe2\x9c\x93")); /* valid multi-byte UTF-8 */
  char code[32];
  static const char *const bad_utf8[] = {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80",
                                         "\xf4\x90\x80\x80"};
  for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
    raw_create_code(&d, "sub", NULL, bad_utf8[i], strlen(bad_utf8[i]), code, sizeof(code));
    TT_ASSERT_MSG(strcmp(code, "bad_request") == 0, "invalid UTF-8 sub #%zu: '%s'", i, code);
  }
  raw_create_code(&d, "client", "ua", "Mozilla\xff", 8, code, sizeof(code));
  TT_EQ_STR(code, "bad_request");
  /* data: a map of at most 4 KiB as msgpack. */
  char *big = malloc(5000);
  memset(big, 'd', 4999);
  big[4999] = 0;
  big[4100] = 0;
  tc_expect_error(c, m, json_pack("{s:s, s:{s:s}}", "sub", "a", "data", "blob", big), "bad_request",
               "data");
  big[4000] = 0;
  json_t *r = create(c, json_pack("{s:s, s:{s:s}}", "sub", "a", "data", "blob", big));
  json_t *v = NULL;
  TT_EQ_STR(validate(c, tc_str(r, "sid"), NULL, &v), "");
  TT_EQ_STR(tc_str(json_object_get(v, "data"), "blob"), big);
  json_decref(v);
  json_decref(r);
  tc_expect_error(c, m, json_pack("{s:s, s:[i]}", "sub", "a", "data", 1), "bad_request", "data");
  tc_expect_error(c, m, json_pack("{s:s, s:s}", "sub", "a", "data", "text"), "bad_request", "data");
  memset(big, 'u', 4999);
  big[4100] = 0;
  tc_expect_error(c, m, json_pack("{s:s, s:{s:s}}", "sub", "a", "client", "ua", big), "bad_request",
               NULL);
  free(big);
  /* Unknown keys, at the top and inside client, are named. */
  tc_expect_error(c, m, json_pack("{s:s, s:i}", "sub", "a", "bogus_key", 1), "bad_request",
               "bogus_key");
  tc_expect_error(
      c, m,
      json_pack("{s:s, s:{s:s, s:s}}", "sub", "a", "client", "ip", "10.0.0.1", "evil_key", "x"),
      "bad_request", "evil_key");
  tc_expect_error(c, m, json_pack("{s:s, s:s}", "sub", "a", "client", "10.0.0.1"), "bad_request",
               "client");
  /* Nothing of the refused requests was stored. */
  TT_EQ_INT(tc_stat(c, "sessions"), 5);
  tessera_close(c);
  tc_stop_clean(&d);
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

static void create_1000_distinct(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 1000 };
  idset ids = idset_new(N);
  json_t *p = json_pack("{s:s}", "sub", "many");
  create_many(c, p, N, keep_ids, &ids);
  json_decref(p);
  for (int i = 0; i < N; i++) {
    TT_ASSERT(tc_is_b64url(ids.sid[i], SID_CHARS));
    TT_ASSERT(tc_is_b64url(ids.handle[i], HANDLE_CHARS));
  }
  qsort(ids.sid, N, SID_CHARS + 1, cmp_str);
  qsort(ids.handle, N, HANDLE_CHARS + 1, cmp_str);
  for (int i = 1; i < N; i++) {
    TT_ASSERT_MSG(strcmp(ids.sid[i - 1], ids.sid[i]) != 0, "duplicate sid");
    TT_ASSERT_MSG(strcmp(ids.handle[i - 1], ids.handle[i]) != 0, "duplicate handle");
  }
  TT_EQ_INT(tc_stat(c, "sessions"), N);
  TT_EQ_INT(count_listed(c, "many"), N);
  idset_free(&ids);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Neither the sid nor its 32 raw bytes ever reach the data file (or the log). */
static void data_file_holds_no_sid(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 300, ROTATED = 50 };
  idset ids = idset_new(N + ROTATED);
  json_t *p = json_pack("{s:s, s:{s:s}, s:{s:s, s:s}}", "sub", "needle-sub-7f3a", "data", "k",
                        "needle-data-91c2", "client", "ip", "192.0.2.1", "ua", "curl");
  create_many(c, p, N, keep_ids, &ids);
  json_decref(p);
  /* Rotations write a new record under a new sid; touches rewrite records. */
  for (int i = 0; i < ROTATED; i++) {
    json_t *r = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", ids.sid[i]));
    snprintf(ids.sid[N + i], SID_CHARS + 1, "%s", tc_str(r, "sid"));
    snprintf(ids.handle[N + i], HANDLE_CHARS + 1, "%s", tc_str(r, "handle"));
    json_decref(r);
  }
  for (int i = N + ROTATED - 1; i >= ROTATED; i -= 7) expect_valid(c, ids.sid[i]);
  TT_EQ_INT(revoke_n(c, "sid", ids.sid[N + 1]), 1);
  tessera_close(c);
  int st = td_stop(&d);
  TT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char path[256];
  snprintf(path, sizeof(path), "%s/data.mdb", d.data);
  size_t len;
  char *file = td_read_file(path, &len);
  TT_ASSERT_MSG(len > 0, "empty data file");
  /* Controls: what is stored is found, so a miss below means something. */
  TT_ASSERT(holds(file, len, "needle-sub-7f3a", 15));
  TT_ASSERT(holds(file, len, "needle-data-91c2", 16));
  size_t log_len;
  char *log = td_read_file(d.log, &log_len);
  int handles_found = 0;
  for (int i = 0; i < N + ROTATED; i++) {
    TT_ASSERT_MSG(!holds(file, len, ids.sid[i], SID_CHARS), "sid %d is in data.mdb", i);
    TT_ASSERT_MSG(!holds(log, log_len, ids.sid[i], SID_CHARS), "sid %d is in the log", i);
    uint8_t raw[32], hraw[16];
    size_t n = 0;
    TT_ASSERT(sodium_base642bin(raw, sizeof(raw), ids.sid[i], SID_CHARS, NULL, &n, NULL,
                                sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
              n == 32);
    TT_ASSERT_MSG(!holds(file, len, raw, sizeof(raw)), "raw sid %d is in data.mdb", i);
    TT_ASSERT(sodium_base642bin(hraw, sizeof(hraw), ids.handle[i], HANDLE_CHARS, NULL, &n, NULL,
                                sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
              n == 16);
    handles_found += holds(file, len, hraw, sizeof(hraw));
  }
  TT_ASSERT_MSG(handles_found >= N - 1, "only %d handles found in data.mdb", handles_found);
  free(log);
  free(file);
  idset_free(&ids);
  td_cleanup(&d);
}

/* ---- validate --------------------------------------------------------------------------- */

static void validate_returns_the_session(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *data = json_pack("{s:s, s:i, s:b, s:{s:[i, i, s]}, s:n}", "role", "admin", "n", 3, "mfa",
                           1, "nested", "a", 1, 2, "x", "none");
  int64_t before = (int64_t)time(NULL);
  json_t *r = create(c, json_pack("{s:s, s:O, s:{s:s, s:s}}", "sub", "dana", "data", data, "client",
                                  "ip", "203.0.113.9", "ua", "Firefox/128"));
  int64_t after = (int64_t)time(NULL);
  const char *sid = tc_str(r, "sid");
  json_t *v = NULL;
  TT_EQ_STR(validate(c, sid, json_pack("{s:s, s:s}", "ip", "203.0.113.9", "ua", "Firefox/128"), &v),
            "");
  TT_EQ_INT(json_object_size(v), 8);
  TT_EQ_STR(tc_str(v, "sub"), "dana");
  TT_EQ_STR(tc_str(v, "handle"), tc_str(r, "handle"));
  TT_ASSERT_MSG(json_equal(json_object_get(v, "data"), data), "data came back changed");
  long long created = tc_int(v, "created_at");
  TT_ASSERT(created >= before && created <= after);
  TT_EQ_INT(tc_int(v, "expires_at"), tc_int(r, "expires_at"));
  long long in = tc_int(v, "expires_in");
  TT_ASSERT(in <= tc_int(r, "expires_at") - after &&
            in >= tc_int(r, "expires_at") - (long long)time(NULL));
  TT_ASSERT(tc_int(v, "idle_expires_at") >= tc_int(r, "idle_expires_at"));
  TT_ASSERT(tc_int(v, "idle_expires_at") <= tc_int(v, "expires_at"));
  TT_ASSERT(json_is_array(json_object_get(v, "anomalies")));
  TT_EQ_INT(json_array_size(json_object_get(v, "anomalies")), 0);
  TT_ASSERT(json_object_get(v, "sid") == NULL);
  json_decref(v);
  /* Anomalies against the creating client. A bound user agent left out counts as changed (the
   * rule --bind-policy enforce needs); a bound ip left out is not reported. */
  struct {
    const char *ip, *ua, *want;
  } cases[] = {
      {NULL, NULL, "[\"ua_changed\"]"},
      {"203.0.113.9", "Firefox/128", "[]"},
      {"203.0.113.9", NULL, "[\"ua_changed\"]"},
      {NULL, "Firefox/128", "[]"},
      {"198.51.100.7", NULL, "[\"ip_changed\", \"ua_changed\"]"},
      {"198.51.100.7", "Firefox/128", "[\"ip_changed\"]"},
      {NULL, "curl/8.0", "[\"ua_changed\"]"},
      {"203.0.113.9", "curl/8.0", "[\"ua_changed\"]"},
      {"198.51.100.7", "curl/8.0", "[\"ip_changed\", \"ua_changed\"]"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    json_t *cl = json_object();
    if (cases[i].ip) json_object_set_new(cl, "ip", json_string(cases[i].ip));
    if (cases[i].ua) json_object_set_new(cl, "ua", json_string(cases[i].ua));
    TT_EQ_STR(validate(c, sid, i == 0 ? (json_decref(cl), NULL) : cl, &v), "");
    json_t *want = json_loads(cases[i].want, 0, NULL);
    char *got = json_dumps(json_object_get(v, "anomalies"), JSON_COMPACT);
    TT_ASSERT_MSG(json_equal(json_object_get(v, "anomalies"), want),
                  "case %zu: anomalies %s, want %s", i, got, cases[i].want);
    free(got);
    json_decref(want);
    json_decref(v);
  }
  /* Flags never revoke in report mode. */
  expect_valid(c, sid);
  /* A session created without client info has nothing to compare against. */
  json_t *r2 = create_sub(c, "dana");
  TT_EQ_STR(validate(c, tc_str(r2, "sid"), json_pack("{s:s, s:s}", "ip", "1.1.1.1", "ua", "x"), &v),
            "");
  TT_EQ_INT(json_array_size(json_object_get(v, "anomalies")), 0);
  TT_ASSERT(json_is_object(json_object_get(v, "data")) &&
            json_object_size(json_object_get(v, "data")) == 0);
  json_decref(v);
  /* Unknown keys in client are named here too. */
  json_t *p = json_pack("{s:s, s:{s:s}}", "sid", sid, "client", "agent", "x");
  tc_expect_error(c, "session.validate", p, "bad_request", "agent");
  tc_expect_error(c, "session.validate", json_pack("{s:s, s:i}", "sid", sid, "extra", 1),
               "bad_request", "extra");
  tc_expect_error(c, "session.validate", json_pack("{}"), "bad_request", "sid");
  json_decref(r2);
  json_decref(r);
  json_decref(data);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void bind_policy_enforce_drops_on_ua_change(void) {
  static const char *const args[] = {"--bind-policy", "enforce", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d), *other = tc_client(&d);
  json_t *r = create(c, json_pack("{s:s, s:{s:s, s:s}}", "sub", "eve", "client", "ip", "10.1.1.1",
                                  "ua", "Safari/17"));
  const char *sid = tc_str(r, "sid");
  json_t *v = NULL;
  /* An ip change is still only reported. */
  TT_EQ_STR(validate(c, sid, json_pack("{s:s, s:s}", "ip", "10.9.9.9", "ua", "Safari/17"), &v), "");
  TT_EQ_INT(json_array_size(json_object_get(v, "anomalies")), 1);
  TT_EQ_STR(json_string_value(json_array_get(json_object_get(v, "anomalies"), 0)), "ip_changed");
  json_decref(v);
  /* A ua change is refused and kills the session, for everybody. */
  TT_EQ_STR(validate(c, sid, json_pack("{s:s}", "ua", "python-requests/2.31"), NULL),
            "unauthenticated");
  TT_EQ_STR(
      validate(other, sid, json_pack("{s:s, s:s}", "ip", "10.1.1.1", "ua", "Safari/17"), NULL),
      "unauthenticated");
  expect_refused(c, sid);
  json_t *l = tc_call_ok(other, "session.list", json_pack("{s:s}", "sub", "eve"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 0);
  json_decref(l);
  TT_EQ_INT(revoke_n(c, "handle", tc_str(r, "handle")), 0);
  TT_EQ_INT(tc_stat(c, "sessions"), 0);
  json_decref(r);
  tessera_close(other);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* The anomalies of one validate, as a comma-joined string ("" for none); the code in code. */
static const char *anomalies_of(tessera_client *c, const char *sid, json_t *client, char *buf,
                                size_t cap) {
  json_t *v = NULL;
  const char *code = validate(c, sid, client, &v);
  buf[0] = 0;
  if (code[0]) {
    snprintf(buf, cap, "error %s", code);
    return buf;
  }
  json_t *a = json_object_get(v, "anomalies");
  for (size_t i = 0; i < json_array_size(a); i++)
    snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", i ? "," : "",
             json_string_value(json_array_get(a, i)));
  json_decref(v);
  return buf;
}

/* --bind-policy enforce could be bypassed by leaving client.ua out at validate (and an empty
 * ua was refused as bad_request, so apps left it out). A session bound to a user agent now
 * treats a missing or empty one as changed: under enforce the session is revoked and the
 * answer is unauthenticated; under report it is reported as ua_changed. */
static void bind_policy_missing_ua_counts_as_changed(void) {
  char buf[128];
  /* report (the default): reported, the session lives on. */
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *r = create(c, json_pack("{s:s, s:{s:s}}", "sub", "uma", "client", "ua", "Safari/17"));
  const char *sid = tc_str(r, "sid");
  TT_EQ_STR(anomalies_of(c, sid, json_pack("{s:s}", "ua", "Safari/17"), buf, sizeof(buf)), "");
  TT_EQ_STR(anomalies_of(c, sid, NULL, buf, sizeof(buf)), "ua_changed");
  TT_EQ_STR(anomalies_of(c, sid, json_pack("{}"), buf, sizeof(buf)), "ua_changed");
  TT_EQ_STR(anomalies_of(c, sid, json_pack("{s:s}", "ua", ""), buf, sizeof(buf)), "ua_changed");
  TT_EQ_STR(anomalies_of(c, sid, json_pack("{s:s}", "ip", "10.0.0.1"), buf, sizeof(buf)),
            "ua_changed");
  /* Without a ua bound at create (none, or ""), nothing is reported. */
  json_t *nb = create(c, json_pack("{s:s, s:{s:s}}", "sub", "uma", "client", "ua", ""));
  TT_EQ_STR(anomalies_of(c, tc_str(nb, "sid"), NULL, buf, sizeof(buf)), "");
  TT_EQ_STR(anomalies_of(c, tc_str(nb, "sid"), json_pack("{s:s}", "ua", "curl/8"), buf,
                         sizeof(buf)),
            "");
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "uma"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 2);
  json_decref(l);
  json_decref(nb);
  json_decref(r);
  tessera_close(c);
  tc_stop_clean(&d);

  /* enforce: a missing or an empty ua revokes the session. */
  static const char *const args[] = {"--bind-policy", "enforce", NULL};
  td_start(&d, args);
  c = tc_client(&d);
  for (int how = 0; how < 3; how++) {
    r = create(c, json_pack("{s:s, s:{s:s}}", "sub", "uma", "client", "ua", "Safari/17"));
    sid = tc_str(r, "sid");
    TT_EQ_STR(anomalies_of(c, sid, json_pack("{s:s}", "ua", "Safari/17"), buf, sizeof(buf)), "");
    json_t *cl = how == 0 ? NULL : how == 1 ? json_pack("{s:s}", "ua", "")
                                            : json_pack("{s:s}", "ip", "10.0.0.1");
    TT_EQ_STR(validate(c, sid, cl, NULL), "unauthenticated");
    /* Dead for everybody, also with the right ua. */
    TT_EQ_STR(validate(c, sid, json_pack("{s:s}", "ua", "Safari/17"), NULL), "unauthenticated");
    json_decref(r);
  }
  l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "uma"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 0);
  json_decref(l);
  /* A session bound to no ua is not affected by enforce. */
  r = create_sub(c, "uma");
  expect_valid(c, tc_str(r, "sid"));
  TT_EQ_STR(anomalies_of(c, tc_str(r, "sid"), json_pack("{s:s}", "ua", ""), buf, sizeof(buf)), "");
  json_decref(r);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void validate_refuses_unknown_and_malformed_sids(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *r = create_sub(c, "frank");
  const char *sid = tc_str(r, "sid");
  char unknown[SID_CHARS + 1], nc[SID_CHARS + 1], buf[128];
  random_sid(unknown);
  expect_refused(c, unknown);
  non_canonical(sid, nc);
  expect_refused(c, nc); /* decodes to the live session's bytes, but is not its sid */
  expect_refused(c, "abc");
  expect_refused(c, "not a session id at all, but 43 characters");
  snprintf(buf, sizeof(buf), "%s=", sid); /* padded */
  expect_refused(c, buf);
  snprintf(buf, sizeof(buf), "%.42s", sid); /* truncated */
  expect_refused(c, buf);
  snprintf(buf, sizeof(buf), "%sA", sid); /* one char too many */
  expect_refused(c, buf);
  snprintf(buf, sizeof(buf), "%s", sid);
  buf[5] = '+'; /* standard base64, not base64url */
  expect_refused(c, buf);
  buf[5] = '/';
  expect_refused(c, buf);
  snprintf(buf, sizeof(buf), " %.42s", sid);
  expect_refused(c, buf);
  snprintf(buf, sizeof(buf), "%s", tc_str(r, "handle")); /* a handle is not a sid */
  expect_refused(c, buf);
  char cookie[256]; /* the whole cookie is not a sid either */
  snprintf(cookie, sizeof(cookie), "__Host-sid=%s", sid);
  expect_refused(c, cookie);
  tc_expect_error(c, "session.validate", json_pack("{s:i}", "sid", 42), "bad_request", "sid");
  /* The real one still works, and every failure above counted as unauthenticated. */
  expect_valid(c, sid);
  TT_EQ_INT(tc_stat(c, "error.unauthenticated"), 12);
  json_decref(r);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- expiry ----------------------------------------------------------------------------- */

static void expiry_enforced_before_the_sweeper_runs(void) {
  static const char *const args[] = {"--sweep-interval", "1h", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *keep = create_sub(c, "gina");
  int64_t t0 = start_of_next_second();
  uint32_t ida, idb;
  json_t *pa = json_pack("{s:s, s:i}", "sub", "gina", "ttl", 1);
  json_t *pb = json_pack("{s:s, s:i}", "sub", "gina", "idle_ttl", 1);
  TT_EQ_INT(tessera_send(c, "session.create", pa, &ida), 0);
  TT_EQ_INT(tessera_send(c, "session.create", pb, &idb), 0);
  json_decref(pa);
  json_decref(pb);
  json_t *a = NULL, *b = NULL;
  TT_EQ_INT(tessera_wait(c, ida, 30000, &a, NULL), 0);
  TT_EQ_INT(tessera_wait(c, idb, 30000, &b, NULL), 0);
  int64_t after = (int64_t)time(NULL);
  /* Created in second t0 (or a little later on a slow machine): dead one second after. */
  long long exp_a = tc_int(a, "expires_at"), idle_b = tc_int(b, "idle_expires_at");
  TT_ASSERT_MSG(exp_a >= t0 + 1 && exp_a <= after + 1, "expires_at %lld, t0 %lld", exp_a,
                (long long)t0);
  TT_EQ_INT(tc_int(a, "idle_expires_at"), exp_a);
  long long in_a = tc_int(a, "expires_in");
  TT_ASSERT(in_a == 1 || (in_a == 0 && after >= exp_a));
  char want[32];
  snprintf(want, sizeof(want), "; Max-Age=%lld;", in_a);
  TT_ASSERT(strstr(tc_str(a, "cookie"), want) != NULL);
  TT_ASSERT_MSG(idle_b >= t0 + 1 && idle_b <= after + 1, "idle_expires_at %lld", idle_b);
  TT_ASSERT(tc_int(b, "expires_at") > t0 + 1000);
  /* Alive until then (checked when the answer provably came before that second). */
  const char *code_a = validate(c, tc_str(a, "sid"), NULL, NULL);
  if ((int64_t)time(NULL) < exp_a) TT_EQ_STR(code_a, "");
  const char *code_b = validate(c, tc_str(b, "sid"), NULL, NULL);
  if ((int64_t)time(NULL) < idle_b) TT_EQ_STR(code_b, "");
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "gina"));
  if ((int64_t)time(NULL) < (exp_a < idle_b ? exp_a : idle_b))
    TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 3);
  json_decref(l);
  /* The second they expire in comes; the sweeper has not run since the daemon started. */
  wait_wall_until(exp_a > idle_b ? exp_a : idle_b);
  expect_refused(c, tc_str(a, "sid"));
  expect_refused(c, tc_str(b, "sid"));
  expect_valid(c, tc_str(keep, "sid"));
  l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "gina"));
  json_t *ss = json_object_get(l, "sessions");
  TT_EQ_INT(json_array_size(ss), 1);
  TT_EQ_STR(tc_str(json_array_get(ss, 0), "handle"), tc_str(keep, "handle"));
  json_decref(l);
  tc_expect_error(c, "session.rotate", json_pack("{s:s}", "sid", tc_str(a, "sid")), "unauthenticated",
               NULL);
  /* Still stored (nothing swept): validate itself refused them. */
  TT_EQ_INT(tc_stat(c, "swept"), 0);
  TT_EQ_INT(tc_stat(c, "sessions"), 3);
  /* Revoking an expired session revokes nothing (it was already dead) but removes it. */
  TT_EQ_INT(revoke_n(c, "handle", tc_str(b, "handle")), 0);
  TT_EQ_INT(revoke_n(c, "sid", tc_str(a, "sid")), 0);
  TT_EQ_INT(tc_stat(c, "sessions"), 1);
  json_decref(a);
  json_decref(b);
  json_decref(keep);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void idle_timeout_slides_with_use(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  int64_t start = start_of_next_second();
  json_t *r = create(c, json_pack("{s:s, s:i}", "sub", "hal", "idle_ttl", 3));
  const char *sid = tc_str(r, "sid");
  int64_t t0 = tc_int(r, "idle_expires_at") - 3; /* the second the daemon created it in */
  TT_ASSERT(t0 >= start && t0 <= (int64_t)time(NULL));
  long long last = t0;
  for (int k = 1; k <= 5; k++) { /* one validate a second: 5 s > the 3 s idle timeout */
    wait_wall_until(t0 + k);
    json_t *v = NULL;
    TT_EQ_STR(validate(c, sid, NULL, &v), "");
    long long idle = tc_int(v, "idle_expires_at");
    long long now = (long long)time(NULL);
    TT_ASSERT_MSG(idle >= t0 + k + 3 && idle <= now + 3,
                  "validate %d: idle_expires_at %lld (t0 %lld)", k, idle, (long long)t0);
    last = idle - 3;
    json_decref(v);
  }
  /* The touch is a write queued behind nothing we wait for; a create on the same connection is
   * queued after it, so its reply means the touch is committed. */
  json_decref(create_sub(c, "other"));
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "hal"));
  json_t *s = json_array_get(json_object_get(l, "sessions"), 0);
  TT_EQ_INT(tc_int(s, "created_at"), t0);
  TT_EQ_INT(tc_int(s, "last_seen_at"), last);
  TT_EQ_INT(tc_int(s, "idle_expires_at"), last + 3);
  json_decref(l);
  /* Left alone, it dies when the idle window ends. */
  wait_wall_until(last + 3);
  expect_refused(c, sid);
  json_decref(r);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- rotate ----------------------------------------------------------------------------- */

static void rotate_replaces_the_sid(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *other = tc_client(&d);
  json_t *r = create(c, json_pack("{s:s, s:i, s:{s:s}, s:{s:s}}", "sub", "ivan", "ttl", 3000,
                                  "data", "cart", "3 items", "client", "ua", "Edge"));
  const char *old = tc_str(r, "sid");
  expect_valid(other, old);
  json_t *n = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", old));
  TT_EQ_INT(json_object_size(n), 6);
  const char *sid = tc_str(n, "sid");
  TT_ASSERT(tc_is_b64url(sid, SID_CHARS));
  TT_ASSERT(strcmp(sid, old) != 0);
  TT_EQ_STR(tc_str(n, "handle"), tc_str(r, "handle"));
  TT_EQ_INT(tc_int(n, "expires_at"), tc_int(r, "expires_at")); /* the absolute lifetime stays */
  TT_ASSERT(tc_int(n, "idle_expires_at") >= tc_int(r, "idle_expires_at"));
  char want[256];
  snprintf(want, sizeof(want),
           "__Host-sid=%s; Path=/; Max-Age=%lld; Secure; HttpOnly; SameSite=Lax", sid,
           tc_int(n, "expires_in"));
  TT_EQ_STR(tc_str(n, "cookie"), want);
  /* The old sid is dead at once, on any connection; the new one carries the session. */
  expect_refused(other, old);
  expect_refused(c, old);
  json_t *v = NULL;
  TT_EQ_STR(validate(other, sid, json_pack("{s:s}", "ua", "Edge"), &v), "");
  TT_EQ_STR(tc_str(v, "sub"), "ivan");
  TT_EQ_STR(tc_str(v, "handle"), tc_str(r, "handle"));
  TT_EQ_STR(tc_str(json_object_get(v, "data"), "cart"), "3 items");
  TT_EQ_INT(json_array_size(json_object_get(v, "anomalies")), 0); /* the client info moved too */
  json_decref(v);
  tc_expect_error(c, "session.rotate", json_pack("{s:s}", "sid", old), "unauthenticated", NULL);
  char unknown[SID_CHARS + 1];
  random_sid(unknown);
  tc_expect_error(c, "session.rotate", json_pack("{s:s}", "sid", unknown), "unauthenticated", NULL);
  tc_expect_error(c, "session.rotate", json_pack("{s:s}", "sid", "garbage"), "unauthenticated", NULL);
  tc_expect_error(c, "session.rotate", json_pack("{s:s, s:s}", "sid", sid, "handle", "x"),
               "bad_request", "handle");
  /* Two rotations of one sid in flight: exactly one wins; still one session. */
  uint32_t id1, id2;
  json_t *p = json_pack("{s:s}", "sid", sid);
  TT_EQ_INT(tessera_send(c, "session.rotate", p, &id1), 0);
  TT_EQ_INT(tessera_send(c, "session.rotate", p, &id2), 0);
  json_decref(p);
  json_t *w1 = NULL, *w2 = NULL;
  tessera_error e1, e2;
  int rc1 = tessera_wait(c, id1, 30000, &w1, &e1), rc2 = tessera_wait(c, id2, 30000, &w2, &e2);
  TT_ASSERT_MSG((rc1 == 0) != (rc2 == 0), "both or neither rotation won (%d, %d)", rc1, rc2);
  TT_EQ_STR(rc1 == 0 ? e2.code : e1.code, "unauthenticated");
  json_t *winner = rc1 == 0 ? w1 : w2;
  expect_refused(c, sid);
  expect_valid(c, tc_str(winner, "sid"));
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "ivan"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 1);
  json_decref(l);
  TT_EQ_INT(tc_stat(c, "sessions"), 1);
  TT_EQ_INT(tc_stat(c, "expiry_index"), 1);
  /* The handle still names it. */
  TT_EQ_INT(revoke_n(c, "handle", tc_str(r, "handle")), 1);
  expect_refused(c, tc_str(winner, "sid"));
  json_decref(w1);
  json_decref(w2);
  json_decref(n);
  json_decref(r);
  tessera_close(other);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- revoke ----------------------------------------------------------------------------- */

static void revoke_by_sid_and_by_handle(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *a = tc_client(&d), *b = tc_client(&d);
  json_t *s1 = create_sub(a, "judy"), *s2 = create_sub(a, "judy"), *s3 = create_sub(a, "judy");
  expect_valid(b, tc_str(s1, "sid"));
  expect_valid(b, tc_str(s2, "sid"));
  /* Revoked on one connection, refused on another at once. */
  TT_EQ_INT(revoke_n(a, "sid", tc_str(s1, "sid")), 1);
  expect_refused(b, tc_str(s1, "sid"));
  TT_EQ_INT(revoke_n(a, "sid", tc_str(s1, "sid")), 0);
  TT_EQ_INT(revoke_n(a, "handle", tc_str(s1, "handle")), 0);
  TT_EQ_INT(revoke_n(b, "handle", tc_str(s2, "handle")), 1);
  expect_refused(a, tc_str(s2, "sid"));
  TT_EQ_INT(revoke_n(b, "handle", tc_str(s2, "handle")), 0);
  TT_EQ_INT(revoke_n(b, "sid", tc_str(s2, "sid")), 0);
  /* Exactly one of sid and handle. */
  tc_expect_error(a, "session.revoke",
               json_pack("{s:s, s:s}", "sid", tc_str(s3, "sid"), "handle", tc_str(s3, "handle")),
               "bad_request", NULL);
  tc_expect_error(a, "session.revoke", json_pack("{}"), "bad_request", NULL);
  tc_expect_error(a, "session.revoke", NULL, "bad_request", NULL);
  tc_expect_error(a, "session.revoke", json_pack("{s:s, s:s}", "sid", tc_str(s3, "sid"), "who", "x"),
               "bad_request", "who");
  /* Garbage revokes nothing, without an error. */
  char unknown[SID_CHARS + 1], nc[SID_CHARS + 1];
  random_sid(unknown);
  non_canonical(tc_str(s3, "sid"), nc);
  TT_EQ_INT(revoke_n(a, "sid", "garbage"), 0);
  TT_EQ_INT(revoke_n(a, "sid", unknown), 0);
  TT_EQ_INT(revoke_n(a, "sid", nc), 0);
  TT_EQ_INT(revoke_n(a, "handle", "garbage"), 0);
  TT_EQ_INT(revoke_n(a, "handle", "AAAAAAAAAAAAAAAAAAAAAA"), 0);
  TT_EQ_INT(revoke_n(a, "handle", tc_str(s3, "sid")), 0);
  expect_valid(b, tc_str(s3, "sid"));
  TT_EQ_INT(tc_stat(a, "sessions"), 1);
  TT_EQ_INT(tc_stat(a, "expiry_index"), 1);
  json_decref(s1);
  json_decref(s2);
  json_decref(s3);
  tessera_close(a);
  tessera_close(b);
  tc_stop_clean(&d);
}

/* ---- list ------------------------------------------------------------------------------- */

static void list_shows_live_sessions_never_sids(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  int64_t before = (int64_t)time(NULL);
  json_t *s[4];
  s[0] = create(c, json_pack("{s:s, s:{s:s}, s:{s:s, s:s}}", "sub", "kim", "data", "device",
                             "laptop", "client", "ip", "192.0.2.10", "ua", "Firefox"));
  s[1] = create(
      c, json_pack("{s:s, s:i, s:{s:s}}", "sub", "kim", "ttl", 600, "client", "ip", "192.0.2.11"));
  s[2] = create(c, json_pack("{s:s, s:i}", "sub", "kim", "idle_ttl", 10)); /* touched every 1 s */
  s[3] = create(c, json_pack("{s:s, s:{s:i}}", "sub", "kim", "data", "n", 7));
  json_t *foreign = create_sub(c, "kimberly");
  int64_t after = (int64_t)time(NULL);
  TT_EQ_INT(revoke_n(c, "handle", tc_str(s[3], "handle")), 1);
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "kim"));
  TT_EQ_INT(json_object_size(l), 1);
  json_t *arr = json_object_get(l, "sessions");
  TT_EQ_INT(json_array_size(arr), 3);
  char *text = json_dumps(l, JSON_COMPACT);
  for (int i = 0; i < 4; i++)
    TT_ASSERT_MSG(strstr(text, tc_str(s[i], "sid")) == NULL, "a sid is listed");
  TT_ASSERT(strstr(text, tc_str(foreign, "handle")) == NULL);
  TT_ASSERT(strstr(text, "\"sid\"") == NULL);
  free(text);
  bool seen[3] = {false, false, false};
  for (size_t k = 0; k < json_array_size(arr); k++) {
    json_t *e = json_array_get(arr, k);
    TT_EQ_INT(json_object_size(e), 7);
    TT_ASSERT(json_object_get(e, "sid") == NULL);
    int i = -1;
    for (int j = 0; j < 3; j++)
      if (strcmp(tc_str(e, "handle"), tc_str(s[j], "handle")) == 0) i = j;
    TT_ASSERT_MSG(i >= 0 && !seen[i], "unexpected handle %s", tc_str(e, "handle"));
    seen[i] = true;
    long long created = tc_int(e, "created_at");
    TT_ASSERT(created >= before && created <= after);
    TT_EQ_INT(tc_int(e, "last_seen_at"), created);
    TT_EQ_INT(tc_int(e, "expires_at"), tc_int(s[i], "expires_at"));
    TT_EQ_INT(tc_int(e, "idle_expires_at"), tc_int(s[i], "idle_expires_at"));
    json_t *data = json_object_get(e, "data"), *cl = json_object_get(e, "client");
    TT_ASSERT(json_is_object(data) && json_is_object(cl));
    json_t *want_data = i == 0 ? json_pack("{s:s}", "device", "laptop") : json_object();
    json_t *want_client = i == 0   ? json_pack("{s:s, s:s}", "ip", "192.0.2.10", "ua", "Firefox")
                          : i == 1 ? json_pack("{s:s}", "ip", "192.0.2.11")
                                   : json_object();
    TT_ASSERT_MSG(json_equal(data, want_data), "session %d: data differs", i);
    TT_ASSERT_MSG(json_equal(cl, want_client), "session %d: client differs", i);
    json_decref(want_data);
    json_decref(want_client);
  }
  json_decref(l);
  /* Validation shows up as last_seen_at once a tenth of the idle timeout has passed (after its
   * touch is committed: the next write's reply on this connection says so). */
  wait_wall_until(after + 1);
  expect_valid(c, tc_str(s[2], "sid"));
  json_decref(create_sub(c, "flush"));
  l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "kim"));
  arr = json_object_get(l, "sessions");
  for (size_t k = 0; k < json_array_size(arr); k++) {
    json_t *e = json_array_get(arr, k);
    if (strcmp(tc_str(e, "handle"), tc_str(s[2], "handle")) == 0)
      TT_ASSERT(tc_int(e, "last_seen_at") > tc_int(e, "created_at"));
  }
  json_decref(l);
  l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "nobody-at-all"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 0);
  json_decref(l);
  tc_expect_error(c, "session.list", json_pack("{}"), "bad_request", "sub");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:i}", "sub", "kim", "limit", 0), "bad_request",
               "limit");
  for (int i = 0; i < 4; i++) json_decref(s[i]);
  json_decref(foreign);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Reads that cannot start (every LMDB reader slot taken, here by this process holding read
 * transactions on the daemon's data dir) answer unavailable: session.list used to abort a
 * transaction it never got. Once the slots are free again, everything works. */
static void list_when_reads_fail_is_unavailable(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s = create_sub(c, "lena");
  MDB_env *env;
  TT_ASSERT(mdb_env_create(&env) == 0);
  TT_ASSERT(mdb_env_set_maxdbs(env, 16) == 0);
  TT_ASSERT_MSG(mdb_env_open(env, d.data, MDB_NOTLS | MDB_RDONLY, 0600) == 0, "open %s", d.data);
  MDB_txn *held[512];
  int n = 0, rc = 0;
  while (n < 512 && (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &held[n])) == 0) n++;
  TT_ASSERT_MSG(rc == MDB_READERS_FULL, "%d readers, then %s", n, mdb_strerror(rc));
  tc_expect_error(c, "session.list", json_pack("{s:s}", "sub", "lena"), "unavailable", NULL);
  tc_expect_error(c, "session.validate", json_pack("{s:s}", "sid", tc_str(s, "sid")), "unavailable",
               NULL);
  while (n > 0) mdb_txn_abort(held[--n]);
  mdb_env_close(env);
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "lena"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 1);
  json_decref(l);
  expect_valid(c, tc_str(s, "sid"));
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- revoke_all ------------------------------------------------------------------------- */

static void revoke_all_with_and_without_except(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *other = tc_client(&d);
  json_t *s[5];
  for (int i = 0; i < 5; i++) s[i] = create_sub(c, "leo");
  json_t *bystander = create_sub(c, "leon");
  TT_EQ_INT(revoke_n(c, "sid", tc_str(s[4], "sid")), 1); /* already dead: not counted */
  json_t *r = tc_call_ok(c, "session.revoke_all",
                      json_pack("{s:s, s:s}", "sub", "leo", "except", tc_str(s[1], "handle")));
  TT_EQ_INT(tc_int(r, "revoked"), 3);
  json_decref(r);
  expect_valid(other, tc_str(s[1], "sid"));
  for (int i = 0; i < 5; i++)
    if (i != 1) expect_refused(other, tc_str(s[i], "sid"));
  expect_valid(other, tc_str(bystander, "sid"));
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "leo"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 1);
  json_decref(l);
  r = tc_call_ok(c, "session.revoke_all", json_pack("{s:s}", "sub", "leo"));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  expect_refused(other, tc_str(s[1], "sid"));
  r = tc_call_ok(c, "session.revoke_all", json_pack("{s:s}", "sub", "leo"));
  TT_EQ_INT(tc_int(r, "revoked"), 0);
  json_decref(r);
  r = tc_call_ok(c, "session.revoke_all", json_pack("{s:s}", "sub", "never-seen"));
  TT_EQ_INT(tc_int(r, "revoked"), 0);
  json_decref(r);
  /* An except that names another sub's session keeps nothing of ours. */
  json_t *t1 = create_sub(c, "leo");
  r = tc_call_ok(c, "session.revoke_all",
              json_pack("{s:s, s:s}", "sub", "leo", "except", tc_str(bystander, "handle")));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  expect_refused(c, tc_str(t1, "sid"));
  expect_valid(c, tc_str(bystander, "sid"));
  tc_expect_error(c, "session.revoke_all", json_pack("{s:s, s:s}", "sub", "leo", "except", "nope"),
               "bad_request", "except");
  tc_expect_error(c, "session.revoke_all", json_pack("{}"), "bad_request", "sub");
  tc_expect_error(c, "session.revoke_all", json_pack("{s:s, s:b}", "sub", "leo", "force", 1),
               "bad_request", "force");
  TT_EQ_INT(tc_stat(c, "sessions"), 1);
  TT_EQ_INT(tc_stat(c, "expiry_index"), 1);
  for (int i = 0; i < 5; i++) json_decref(s[i]);
  json_decref(t1);
  json_decref(bystander);
  tessera_close(other);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Logging a user out everywhere leaves none of their sessions alive, however many there are. */
static void revoke_all_of_a_sub_with_many_sessions(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 5000 };
  idset ids = idset_new(N);
  json_t *p = json_pack("{s:s}", "sub", "quinn");
  create_many(c, p, N, keep_ids, &ids);
  json_decref(p);
  json_t *keep = create_sub(c, "quinn");
  json_t *r = tc_call_ok(c, "session.revoke_all",
                      json_pack("{s:s, s:s}", "sub", "quinn", "except", tc_str(keep, "handle")));
  long long revoked = tc_int(r, "revoked");
  json_decref(r);
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "quinn"));
  size_t left = json_array_size(json_object_get(l, "sessions"));
  json_decref(l);
  TT_ASSERT_MSG(revoked == N && left == 1,
                "revoke_all of %d sessions: revoked %lld, %zu still listed", N, revoked, left);
  for (int i = 0; i < N; i += 97) expect_refused(c, ids.sid[i]);
  expect_refused(c, ids.sid[N - 1]);
  expect_valid(c, tc_str(keep, "sid"));
  TT_EQ_INT(tc_stat(c, "sessions"), 1);
  json_decref(keep);
  idset_free(&ids);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- durability ------------------------------------------------------------------------- */

#define DN 200
typedef struct durable_set {
  idset ids;
  char revoked_sid[SID_CHARS + 1], rotated_old[SID_CHARS + 1], rotated_new[SID_CHARS + 1];
} durable_set;

static void durable_setup(tessera_client *c, durable_set *s) {
  s->ids = idset_new(DN);
  json_t *p = json_pack("{s:s, s:{s:s}, s:{s:s}}", "sub", "mia", "data", "plan", "pro", "client",
                        "ua", "App/1");
  create_many(c, p, DN - 1, keep_ids, &s->ids);
  json_decref(p);
  json_t *x = create_sub(c, "mia");
  snprintf(s->revoked_sid, sizeof(s->revoked_sid), "%s", tc_str(x, "sid"));
  json_decref(x);
  TT_EQ_INT(revoke_n(c, "sid", s->revoked_sid), 1);
  x = create_sub(c, "mia");
  snprintf(s->rotated_old, sizeof(s->rotated_old), "%s", tc_str(x, "sid"));
  json_decref(x);
  x = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", s->rotated_old));
  snprintf(s->rotated_new, sizeof(s->rotated_new), "%s", tc_str(x, "sid"));
  json_decref(x);
  /* The last acknowledged write before the stop is a create. */
  x = create(c, json_pack("{s:s, s:{s:s}}", "sub", "mia", "data", "plan", "pro"));
  snprintf(s->ids.sid[DN - 1], SID_CHARS + 1, "%s", tc_str(x, "sid"));
  snprintf(s->ids.handle[DN - 1], HANDLE_CHARS + 1, "%s", tc_str(x, "handle"));
  json_decref(x);
}

static void durable_check(tessera_client *c, durable_set *s) {
  for (int i = 0; i < DN; i++) {
    json_t *v = NULL;
    const char *code = validate(c, s->ids.sid[i], NULL, &v);
    TT_ASSERT_MSG(code[0] == 0, "session %d lost: %s", i, code);
    TT_EQ_STR(tc_str(v, "handle"), s->ids.handle[i]);
    TT_EQ_STR(tc_str(json_object_get(v, "data"), "plan"), "pro");
    json_decref(v);
  }
  expect_refused(c, s->revoked_sid);
  expect_refused(c, s->rotated_old);
  expect_valid(c, s->rotated_new);
  TT_EQ_INT(count_listed(c, "mia"), DN + 1 /* rotated one */);
  idset_free(&s->ids);
}

static void sessions_survive_sigterm_restart(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  durable_set s;
  durable_setup(c, &s);
  tessera_close(c);
  int st = td_stop(&d);
  TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  td_launch(&d, NULL);
  c = tc_client(&d);
  durable_check(c, &s);
  TT_EQ_INT(tc_stat(c, "sessions"), DN + 1);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void sessions_survive_kill9_after_ack(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  durable_set s;
  durable_setup(c, &s);
  td_kill9(&d); /* right after the last create's reply */
  tessera_close(c);
  td_launch(&d, NULL);
  c = tc_client(&d);
  durable_check(c, &s);
  TT_EQ_INT(tc_stat(c, "sessions"), DN + 1);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- sweeper ---------------------------------------------------------------------------- */

static void sweeper_deletes_100k_expired(void) {
  static const char *const args[] = {"--sweep-interval", "200ms", "--log-level", "info", NULL};
  td_daemon d;
  td_start(&d, args);
  enum { CONNS = 4, LIVE = 10 };
  const uint32_t PER = (uint32_t)tc_scaled(25000), BATCH = PER < 1000 ? PER : 1000;
  tessera_client *cs[CONNS];
  for (int i = 0; i < CONNS; i++) cs[i] = tc_client(&d);
  json_t *live[LIVE];
  for (int i = 0; i < LIVE; i++)
    live[i] = create(cs[0], json_pack("{s:s, s:i}", "sub", "live", "ttl", 86400));
  /* The bulk goes over raw sockets: one buffer of BATCH requests per connection, then the
   * replies (only their error element is looked at), so the client costs little CPU. */
  int fds[CONNS];
  tw_reader rds[CONNS];
  for (int i = 0; i < CONNS; i++) {
    fds[i] = tw_connect(d.socket);
    tw_reader_init(&rds[i], fds[i]);
  }
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long long peak = 0;
  for (uint32_t base = 0; base < PER; base += BATCH) {
    uint32_t batch = PER - base < BATCH ? PER - base : BATCH;
    for (int i = 0; i < CONNS; i++) {
      msgpack_sbuffer_clear(&sb);
      for (uint32_t k = 0; k < batch; k++) {
        msgpack_pack_array(&pk, 4);
        msgpack_pack_uint8(&pk, 0);
        msgpack_pack_uint32(&pk, base + k);
        msgpack_pack_str_with_body(&pk, "session.create", 14);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "sub", 3);
        char sub[16];
        int n = snprintf(sub, sizeof(sub), "bulk%u", (unsigned)(base + k) % 1000);
        msgpack_pack_str_with_body(&pk, sub, (size_t)n);
        msgpack_pack_str_with_body(&pk, "ttl", 3);
        msgpack_pack_uint8(&pk, 1);
        msgpack_pack_str_with_body(&pk, "data", 4);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "pad", 3);
        msgpack_pack_str_with_body(&pk, "0123456789abcdef0123456789abcdef", 32);
      }
      TT_ASSERT(tw_send(fds[i], sb.data, sb.size));
    }
    for (int i = 0; i < CONNS; i++)
      for (uint32_t k = 0; k < batch; k++) {
        uint32_t id;
        char code[32];
        TT_ASSERT_MSG(tw_read_response(&rds[i], 60000, &id, code, sizeof(code)), "no reply");
        TT_ASSERT_MSG(code[0] == 0, "create %u: %s", (unsigned)id, code);
      }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  msgpack_sbuffer_destroy(&sb);
  for (int i = 0; i < CONNS; i++) {
    tw_reader_destroy(&rds[i]);
    close(fds[i]);
  }
  peak = tc_stat(cs[0], "store_bytes");
  fprintf(stderr, "%u creates in %.2f s; store_bytes %lld, swept so far %lld\n",
          (unsigned)(CONNS * PER),
          (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, peak,
          tc_stat(cs[0], "swept"));
  long long swept = 0;
  for (int i = 0; i < 1200 && swept < CONNS * PER; i++) { /* up to 120 s */
    swept = tc_stat(cs[0], "swept");
    if (swept < CONNS * PER) nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  fprintf(stderr, "swept %lld, %.2f s after the last create\n", swept,
          (double)(t0.tv_sec - t1.tv_sec) + (double)(t0.tv_nsec - t1.tv_nsec) / 1e9);
  TT_ASSERT_MSG(swept >= CONNS * PER, "only %lld swept", swept);
  TT_EQ_INT(tc_stat(cs[0], "sessions"), LIVE);
  TT_EQ_INT(tc_stat(cs[0], "expiry_index"), LIVE);
  for (int i = 0; i < LIVE; i++) expect_valid(cs[i % CONNS], tc_str(live[i], "sid"));
  json_t *l = tc_call_ok(cs[1], "session.list", json_pack("{s:s}", "sub", "bulk0"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 0);
  json_decref(l);
  long long now_bytes = tc_stat(cs[0], "store_bytes");
  fprintf(stderr, "store_bytes at the peak %lld, after the sweep %lld\n", peak, now_bytes);
  /* Scaled down (slow builds), the sweeper keeps pace with the creates and there is no peak
   * to speak of; the full size shows the room coming back. */
  if (PER == 25000)
    TT_ASSERT_MSG(now_bytes * 4 < peak, "store_bytes %lld after the sweep, %lld at the peak",
                  now_bytes, peak);
  for (int i = 0; i < LIVE; i++) json_decref(live[i]);
  for (int i = 0; i < CONNS; i++) tessera_close(cs[i]);
  tc_stop_clean(&d);
}

/* ---- reads never wait for the writer ---------------------------------------------------- */

static atomic_uint completion_seq;

typedef struct bulk_arg {
  const td_daemon *d;
  sem_t *started;
  int n;                    /* creates to pipeline */
  unsigned last_create_seq; /* the completion number of the last create's reply */
  atomic_bool done;
  int failures;
} bulk_arg;

static void *bulk_creator(void *p) {
  bulk_arg *a = p;
  const int n = a->n, signal_after = n / 50;
  tessera_client *c = NULL;
  if (tessera_connect(a->d->socket, &c) != 0) {
    a->failures++;
    atomic_store(&a->done, true);
    sem_post(a->started);
    return NULL;
  }
  uint32_t *ids = calloc((size_t)n, sizeof(uint32_t));
  json_t *params = json_pack("{s:s}", "sub", "bulk");
  for (int i = 0; i < n; i++) {
    if (tessera_send(c, "session.create", params, &ids[i]) != 0) a->failures++;
    if (i == signal_after) sem_post(a->started); /* the rest are sent while validates run */
  }
  for (int i = 0; i < n; i++) {
    if (tessera_wait(c, ids[i], 60000, NULL, NULL) != 0) a->failures++;
    unsigned seq = atomic_fetch_add(&completion_seq, 1);
    if (i == n - 1) a->last_create_seq = seq;
  }
  free(ids);
  json_decref(params);
  tessera_close(c);
  atomic_store(&a->done, true);
  return NULL;
}

static void validate_answers_during_bulk_creates(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s = create_sub(c, "nora");
  const char *sid = tc_str(s, "sid");
  sem_t started;
  sem_init(&started, 0, 0);
  bulk_arg a = {.d = &d, .started = &started, .n = tc_scaled(10000)};
  atomic_init(&a.done, false);
  pthread_t th;
  TT_ASSERT(pthread_create(&th, NULL, bulk_creator, &a) == 0);
  while (sem_wait(&started) != 0) {}
  /* Validates until the creates are done (at most MAXV: enough to overlap them, without
   * starving a slow build's writer of CPU). */
  enum { MAXV = 2000 };
  unsigned *seqs = malloc(MAXV * sizeof(unsigned));
  size_t nv = 0;
  while (!atomic_load(&a.done) && nv < MAXV) {
    expect_valid(c, sid);
    seqs[nv++] = atomic_fetch_add(&completion_seq, 1);
  }
  pthread_join(th, NULL);
  TT_EQ_INT(a.failures, 0);
  size_t before_last = 0;
  for (size_t i = 0; i < nv; i++) before_last += seqs[i] < a.last_create_seq;
  fprintf(stderr, "%zu validates answered before the last of %d creates (of %zu)\n", before_last,
          a.n, nv);
  TT_ASSERT_MSG(before_last > 0, "no validate was answered while the creates were being committed");
  TT_EQ_INT(tc_stat(c, "sessions"), a.n + 1);
  free(seqs);
  sem_destroy(&started);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- the store cap ---------------------------------------------------------------------- */

/* Pipelined creates of params (borrowed) in batches (1 .. 16) until one fails; every failure must
 * be `unavailable`. The sids of the sessions created go to ids from index at. Returns how many
 * were created. */
static int create_until_full(tessera_client *c, const json_t *params, int batch, idset *ids, int at,
                             int max, char *msg, size_t cap) {
  enum { B = 16 };
  TT_ASSERT(batch >= 1 && batch <= B);
  int made = 0;
  bool full = false;
  while (!full) {
    uint32_t id[B];
    for (int k = 0; k < batch; k++) TT_EQ_INT(tessera_send(c, "session.create", params, &id[k]), 0);
    for (int k = 0; k < batch; k++) {
      json_t *r = NULL;
      tessera_error err = {{0}, {0}};
      int rc = tessera_wait(c, id[k], 30000, &r, &err);
      if (rc == 0) {
        TT_ASSERT_MSG(at + made < max, "the cap never came");
        keep_ids(r, at + made++, ids);
        json_decref(r);
        continue;
      }
      TT_ASSERT_MSG(rc == TESSERA_EREMOTE, "create: %s", tessera_strerror(rc));
      TT_ASSERT_MSG(strcmp(err.code, "unavailable") == 0, "create at the cap: %s (%s)", err.code,
                    err.message);
      snprintf(msg, cap, "%s", err.message);
      full = true;
    }
  }
  return made;
}

static void store_cap_answers_unavailable(void) {
  static const char *const args[] = {"--max-store-bytes", "1M", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  char *blob = malloc(4001);
  memset(blob, 'z', 4000);
  blob[4000] = 0;
  json_t *p = json_pack("{s:s, s:{s:s}}", "sub", "olga", "data", "blob", blob);
  enum { MAX = 10000 };
  idset ids = idset_new(MAX);
  char msg[256] = "";
  int n = create_until_full(c, p, 16, &ids, 0, MAX, msg, sizeof(msg));
  fprintf(stderr, "%d sessions of 4 KiB fit in 1M; then unavailable (%s)\n", n, msg);
  TT_ASSERT_MSG(n > 10, "only %d creates before the cap", n);
  /* Near the cap a page freed by an earlier commit may still become reusable (LMDB recycles
   * pages a commit or two later), so a few more creates can fit; then it is full for good. */
  int streak = 0, tries = 0;
  for (; streak < 3 && tries < 50; tries++) {
    json_t *r = NULL;
    tessera_error err = {{0}, {0}};
    int rc = tessera_call(c, "session.create", p, 30000, &r, &err);
    if (rc == 0) {
      keep_ids(r, n++, &ids);
      json_decref(r);
      streak = 0;
    } else {
      TT_ASSERT_MSG(rc == TESSERA_EREMOTE && strcmp(err.code, "unavailable") == 0, "at the cap: %s",
                    rc == TESSERA_EREMOTE ? err.code : tessera_strerror(rc));
      streak++;
    }
  }
  TT_ASSERT_MSG(streak == 3, "the store never stayed full (%d sessions)", n);
  /* Nothing of the refused creates was written; everything acknowledged was. */
  TT_EQ_INT(tc_stat(c, "sessions"), n);
  TT_EQ_INT(tc_stat(c, "expiry_index"), n);
  /* Everything acknowledged before is there; the daemon keeps serving. */
  for (int i = 0; i < n; i++) expect_valid(c, ids.sid[i]);
  tessera_client *c2 = tc_client(&d);
  json_decref(tc_call_ok(c2, "sys.ping", NULL));
  TT_EQ_INT(count_listed(c2, "olga"), n);
  /* Freeing space (revokes work at the cap) makes room again: LMDB reuses the freed pages. */
  int freed = n / 2;
  static uint32_t rid[MAX];
  for (int i = 0; i < freed; i++) {
    json_t *rp = json_pack("{s:s}", "sid", ids.sid[i]);
    TT_EQ_INT(tessera_send(c, "session.revoke", rp, &rid[i]), 0);
    json_decref(rp);
  }
  for (int i = 0; i < freed; i++) {
    json_t *r = NULL;
    tessera_error err = {{0}, {0}};
    int rc = tessera_wait(c, rid[i], 30000, &r, &err);
    TT_ASSERT_MSG(rc == 0, "revoke at the cap: %s (%s)", tessera_strerror(rc), err.code);
    TT_EQ_INT(tc_int(r, "revoked"), 1);
    json_decref(r);
  }
  int again = create_until_full(c, p, 16, &ids, n, MAX, msg, sizeof(msg));
  fprintf(stderr, "after revoking %d, %d creates fit again\n", freed, again);
  TT_ASSERT_MSG(again >= freed / 2, "only %d creates after freeing %d sessions", again, freed);
  for (int i = freed; i < n + again; i++) expect_valid(c2, ids.sid[i]);
  for (int i = 0; i < freed; i++) expect_refused(c2, ids.sid[i]);
  TT_EQ_INT(tc_stat(c2, "sessions"), n - freed + again);
  /* Full again: logging the user out everywhere still works (one transaction of deletes). */
  json_t *r = tc_call_ok(c2, "session.revoke_all", json_pack("{s:s}", "sub", "olga"));
  TT_EQ_INT(tc_int(r, "revoked"), n - freed + again);
  json_decref(r);
  TT_EQ_INT(tc_stat(c2, "sessions"), 0);
  for (int i = freed; i < n + again; i += 17) expect_refused(c, ids.sid[i]);
  TT_ASSERT(create_until_full(c, p, 16, &ids, 0, MAX, msg, sizeof(msg)) >= n / 2);
  json_decref(tc_call_ok(c2, "sys.ping", NULL));
  json_decref(p);
  free(blob);
  idset_free(&ids);
  tessera_close(c2);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A store filled with sessions that then expire empties itself: the sweeper's deletes work at
 * the cap, and creates are accepted again without anybody revoking anything. */
static void store_cap_heals_by_sweeping(void) {
  /* Relaxed durability only to fill fast: what is under test is the sweeper in a full store. */
  static const char *const args[] = {
      "--max-store-bytes", "1M", "--sweep-interval", "100ms", "--durability", "relaxed", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  char *blob = malloc(3585);
  memset(blob, 'y', 3584);
  blob[3584] = 0;
  const int ttl = getenv("TT_SANITIZED") ? 20 : 3; /* sanitizer builds fill far more slowly */
  json_t *p = json_pack("{s:s, s:i, s:{s:s}}", "sub", "pia", "ttl", ttl, "data", "blob", blob);
  enum { MAX = 10000 };
  idset ids = idset_new(MAX);
  char msg[256] = "";
  int64_t t0 = start_of_next_second();
  int n = create_until_full(c, p, 1, &ids, 0, MAX, msg, sizeof(msg)); /* filled to the last page */
  TT_ASSERT_MSG(n > 10, "only %d creates before the cap", n);
  /* Full of live sessions: nothing expired (or was swept) while filling. */
  TT_ASSERT_MSG((int64_t)time(NULL) < t0 + ttl, "the fill outlasted the sessions' ttl");
  TT_EQ_INT(tc_stat(c, "swept"), 0);
  long long swept = 0, sessions = -1;
  for (int i = 0; i < (ttl + 30) * 10 && sessions != 0; i++) { /* needs about ttl + 0.1 s */
    sessions = tc_stat(c, "sessions");
    if (sessions != 0) nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
  swept = tc_stat(c, "swept");
  TT_ASSERT_MSG(sessions == 0, "%lld sessions left unswept at the cap (%lld swept)", sessions,
                swept);
  TT_ASSERT(swept >= n);
  TT_EQ_INT(tc_stat(c, "expiry_index"), 0);
  json_decref(create(c, json_pack("{s:s, s:{s:s}}", "sub", "pia", "data", "blob", blob)));
  json_decref(p);
  free(blob);
  idset_free(&ids);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- the CLI ---------------------------------------------------------------------------- */

/* Sids and handles are base64url: one in 64 starts with '-', so they follow "--" here (the CLI
 * would take such a word for an option). */
static void cli_session_commands(void) {
  td_daemon d;
  td_start(&d, NULL);
  char out[8192], err[4096];
  json_t *c1 =
      tc_cli_json(&d, (const char *const[]){"session", "create", "pat", "--ttl", "600", "--idle-ttl",
                                         "300", "--data", "{\"tier\":\"gold\"}", "--ip",
                                         "192.0.2.5", "--ua", "cli-test", NULL});
  const char *sid = tc_str(c1, "sid"), *handle = tc_str(c1, "handle");
  TT_ASSERT(tc_is_b64url(sid, SID_CHARS) && tc_is_b64url(handle, HANDLE_CHARS));
  long long in = tc_int(c1, "expires_in");
  TT_ASSERT(in >= 599 && in <= 600);
  TT_ASSERT(tc_int(c1, "idle_expires_at") <= tc_int(c1, "expires_at"));
  TT_ASSERT(strncmp(tc_str(c1, "cookie"), "__Host-sid=", 11) == 0);
  json_t *v = tc_cli_json(
      &d, (const char *const[]){"session", "validate", "--ua", "cli-test", "--", sid, NULL});
  TT_EQ_STR(tc_str(v, "sub"), "pat");
  TT_EQ_STR(tc_str(v, "handle"), handle);
  TT_EQ_STR(tc_str(json_object_get(v, "data"), "tier"), "gold");
  TT_EQ_INT(json_array_size(json_object_get(v, "anomalies")), 0);
  TT_ASSERT(json_is_integer(json_object_get(v, "created_at")));
  TT_ASSERT(json_is_integer(json_object_get(v, "expires_in")));
  json_decref(v);
  v = tc_cli_json(
      &d, (const char *const[]){"session", "validate", "--ua", "other-agent", "--", sid, NULL});
  TT_EQ_STR(json_string_value(json_array_get(json_object_get(v, "anomalies"), 0)), "ua_changed");
  json_decref(v);
  v = tc_cli_json(&d, (const char *const[]){"session", "list", "pat", NULL});
  json_t *arr = json_object_get(v, "sessions");
  TT_EQ_INT(json_array_size(arr), 1);
  TT_EQ_STR(tc_str(json_array_get(arr, 0), "handle"), handle);
  TT_EQ_STR(tc_str(json_object_get(json_array_get(arr, 0), "client"), "ip"), "192.0.2.5");
  char *text = json_dumps(v, JSON_COMPACT);
  TT_ASSERT(strstr(text, sid) == NULL && strstr(text, "\"sid\"") == NULL);
  free(text);
  json_decref(v);
  json_t *rot = tc_cli_json(&d, (const char *const[]){"session", "rotate", "--", sid, NULL});
  const char *sid2 = tc_str(rot, "sid");
  TT_ASSERT(strcmp(sid2, sid) != 0);
  TT_EQ_STR(tc_str(rot, "handle"), handle);
  /* The old sid: exit 1 and the error code on stderr. */
  int st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
               (const char *const[]){"session", "validate", "--", sid, NULL});
  TT_EQ_INT(st, 1);
  TT_ASSERT_MSG(strstr(err, "unauthenticated") != NULL, "stderr: %s", err);
  TT_EQ_STR(out, "");
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
           (const char *const[]){"session", "validate", "bogus", NULL});
  TT_EQ_INT(st, 1);
  TT_ASSERT_MSG(strstr(err, "unauthenticated") != NULL, "stderr: %s", err);
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
           (const char *const[]){"session", "rotate", "--", sid, NULL});
  TT_EQ_INT(st, 1);
  TT_ASSERT_MSG(strstr(err, "unauthenticated") != NULL, "stderr: %s", err);
  /* The daemon's bad_request reaches the user. */
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
           (const char *const[]){"session", "create", "pat", "--ttl", "0", NULL});
  TT_EQ_INT(st, 1);
  TT_ASSERT_MSG(strstr(err, "bad_request") != NULL && strstr(err, "ttl") != NULL, "stderr: %s",
                err);
  /* revoke by sid, revoke-all with --except, revoke by handle. */
  json_t *c2 = tc_cli_json(&d, (const char *const[]){"session", "create", "pat", NULL});
  json_t *c3 = tc_cli_json(&d, (const char *const[]){"session", "create", "pat", NULL});
  json_t *r = tc_cli_json(&d, (const char *const[]){"session", "revoke", "--", sid2, NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  r = tc_cli_json(&d, (const char *const[]){"session", "revoke", "--", sid2, NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 0);
  json_decref(r);
  r = tc_cli_json(&d, (const char *const[]){"session", "revoke-all", "pat", "--except",
                                         tc_str(c3, "handle"), NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
           (const char *const[]){"session", "validate", "--", tc_str(c2, "sid"), NULL});
  TT_EQ_INT(st, 1);
  v = tc_cli_json(&d, (const char *const[]){"session", "validate", "--", tc_str(c3, "sid"), NULL});
  json_decref(v);
  r = tc_cli_json(&d,
               (const char *const[]){"session", "revoke", "--handle", tc_str(c3, "handle"), NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  r = tc_cli_json(&d, (const char *const[]){"session", "revoke-all", "pat", NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 0);
  json_decref(r);
  v = tc_cli_json(&d, (const char *const[]){"session", "list", "pat", NULL});
  TT_EQ_INT(json_array_size(json_object_get(v, "sessions")), 0);
  json_decref(v);
  /* Usage errors are the CLI's own (exit 2), never sent. */
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
           (const char *const[]){"session", "revoke", "--handle", "x", "--", sid2, NULL});
  TT_EQ_INT(st, 2);
  json_decref(c1);
  json_decref(rot);
  json_decref(c2);
  json_decref(c3);
  tc_stop_clean(&d);
}

/* One page of session.list; returns the handles (appended to seen, counted in *n_seen) and the
 * `next` cursor (malloc'd, or NULL on the last page). */
static char *list_page(tessera_client *c, const char *sub, int limit, const char *after,
                       char (*seen)[HANDLE_CHARS + 1], int *n_seen, int cap, size_t *page_size) {
  json_t *p = json_pack("{s:s}", "sub", sub);
  if (limit) json_object_set_new(p, "limit", json_integer(limit));
  if (after) json_object_set_new(p, "after", json_string(after));
  json_t *l = tc_call_ok(c, "session.list", p);
  json_t *arr = json_object_get(l, "sessions");
  *page_size = json_array_size(arr);
  for (size_t k = 0; k < json_array_size(arr); k++) {
    TT_ASSERT(*n_seen < cap);
    snprintf(seen[(*n_seen)++], HANDLE_CHARS + 1, "%s", tc_str(json_array_get(arr, k), "handle"));
  }
  json_t *next = json_object_get(l, "next");
  char *ret = next ? strdup(json_string_value(next)) : NULL;
  TT_ASSERT(!next || (ret && strlen(ret) > 0));
  json_decref(l);
  return ret;
}

/* session.list was unbounded: it is paged now (limit, default 100, at most 1000; an opaque
 * `after` cursor; `next` while more remain). Walking the pages lists every live session once. */
static void list_is_paged(void) {
  static const char *const args[] = {"--durability", "relaxed", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  enum { N = 107 };
  idset ids = idset_new(N);
  json_t *params = json_pack("{s:s}", "sub", "pam");
  create_many(c, params, N, keep_ids, &ids);
  json_decref(params);
  TT_EQ_INT(revoke_n(c, "handle", ids.handle[5]), 1); /* a dead one is never listed */
  json_t *foreign = create_sub(c, "pamela");
  static char seen[2 * N][HANDLE_CHARS + 1];
  int n_seen = 0;
  size_t size;
  /* The default page is 100. */
  char *next = list_page(c, "pam", 0, NULL, seen, &n_seen, 2 * N, &size);
  TT_EQ_INT(size, 100);
  TT_ASSERT(next != NULL);
  char *last = list_page(c, "pam", 0, next, seen, &n_seen, 2 * N, &size);
  TT_EQ_INT(size, N - 1 - 100);
  TT_ASSERT(last == NULL);
  free(next);
  /* Pages of 10 see the same sessions, each once. */
  int n_small = 0, pages = 0;
  static char small[2 * N][HANDLE_CHARS + 1];
  char *cur = NULL;
  do {
    char *nx = list_page(c, "pam", 10, cur, small, &n_small, 2 * N, &size);
    TT_ASSERT(size <= 10);
    TT_ASSERT_MSG(size == 10 || nx == NULL, "a short page (%zu) with a next", size);
    free(cur);
    cur = nx;
    TT_ASSERT(++pages <= 20);
  } while (cur);
  TT_EQ_INT(n_small, N - 1);
  TT_EQ_INT(pages, (N - 1 + 9) / 10);
  qsort(seen, (size_t)n_seen, HANDLE_CHARS + 1, cmp_str);
  qsort(small, (size_t)n_small, HANDLE_CHARS + 1, cmp_str);
  TT_EQ_INT(n_seen, N - 1);
  for (int i = 0; i < n_seen; i++) {
    TT_EQ_STR(seen[i], small[i]);
    if (i) TT_ASSERT_MSG(strcmp(seen[i - 1], seen[i]) != 0, "%s listed twice", seen[i]);
    TT_ASSERT(strcmp(seen[i], ids.handle[5]) != 0);
    TT_ASSERT(strcmp(seen[i], tc_str(foreign, "handle")) != 0);
  }
  /* limit 1000 is fine, anything else out of range or not a cursor is bad_request. */
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s, s:i}", "sub", "pam", "limit", 1000));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), N - 1);
  TT_ASSERT(json_object_get(l, "next") == NULL);
  json_decref(l);
  tc_expect_error(c, "session.list", json_pack("{s:s, s:i}", "sub", "pam", "limit", 1001),
               "bad_request", "limit");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:i}", "sub", "pam", "limit", -1),
               "bad_request", "limit");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:s}", "sub", "pam", "limit", "5"),
               "bad_request", "limit");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:s}", "sub", "pam", "after", "garbage"),
               "bad_request", "after");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:i}", "sub", "pam", "after", 3),
               "bad_request", "after");
  /* The CLI pages too. */
  json_t *p1 = tc_cli_json(&d, (const char *const[]){"session", "list", "pam", "--limit", "2", NULL});
  TT_EQ_INT(json_array_size(json_object_get(p1, "sessions")), 2);
  const char *cursor = tc_str(p1, "next");
  json_t *p2 = tc_cli_json(&d, (const char *const[]){"session", "list", "--limit", "2", "--after",
                                                  cursor, "--", "pam", NULL});
  TT_EQ_INT(json_array_size(json_object_get(p2, "sessions")), 2);
  for (size_t i = 0; i < 2; i++) /* the second page goes on where the first stopped */
    for (size_t j = 0; j < 2; j++)
      TT_ASSERT(strcmp(tc_str(json_array_get(json_object_get(p1, "sessions"), i), "handle"),
                       tc_str(json_array_get(json_object_get(p2, "sessions"), j), "handle")) != 0);
  json_decref(p2);
  json_decref(p1);
  json_decref(foreign);
  idset_free(&ids);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(create_reply_shape),
    TT_CASE(create_follows_configuration),
    TT_CASE(create_rejects_bad_params),
    TT_CASE(create_1000_distinct),
    TT_CASE(data_file_holds_no_sid),
    TT_CASE(validate_returns_the_session),
    TT_CASE(bind_policy_enforce_drops_on_ua_change),
    TT_CASE(bind_policy_missing_ua_counts_as_changed),
    TT_CASE(validate_refuses_unknown_and_malformed_sids),
    TT_CASE(expiry_enforced_before_the_sweeper_runs),
    TT_CASE(idle_timeout_slides_with_use),
    TT_CASE(rotate_replaces_the_sid),
    TT_CASE(revoke_by_sid_and_by_handle),
    TT_CASE(list_shows_live_sessions_never_sids),
    TT_CASE(list_when_reads_fail_is_unavailable),
    TT_CASE(list_is_paged),
    TT_CASE(revoke_all_with_and_without_except),
    TT_CASE(revoke_all_of_a_sub_with_many_sessions),
    TT_CASE(sessions_survive_sigterm_restart),
    TT_CASE(sessions_survive_kill9_after_ack),
    TT_CASE(sweeper_deletes_100k_expired),
    TT_CASE(validate_answers_during_bulk_creates),
    TT_CASE(store_cap_answers_unavailable),
    TT_CASE(store_cap_heals_by_sweeping),
    TT_CASE(cli_session_commands),
};
TT_MAIN(cases)
