/* tests/integration/test_sessions.c: single sessions against the real daemon (PROTOCOL.md
 * "sessions", "Limits", "Errors", "Conventions"): reply shapes, params checking, validation
 * and anomalies (bind policy), expiry enforced before any sweep, idle sliding, rotation,
 * revocation by sid and by handle across connections, the session cache dropping every
 * revoked session, durability across SIGTERM and kill -9.
 * Listing, revoke_all, the sweeper, bulk and the store cap: test_session_list.c; the CLI:
 * test_cli.c.
 *
 * Waiting: replies are the signal. The only waits on the clock are where the wall clock is the
 * thing under test (expiry): they poll the wall clock until it passes the instant the daemon
 * named (expires_at / idle_expires_at), never longer. A touch (the write a validate queues to
 * slide the idle timeout) is not waited for by the daemon either; a later write's reply on the
 * same connection proves it committed (the writer applies in submission order). */
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

/* A 43-char sid whose last char is not canonical: same 32 bytes, different text. */
static void non_canonical(const char *sid, char out[TC_SID_CHARS + 1]) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  memcpy(out, sid, TC_SID_CHARS + 1);
  const char *p = strchr(alphabet, sid[TC_SID_CHARS - 1]);
  TT_ASSERT(p != NULL && ((p - alphabet) & 3) == 0); /* canonical: the unused 2 bits are zero */
  out[TC_SID_CHARS - 1] = alphabet[(p - alphabet) | 1];
}

static void random_sid(char out[TC_SID_CHARS + 1]) {
  uint8_t raw[32];
  randombytes_buf(raw, sizeof(raw));
  sodium_bin2base64(out, TC_SID_CHARS + 1, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
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
  json_t *r = tc_create_sub(c, "alice");
  int64_t after = (int64_t)time(NULL);
  TT_EQ_INT(json_object_size(r), 6);
  const char *sid = tc_str(r, "sid");
  TT_ASSERT_MSG(tc_is_b64url(sid, TC_SID_CHARS), "sid '%s' is not 43 chars of base64url", sid);
  const char *handle = tc_str(r, "handle");
  TT_ASSERT_MSG(tc_is_b64url(handle, TC_HANDLE_CHARS), "handle '%s'", handle);
  TT_ASSERT(strstr(sid, handle) == NULL);
  long long exp = tc_int(r, "expires_at"), in = tc_int(r, "expires_in");
  long long idle = tc_int(r, "idle_expires_at");
  /* The defaults: 8 h absolute, 30 min idle. */
  TT_ASSERT_MSG(exp >= before + 28800 && exp <= after + 28800, "expires_at %lld", exp);
  /* expires_in counts from the reply, which may come seconds later on a slow machine. */
  TT_ASSERT_MSG(in >= exp - after && in <= exp - before, "expires_in %lld", in);
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
  json_t *r = tc_create_sub(c, "bob");
  int64_t after = (int64_t)time(NULL);
  long long exp = tc_int(r, "expires_at"), in = tc_int(r, "expires_in");
  long long idle = tc_int(r, "idle_expires_at");
  TT_ASSERT_MSG(exp >= before + 600 && exp <= after + 600, "expires_at %lld", exp);
  TT_ASSERT_MSG(in >= exp - after && in <= exp - before, "expires_in %lld", in);
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
  r = tc_create(c, json_pack("{s:s, s:i, s:i}", "sub", "bob", "ttl", 100, "idle_ttl", 500));
  after = (int64_t)time(NULL);
  exp = tc_int(r, "expires_at");
  TT_ASSERT(exp >= before + 100 && exp <= after + 100);
  TT_EQ_INT(tc_int(r, "idle_expires_at"), exp);
  const char *ma = strstr(tc_str(r, "cookie"), "; Max-Age=");
  TT_ASSERT(ma != NULL);
  long max_age = strtol(ma + 10, NULL, 10); /* 100, less the seconds the commit took */
  TT_ASSERT_MSG(max_age >= 95 && max_age <= 100, "Max-Age=%ld", max_age);
  json_decref(r);
  r = tc_create(c, json_pack("{s:s, s:i}", "sub", "bob", "idle_ttl", 5));
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
  /* On its own connection, which must stay usable (tw_call_raw checks with a sys.ping). */
  tw_call_raw(d->socket, "session.create", 14, sb.data, sb.size, code, cap);
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
  json_decref(tc_create(c, json_pack("{s:s, s:i, s:i}", "sub", "a", "ttl", 3600, "idle_ttl", 3600)));
  json_t *one = tc_create(c, json_pack("{s:s, s:i, s:i}", "sub", "a", "ttl", 1, "idle_ttl", 1));
  long long one_second_expires_at = tc_int(one, "expires_at");
  json_decref(one);
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
  json_decref(tc_create_sub(c, sub));
  sub[256] = 'x';
  sub[257] = 0;
  tc_expect_error(c, m, json_pack("{s:s}", "sub", sub), "bad_request", "sub");
  tc_expect_error(c, m, json_pack("{s:s}", "sub", ""), "bad_request", "sub");
  tc_expect_error(c, m, json_pack("{}"), "bad_request", "sub");
  tc_expect_error(c, m, NULL, "bad_request", "sub");
  tc_expect_error(c, m, json_pack("{s:i}", "sub", 5), "bad_request", "sub");
  json_decref(tc_create_sub(c, "\xc3\xa9l\xc3\xa8ve \xe2\x9c\x93")); /* valid multi-byte UTF-8 */
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
  json_t *r = tc_create(c, json_pack("{s:s, s:{s:s}}", "sub", "a", "data", "blob", big));
  json_t *v = NULL;
  TT_EQ_STR(tc_validate(c, tc_str(r, "sid"), NULL, &v), "");
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
  /* Nothing of the refused requests was stored. The 1-second session is not counted once
   * the wall clock reaches its expires_at (whole seconds: that can be a moment after it was
   * made). */
  long long n = tc_stat(c, "sessions");
  TT_ASSERT_MSG(n == 5 || (n == 4 && (long long)time(NULL) >= one_second_expires_at),
                "sessions: %lld", n);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void create_1000_distinct(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 1000 };
  tc_idset ids = tc_idset_new(N);
  json_t *p = json_pack("{s:s}", "sub", "many");
  tc_create_many(c, p, N, tc_keep_ids, &ids);
  json_decref(p);
  for (int i = 0; i < N; i++) {
    TT_ASSERT(tc_is_b64url(ids.sid[i], TC_SID_CHARS));
    TT_ASSERT(tc_is_b64url(ids.handle[i], TC_HANDLE_CHARS));
  }
  qsort(ids.sid, N, TC_SID_CHARS + 1, tc_cmp_str);
  qsort(ids.handle, N, TC_HANDLE_CHARS + 1, tc_cmp_str);
  for (int i = 1; i < N; i++) {
    TT_ASSERT_MSG(strcmp(ids.sid[i - 1], ids.sid[i]) != 0, "duplicate sid");
    TT_ASSERT_MSG(strcmp(ids.handle[i - 1], ids.handle[i]) != 0, "duplicate handle");
  }
  TT_EQ_INT(tc_stat(c, "sessions"), N);
  TT_EQ_INT(tc_count_listed(c, "many"), N);
  tc_idset_free(&ids);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Neither the sid nor its 32 raw bytes ever reach the data file (or the log). */
static void data_file_holds_no_sid(void) {
  if (tr_env_redis()) tt_skip("LMDB's data file");
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 300, ROTATED = 50 };
  tc_idset ids = tc_idset_new(N + ROTATED);
  json_t *p = json_pack("{s:s, s:{s:s}, s:{s:s, s:s}}", "sub", "needle-sub-7f3a", "data", "k",
                        "needle-data-91c2", "client", "ip", "192.0.2.1", "ua", "curl");
  tc_create_many(c, p, N, tc_keep_ids, &ids);
  json_decref(p);
  /* Rotations write a new record under a new sid; touches rewrite records. */
  for (int i = 0; i < ROTATED; i++) {
    json_t *r = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", ids.sid[i]));
    snprintf(ids.sid[N + i], TC_SID_CHARS + 1, "%s", tc_str(r, "sid"));
    snprintf(ids.handle[N + i], TC_HANDLE_CHARS + 1, "%s", tc_str(r, "handle"));
    json_decref(r);
  }
  for (int i = N + ROTATED - 1; i >= ROTATED; i -= 7) tc_expect_valid(c, ids.sid[i]);
  TT_EQ_INT(tc_revoke_n(c, "sid", ids.sid[N + 1]), 1);
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
    TT_ASSERT_MSG(!holds(file, len, ids.sid[i], TC_SID_CHARS), "sid %d is in data.mdb", i);
    TT_ASSERT_MSG(!holds(log, log_len, ids.sid[i], TC_SID_CHARS), "sid %d is in the log", i);
    uint8_t raw[32], hraw[16];
    size_t n = 0;
    TT_ASSERT(sodium_base642bin(raw, sizeof(raw), ids.sid[i], TC_SID_CHARS, NULL, &n, NULL,
                                sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
              n == 32);
    TT_ASSERT_MSG(!holds(file, len, raw, sizeof(raw)), "raw sid %d is in data.mdb", i);
    TT_ASSERT(sodium_base642bin(hraw, sizeof(hraw), ids.handle[i], TC_HANDLE_CHARS, NULL, &n, NULL,
                                sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
              n == 16);
    handles_found += holds(file, len, hraw, sizeof(hraw));
  }
  TT_ASSERT_MSG(handles_found >= N - 1, "only %d handles found in data.mdb", handles_found);
  free(log);
  free(file);
  tc_idset_free(&ids);
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
  json_t *r = tc_create(c, json_pack("{s:s, s:O, s:{s:s, s:s}}", "sub", "dana", "data", data, "client",
                                     "ip", "203.0.113.9", "ua", "Firefox/128"));
  int64_t after = (int64_t)time(NULL);
  const char *sid = tc_str(r, "sid");
  json_t *v = NULL;
  TT_EQ_STR(tc_validate(c, sid, json_pack("{s:s, s:s}", "ip", "203.0.113.9", "ua", "Firefox/128"), &v),
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
    TT_EQ_STR(tc_validate(c, sid, i == 0 ? (json_decref(cl), NULL) : cl, &v), "");
    json_t *want = json_loads(cases[i].want, 0, NULL);
    char *got = json_dumps(json_object_get(v, "anomalies"), JSON_COMPACT);
    TT_ASSERT_MSG(json_equal(json_object_get(v, "anomalies"), want),
                  "case %zu: anomalies %s, want %s", i, got, cases[i].want);
    free(got);
    json_decref(want);
    json_decref(v);
  }
  /* Flags never revoke in report mode. */
  tc_expect_valid(c, sid);
  /* A session created without client info has nothing to compare against. */
  json_t *r2 = tc_create_sub(c, "dana");
  TT_EQ_STR(tc_validate(c, tc_str(r2, "sid"), json_pack("{s:s, s:s}", "ip", "1.1.1.1", "ua", "x"), &v),
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
  json_t *r = tc_create(c, json_pack("{s:s, s:{s:s, s:s}}", "sub", "eve", "client", "ip", "10.1.1.1",
                                     "ua", "Safari/17"));
  const char *sid = tc_str(r, "sid");
  json_t *v = NULL;
  /* An ip change is still only reported. */
  TT_EQ_STR(tc_validate(c, sid, json_pack("{s:s, s:s}", "ip", "10.9.9.9", "ua", "Safari/17"), &v), "");
  TT_EQ_INT(json_array_size(json_object_get(v, "anomalies")), 1);
  TT_EQ_STR(json_string_value(json_array_get(json_object_get(v, "anomalies"), 0)), "ip_changed");
  json_decref(v);
  /* A ua change is refused and kills the session, for everybody. */
  TT_EQ_STR(tc_validate(c, sid, json_pack("{s:s}", "ua", "python-requests/2.31"), NULL),
            "unauthenticated");
  TT_EQ_STR(
      tc_validate(other, sid, json_pack("{s:s, s:s}", "ip", "10.1.1.1", "ua", "Safari/17"), NULL),
      "unauthenticated");
  tc_expect_unauthenticated(c, sid);
  json_t *l = tc_call_ok(other, "session.list", json_pack("{s:s}", "sub", "eve"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 0);
  json_decref(l);
  TT_EQ_INT(tc_revoke_n(c, "handle", tc_str(r, "handle")), 0);
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
  const char *code = tc_validate(c, sid, client, &v);
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

/* --bind-policy enforce could be bypassed by leaving client.ua out at tc_validate (and an empty
 * ua was refused as bad_request, so apps left it out). A session bound to a user agent now
 * treats a missing or empty one as changed: under enforce the session is revoked and the
 * answer is unauthenticated; under report it is reported as ua_changed. */
static void bind_policy_missing_ua_counts_as_changed(void) {
  char buf[128];
  /* report (the default): reported, the session lives on. */
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *r = tc_create(c, json_pack("{s:s, s:{s:s}}", "sub", "uma", "client", "ua", "Safari/17"));
  const char *sid = tc_str(r, "sid");
  TT_EQ_STR(anomalies_of(c, sid, json_pack("{s:s}", "ua", "Safari/17"), buf, sizeof(buf)), "");
  TT_EQ_STR(anomalies_of(c, sid, NULL, buf, sizeof(buf)), "ua_changed");
  TT_EQ_STR(anomalies_of(c, sid, json_pack("{}"), buf, sizeof(buf)), "ua_changed");
  TT_EQ_STR(anomalies_of(c, sid, json_pack("{s:s}", "ua", ""), buf, sizeof(buf)), "ua_changed");
  TT_EQ_STR(anomalies_of(c, sid, json_pack("{s:s}", "ip", "10.0.0.1"), buf, sizeof(buf)),
            "ua_changed");
  /* Without a ua bound at tc_create (none, or ""), nothing is reported. */
  json_t *nb = tc_create(c, json_pack("{s:s, s:{s:s}}", "sub", "uma", "client", "ua", ""));
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
    r = tc_create(c, json_pack("{s:s, s:{s:s}}", "sub", "uma", "client", "ua", "Safari/17"));
    sid = tc_str(r, "sid");
    TT_EQ_STR(anomalies_of(c, sid, json_pack("{s:s}", "ua", "Safari/17"), buf, sizeof(buf)), "");
    json_t *cl = how == 0 ? NULL : how == 1 ? json_pack("{s:s}", "ua", "")
                                            : json_pack("{s:s}", "ip", "10.0.0.1");
    TT_EQ_STR(tc_validate(c, sid, cl, NULL), "unauthenticated");
    /* Dead for everybody, also with the right ua. */
    TT_EQ_STR(tc_validate(c, sid, json_pack("{s:s}", "ua", "Safari/17"), NULL), "unauthenticated");
    json_decref(r);
  }
  l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "uma"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 0);
  json_decref(l);
  /* A session bound to no ua is not affected by enforce. */
  r = tc_create_sub(c, "uma");
  tc_expect_valid(c, tc_str(r, "sid"));
  TT_EQ_STR(anomalies_of(c, tc_str(r, "sid"), json_pack("{s:s}", "ua", ""), buf, sizeof(buf)), "");
  json_decref(r);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void validate_refuses_unknown_and_malformed_sids(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *r = tc_create_sub(c, "frank");
  const char *sid = tc_str(r, "sid");
  char unknown[TC_SID_CHARS + 1], nc[TC_SID_CHARS + 1], buf[128];
  random_sid(unknown);
  tc_expect_unauthenticated(c, unknown);
  non_canonical(sid, nc);
  tc_expect_unauthenticated(c, nc); /* decodes to the live session's bytes, but is not its sid */
  tc_expect_unauthenticated(c, "abc");
  tc_expect_unauthenticated(c, "not a session id at all, but 43 characters");
  snprintf(buf, sizeof(buf), "%s=", sid); /* padded */
  tc_expect_unauthenticated(c, buf);
  snprintf(buf, sizeof(buf), "%.42s", sid); /* truncated */
  tc_expect_unauthenticated(c, buf);
  snprintf(buf, sizeof(buf), "%sA", sid); /* one char too many */
  tc_expect_unauthenticated(c, buf);
  snprintf(buf, sizeof(buf), "%s", sid);
  buf[5] = '+'; /* standard base64, not base64url */
  tc_expect_unauthenticated(c, buf);
  buf[5] = '/';
  tc_expect_unauthenticated(c, buf);
  snprintf(buf, sizeof(buf), " %.42s", sid);
  tc_expect_unauthenticated(c, buf);
  snprintf(buf, sizeof(buf), "%s", tc_str(r, "handle")); /* a handle is not a sid */
  tc_expect_unauthenticated(c, buf);
  char cookie[256]; /* the whole cookie is not a sid either */
  snprintf(cookie, sizeof(cookie), "__Host-sid=%s", sid);
  tc_expect_unauthenticated(c, cookie);
  tc_expect_error(c, "session.validate", json_pack("{s:i}", "sid", 42), "bad_request", "sid");
  /* The real one still works, and every failure above counted as unauthenticated. */
  tc_expect_valid(c, sid);
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
  json_t *keep = tc_create_sub(c, "gina");
  int64_t t0 = tc_start_of_next_second();
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
  const char *code_a = tc_validate(c, tc_str(a, "sid"), NULL, NULL);
  if (tc_before_second(exp_a)) TT_EQ_STR(code_a, "");
  const char *code_b = tc_validate(c, tc_str(b, "sid"), NULL, NULL);
  if (tc_before_second(idle_b)) TT_EQ_STR(code_b, "");
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "gina"));
  if (tc_before_second(exp_a < idle_b ? exp_a : idle_b))
    TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 3);
  json_decref(l);
  /* The second they expire in comes; the sweeper has not run since the daemon started. */
  tc_wait_wall_until(exp_a > idle_b ? exp_a : idle_b);
  tc_expect_unauthenticated(c, tc_str(a, "sid"));
  tc_expect_unauthenticated(c, tc_str(b, "sid"));
  tc_expect_valid(c, tc_str(keep, "sid"));
  l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "gina"));
  json_t *ss = json_object_get(l, "sessions");
  TT_EQ_INT(json_array_size(ss), 1);
  TT_EQ_STR(tc_str(json_array_get(ss, 0), "handle"), tc_str(keep, "handle"));
  json_decref(l);
  tc_expect_error(c, "session.rotate", json_pack("{s:s}", "sid", tc_str(a, "sid")), "unauthenticated",
                  NULL);
  /* Still stored (nothing swept): validate itself refused them. */
  if (!tr_env_redis()) { /* LMDB: the records stay until swept; Redis expires them itself */
    TT_EQ_INT(tc_stat(c, "swept"), 0);
    TT_EQ_INT(tc_stat(c, "sessions"), 3);
  }
  /* Revoking an expired session revokes nothing (it was already dead) but removes it. */
  TT_EQ_INT(tc_revoke_n(c, "handle", tc_str(b, "handle")), 0);
  TT_EQ_INT(tc_revoke_n(c, "sid", tc_str(a, "sid")), 0);
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
  int64_t start = tc_start_of_next_second();
  json_t *r = tc_create(c, json_pack("{s:s, s:i}", "sub", "hal", "idle_ttl", 3));
  const char *sid = tc_str(r, "sid");
  int64_t t0 = tc_int(r, "idle_expires_at") - 3; /* the second the daemon created it in */
  TT_ASSERT(t0 >= start && t0 <= (int64_t)time(NULL));
  long long last = t0;
  for (int k = 1; k <= 5; k++) { /* one validate a second: 5 s > the 3 s idle timeout */
    tc_wait_wall_until(t0 + k);
    json_t *v = NULL;
    TT_EQ_STR(tc_validate(c, sid, NULL, &v), "");
    long long idle = tc_int(v, "idle_expires_at");
    long long now = (long long)time(NULL);
    TT_ASSERT_MSG(idle >= t0 + k + 3 && idle <= now + 3,
                  "validate %d: idle_expires_at %lld (t0 %lld)", k, idle, (long long)t0);
    last = idle - 3;
    json_decref(v);
  }
  /* The touch is a write queued behind nothing we wait for; a create on the same connection is
   * queued after it, so its reply means the touch is committed. */
  json_decref(tc_create_sub(c, "other"));
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "hal"));
  json_t *s = json_array_get(json_object_get(l, "sessions"), 0);
  TT_EQ_INT(tc_int(s, "created_at"), t0);
  TT_EQ_INT(tc_int(s, "last_seen_at"), last);
  TT_EQ_INT(tc_int(s, "idle_expires_at"), last + 3);
  json_decref(l);
  /* Left alone, it dies when the idle window ends. */
  tc_wait_wall_until(last + 3);
  tc_expect_unauthenticated(c, sid);
  json_decref(r);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- rotate ----------------------------------------------------------------------------- */

static void rotate_replaces_the_sid(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *other = tc_client(&d);
  json_t *r = tc_create(c, json_pack("{s:s, s:i, s:{s:s}, s:{s:s}}", "sub", "ivan", "ttl", 3000,
                                     "data", "cart", "3 items", "client", "ua", "Edge"));
  const char *old = tc_str(r, "sid");
  tc_expect_valid(other, old);
  /* In a later second than the create, so the rotation moves the idle expiry (and LMDB's
   * expiry index entry with it: the old entry must go, not linger beside the new one). */
  tc_wait_wall_until((int64_t)time(NULL) + 1);
  json_t *n = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", old));
  TT_ASSERT(tc_int(n, "idle_expires_at") > tc_int(r, "idle_expires_at"));
  if (!tr_env_redis()) TT_EQ_INT(tc_stat(c, "expiry_index"), 1); /* LMDB's own index */
  TT_EQ_INT(json_object_size(n), 6);
  const char *sid = tc_str(n, "sid");
  TT_ASSERT(tc_is_b64url(sid, TC_SID_CHARS));
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
  tc_expect_unauthenticated(other, old);
  tc_expect_unauthenticated(c, old);
  json_t *v = NULL;
  TT_EQ_STR(tc_validate(other, sid, json_pack("{s:s}", "ua", "Edge"), &v), "");
  TT_EQ_STR(tc_str(v, "sub"), "ivan");
  TT_EQ_STR(tc_str(v, "handle"), tc_str(r, "handle"));
  TT_EQ_STR(tc_str(json_object_get(v, "data"), "cart"), "3 items");
  TT_EQ_INT(json_array_size(json_object_get(v, "anomalies")), 0); /* the client info moved too */
  json_decref(v);
  tc_expect_error(c, "session.rotate", json_pack("{s:s}", "sid", old), "unauthenticated", NULL);
  char unknown[TC_SID_CHARS + 1];
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
  tc_expect_unauthenticated(c, sid);
  tc_expect_valid(c, tc_str(winner, "sid"));
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "ivan"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 1);
  json_decref(l);
  TT_EQ_INT(tc_stat(c, "sessions"), 1);
  if (!tr_env_redis()) TT_EQ_INT(tc_stat(c, "expiry_index"), 1); /* LMDB's own index */
  /* The handle still names it. */
  TT_EQ_INT(tc_revoke_n(c, "handle", tc_str(r, "handle")), 1);
  tc_expect_unauthenticated(c, tc_str(winner, "sid"));
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
  json_t *s1 = tc_create_sub(a, "judy"), *s2 = tc_create_sub(a, "judy"), *s3 = tc_create_sub(a, "judy");
  tc_expect_valid(b, tc_str(s1, "sid"));
  tc_expect_valid(b, tc_str(s2, "sid"));
  /* Revoked on one connection, refused on another at once. */
  TT_EQ_INT(tc_revoke_n(a, "sid", tc_str(s1, "sid")), 1);
  tc_expect_unauthenticated(b, tc_str(s1, "sid"));
  TT_EQ_INT(tc_revoke_n(a, "sid", tc_str(s1, "sid")), 0);
  TT_EQ_INT(tc_revoke_n(a, "handle", tc_str(s1, "handle")), 0);
  TT_EQ_INT(tc_revoke_n(b, "handle", tc_str(s2, "handle")), 1);
  tc_expect_unauthenticated(a, tc_str(s2, "sid"));
  TT_EQ_INT(tc_revoke_n(b, "handle", tc_str(s2, "handle")), 0);
  TT_EQ_INT(tc_revoke_n(b, "sid", tc_str(s2, "sid")), 0);
  /* Exactly one of sid and handle. */
  tc_expect_error(a, "session.revoke",
                  json_pack("{s:s, s:s}", "sid", tc_str(s3, "sid"), "handle", tc_str(s3, "handle")),
               "bad_request", NULL);
  tc_expect_error(a, "session.revoke", json_pack("{}"), "bad_request", NULL);
  tc_expect_error(a, "session.revoke", NULL, "bad_request", NULL);
  tc_expect_error(a, "session.revoke", json_pack("{s:s, s:s}", "sid", tc_str(s3, "sid"), "who", "x"),
                  "bad_request", "who");
  /* Garbage revokes nothing, without an error. */
  char unknown[TC_SID_CHARS + 1], nc[TC_SID_CHARS + 1];
  random_sid(unknown);
  non_canonical(tc_str(s3, "sid"), nc);
  TT_EQ_INT(tc_revoke_n(a, "sid", "garbage"), 0);
  TT_EQ_INT(tc_revoke_n(a, "sid", unknown), 0);
  TT_EQ_INT(tc_revoke_n(a, "sid", nc), 0);
  TT_EQ_INT(tc_revoke_n(a, "handle", "garbage"), 0);
  TT_EQ_INT(tc_revoke_n(a, "handle", "AAAAAAAAAAAAAAAAAAAAAA"), 0);
  TT_EQ_INT(tc_revoke_n(a, "handle", tc_str(s3, "sid")), 0);
  tc_expect_valid(b, tc_str(s3, "sid"));
  TT_EQ_INT(tc_stat(a, "sessions"), 1);
  if (!tr_env_redis()) TT_EQ_INT(tc_stat(a, "expiry_index"), 1); /* LMDB's own index */
  json_decref(s1);
  json_decref(s2);
  json_decref(s3);
  tessera_close(a);
  tessera_close(b);
  tc_stop_clean(&d);
}

/* ---- the session cache (--session-cache) -------------------------------------------------- */

/* Each revocation path kills a session that validate has just answered from the cache: the
 * first validate fills it, the second is a hit (the hit counter moves), and the validate after
 * the revocation's reply is refused. Rounds with the paths interleaved, sessions of one sub
 * and of several, so a forget that misses a slot or a flush that comes late shows. */
static void cached_sessions_die_with_every_revocation(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *a = tc_client(&d), *b = tc_client(&d);
  const char *hits = tr_env_redis() ? "redis_cache_hits" : "session_cache_hits";
  enum { BY_SID, BY_HANDLE, REVOKE_ALL, USER_REVOKE, ROTATE, PATHS };
  const int rounds = getenv("TT_SANITIZED") ? 8 : 40;
  for (int round = 0; round < rounds; round++) {
    for (int path = 0; path < PATHS; path++) {
      char sub[32];
      snprintf(sub, sizeof(sub), "cache-%d-%d", round, path);
      json_t *s = tc_create_sub(a, sub), *other = tc_create_sub(a, sub);
      long long before = tc_stat(b, hits);
      tc_expect_valid(b, tc_str(s, "sid"));
      tc_expect_valid(b, tc_str(s, "sid"));
      tc_expect_valid(b, tc_str(other, "sid"));
      tc_expect_valid(b, tc_str(other, "sid"));
      TT_ASSERT_MSG(tc_stat(b, hits) >= before + 2,
                    "round %d path %d: validate never hit the cache", round, path);
      json_t *r = NULL;
      switch (path) {
      case BY_SID: TT_EQ_INT(tc_revoke_n(a, "sid", tc_str(s, "sid")), 1); break;
      case BY_HANDLE: TT_EQ_INT(tc_revoke_n(a, "handle", tc_str(s, "handle")), 1); break;
      case REVOKE_ALL:
        r = tc_call_ok(a, "session.revoke_all", json_pack("{s:s}", "sub", sub));
        TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), 2);
        break;
      case USER_REVOKE:
        r = tc_call_ok(a, "user.revoke", json_pack("{s:s}", "sub", sub));
        break;
      case ROTATE: {
        r = tc_call_ok(a, "session.rotate", json_pack("{s:s}", "sid", tc_str(s, "sid")));
        tc_expect_valid(b, tc_str(r, "sid"));
        break;
      }
      }
      tc_expect_unauthenticated(b, tc_str(s, "sid"));
      if (path == REVOKE_ALL || path == USER_REVOKE)
        tc_expect_unauthenticated(b, tc_str(other, "sid"));
      else
        tc_expect_valid(b, tc_str(other, "sid")); /* its neighbour in the cache lives on */
      json_decref(r);
      json_decref(other);
      json_decref(s);
    }
  }
  tessera_close(a);
  tessera_close(b);
  tc_stop_clean(&d);
}

/* revoke_all and user.revoke of a sub with more sessions than the cache forgets one by one
 * (1,024: past that it flushes): every cached one is refused after the reply. */
static void revoking_many_cached_sessions(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 1100, CHECKED = 50 };
  for (int path = 0; path < 2; path++) {
    const char *sub = path ? "many-user" : "many-all";
    tc_idset ids = tc_idset_new(N);
    json_t *params = json_pack("{s:s}", "sub", sub);
    tc_create_many(c, params, N, tc_keep_ids, &ids);
    json_decref(params);
    for (int i = 0; i < CHECKED; i++) { /* the first validate fills, the second hits */
      tc_expect_valid(c, ids.sid[i * (N / CHECKED)]);
      tc_expect_valid(c, ids.sid[i * (N / CHECKED)]);
    }
    json_t *r = tc_call_ok(c, path ? "user.revoke" : "session.revoke_all",
                           json_pack("{s:s}", "sub", sub));
    TT_EQ_INT(json_integer_value(json_object_get(r, path ? "sessions" : "revoked")), N);
    json_decref(r);
    for (int i = 0; i < CHECKED; i++) tc_expect_unauthenticated(c, ids.sid[i * (N / CHECKED)]);
    tc_idset_free(&ids);
  }
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A record over the cache's 1 KiB (here 2,000 bytes of data) is never cached: each validate
 * reads the store, and answers the whole record. */
static void large_sessions_are_not_cached(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  const char *hits = tr_env_redis() ? "redis_cache_hits" : "session_cache_hits";
  char blob[2001];
  memset(blob, 'b', 2000);
  blob[2000] = 0;
  json_t *s = tc_create(c, json_pack("{s:s, s:{s:s}}", "sub", "big", "data", "blob", blob));
  long long before = tc_stat(c, hits);
  for (int i = 0; i < 3; i++) {
    json_t *v = NULL;
    TT_EQ_STR(tc_validate(c, tc_str(s, "sid"), NULL, &v), "");
    TT_EQ_STR(tc_str(json_object_get(v, "data"), "blob"), blob);
    json_decref(v);
  }
  TT_EQ_INT(tc_stat(c, hits), before);
  TT_EQ_INT(tc_revoke_n(c, "sid", tc_str(s, "sid")), 1);
  tc_expect_unauthenticated(c, tc_str(s, "sid"));
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* --session-cache 0: no cache; validate reads the store each time and still works. */
static void no_session_cache(void) {
  td_daemon d;
  td_start(&d, (const char *[]){"--session-cache", "0", NULL});
  tessera_client *c = tc_client(&d);
  const char *hits = tr_env_redis() ? "redis_cache_hits" : "session_cache_hits";
  json_t *s = tc_create_sub(c, "nocache");
  tc_expect_valid(c, tc_str(s, "sid"));
  tc_expect_valid(c, tc_str(s, "sid"));
  TT_EQ_INT(tc_stat(c, hits), 0);
  TT_EQ_INT(tc_revoke_n(c, "sid", tc_str(s, "sid")), 1);
  tc_expect_unauthenticated(c, tc_str(s, "sid"));
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- durability ------------------------------------------------------------------------- */

#define DN 200
typedef struct durable_set {
  tc_idset ids;
  char revoked_sid[TC_SID_CHARS + 1], rotated_old[TC_SID_CHARS + 1], rotated_new[TC_SID_CHARS + 1];
} durable_set;

static void durable_setup(tessera_client *c, durable_set *s) {
  s->ids = tc_idset_new(DN);
  json_t *p = json_pack("{s:s, s:{s:s}, s:{s:s}}", "sub", "mia", "data", "plan", "pro", "client",
                        "ua", "App/1");
  tc_create_many(c, p, DN - 1, tc_keep_ids, &s->ids);
  json_decref(p);
  json_t *x = tc_create_sub(c, "mia");
  snprintf(s->revoked_sid, sizeof(s->revoked_sid), "%s", tc_str(x, "sid"));
  json_decref(x);
  TT_EQ_INT(tc_revoke_n(c, "sid", s->revoked_sid), 1);
  x = tc_create_sub(c, "mia");
  snprintf(s->rotated_old, sizeof(s->rotated_old), "%s", tc_str(x, "sid"));
  json_decref(x);
  x = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", s->rotated_old));
  snprintf(s->rotated_new, sizeof(s->rotated_new), "%s", tc_str(x, "sid"));
  json_decref(x);
  /* The last acknowledged write before the stop is a create. */
  x = tc_create(c, json_pack("{s:s, s:{s:s}}", "sub", "mia", "data", "plan", "pro"));
  snprintf(s->ids.sid[DN - 1], TC_SID_CHARS + 1, "%s", tc_str(x, "sid"));
  snprintf(s->ids.handle[DN - 1], TC_HANDLE_CHARS + 1, "%s", tc_str(x, "handle"));
  json_decref(x);
}

static void durable_check(tessera_client *c, durable_set *s) {
  for (int i = 0; i < DN; i++) {
    json_t *v = NULL;
    const char *code = tc_validate(c, s->ids.sid[i], NULL, &v);
    TT_ASSERT_MSG(code[0] == 0, "session %d lost: %s", i, code);
    TT_EQ_STR(tc_str(v, "handle"), s->ids.handle[i]);
    TT_EQ_STR(tc_str(json_object_get(v, "data"), "plan"), "pro");
    json_decref(v);
  }
  tc_expect_unauthenticated(c, s->revoked_sid);
  tc_expect_unauthenticated(c, s->rotated_old);
  tc_expect_valid(c, s->rotated_new);
  TT_EQ_INT(tc_count_listed(c, "mia"), DN + 1 /* rotated one */);
  tc_idset_free(&s->ids);
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
    TT_CASE(cached_sessions_die_with_every_revocation),
    TT_CASE(revoking_many_cached_sessions),
    TT_CASE(large_sessions_are_not_cached),
    TT_CASE(no_session_cache),
    TT_CASE(sessions_survive_sigterm_restart),
    TT_CASE(sessions_survive_kill9_after_ack),
};
TT_MAIN(cases)
