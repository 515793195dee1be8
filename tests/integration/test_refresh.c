/* tests/integration/test_refresh.c: refresh families, token revocation, user.revoke and the
 * revocation push, against the real daemon (PROTOCOL.md "tokens", "users", "events", "Errors";
 * SECURITY.md "Sessions and refresh"): the pair's shape, rotation under 50 concurrent
 * refreshes, the grace window and reuse detection, every token.revoke form, logging a user out
 * everywhere, the notifications subscribers get (and only for what was written), the bounded
 * revocation list, the stolen-token story end to end (a subscribed libtessera verifier
 * included), and durability across kill -9.
 *
 * Waiting: replies and notifications are the signals. The only waits on the clock are where
 * the wall clock is the thing under test (the grace window, a ttl, the cut-off second): they
 * poll time() until it passes the instant the daemon named, never longer. The sweeper signals
 * nothing to clients, so those cases poll sys.stats in a bounded loop. */
#include "calls.h"
#include "forge.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include <tessera/tessera.h>
#include <tessera/verifier.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ID_CHARS 22 /* family ids, jtis and handles: 16 random bytes, base64url */

static json_t *pair_for(tessera_client *c, const char *sub) {
  return tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", sub));
}

/* token.refresh: returns the error code ("" on success; then *out holds the pair). */
static const char *refresh(tessera_client *c, const char *rt, json_t **out) {
  return tc_call_code(c, "token.refresh", json_pack("{s:s}", "refresh_token", rt), out);
}

static json_t *refresh_ok(tessera_client *c, const char *rt) {
  json_t *p = NULL;
  const char *code = refresh(c, rt, &p);
  TT_ASSERT_MSG(code[0] == 0, "token.refresh: %s", code);
  return p;
}

/* token.verify: "" when valid, else the error code. aud may be NULL. */
static const char *verify(tessera_client *c, const char *token, const char *aud, bool check_revoked) {
  json_t *p = json_pack("{s:s}", "token", token);
  if (aud) json_object_set_new(p, "aud", json_string(aud));
  if (check_revoked) json_object_set_new(p, "check_revoked", json_true());
  return tc_call_code(c, "token.verify", p, NULL);
}

static long long revoke_with(tessera_client *c, json_t *params) {
  json_t *r = tc_call_ok(c, "token.revoke", params);
  long long n = tc_int(r, "revoked");
  TT_ASSERT(json_object_size(r) == 1);
  json_decref(r);
  return n;
}

static long long revoke_token(tessera_client *c, const char *token) {
  return revoke_with(c, json_pack("{s:s}", "token", token));
}

/* Polls the wall clock until it is past t (the thing under test is the clock). */
static void wait_clock_past(long long t) {
  TT_ASSERT_MSG(t - (long long)time(NULL) < 30, "would wait %lld s", t - (long long)time(NULL));
  while ((long long)time(NULL) <= t) usleep(20 * 1000);
}

static int count_of(const char *haystack, const char *needle) {
  int n = 0;
  for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
}

/* ---- raw connections (notifications) ---------------------------------------------------- */

static void pack_json(msgpack_packer *pk, const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    msgpack_pack_map(pk, json_object_size(j));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
      msgpack_pack_str_with_body(pk, k, strlen(k));
      pack_json(pk, v);
    }
    break;
  }
  case JSON_ARRAY:
    msgpack_pack_array(pk, json_array_size(j));
    for (size_t i = 0; i < json_array_size(j); i++) pack_json(pk, json_array_get(j, i));
    break;
  case JSON_STRING:
    msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
    break;
  case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(j)); break;
  case JSON_REAL: msgpack_pack_double(pk, json_real_value(j)); break;
  case JSON_TRUE: msgpack_pack_true(pk); break;
  case JSON_FALSE: msgpack_pack_false(pk); break;
  case JSON_NULL: msgpack_pack_nil(pk); break;
  }
}

static json_t *mp_to_json(const msgpack_object *o) {
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: return json_null();
  case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
  case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
  case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
  case MSGPACK_OBJECT_ARRAY: {
    json_t *a = json_array();
    for (uint32_t i = 0; i < o->via.array.size; i++)
      json_array_append_new(a, mp_to_json(&o->via.array.ptr[i]));
    return a;
  }
  case MSGPACK_OBJECT_MAP: {
    json_t *m = json_object();
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      const msgpack_object *k = &o->via.map.ptr[i].key;
      TT_ASSERT(k->type == MSGPACK_OBJECT_STR);
      char key[256];
      snprintf(key, sizeof(key), "%.*s", (int)k->via.str.size, k->via.str.ptr);
      json_object_set_new(m, key, mp_to_json(&o->via.map.ptr[i].val));
    }
    return m;
  }
  default: tt_fail(__FILE__, __LINE__, "unexpected msgpack type %d", (int)o->type);
  }
}

typedef struct raw {
  int fd;
  tw_reader rd;
  uint32_t next_id;
} raw;

static void raw_open(raw *r, const td_daemon *d) {
  r->fd = tw_connect(d->socket);
  tw_reader_init(&r->rd, r->fd);
  r->next_id = 1;
}

static void raw_close(raw *r) {
  tw_reader_destroy(&r->rd);
  close(r->fd);
}

/* Sends [0, id, method, [params]] (params stolen; NULL: []). Returns the msgid. */
static uint32_t raw_send(raw *r, const char *method, json_t *params) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  uint32_t id = r->next_id++;
  msgpack_pack_array(&pk, 4);
  msgpack_pack_uint8(&pk, 0);
  msgpack_pack_uint32(&pk, id);
  msgpack_pack_str_with_body(&pk, method, strlen(method));
  msgpack_pack_array(&pk, params ? 1 : 0);
  if (params) pack_json(&pk, params);
  TT_ASSERT(tw_send(r->fd, sb.data, sb.size));
  msgpack_sbuffer_destroy(&sb);
  json_decref(params);
  return id;
}

/* The next message as JSON ([1, id, err, result] or [2, method, args]); NULL on time out/EOF. */
static json_t *raw_next(raw *r, int timeout_ms) {
  const msgpack_object *o = tw_next(&r->rd, timeout_ms);
  return o ? mp_to_json(o) : NULL;
}

/* Subscribes; returns the keys_version of the reply. */
static long long raw_subscribe(raw *r) {
  uint32_t id = raw_send(r, "events.subscribe", NULL);
  json_t *m = raw_next(r, 10000);
  TT_ASSERT_MSG(m != NULL, "no reply to events.subscribe");
  TT_EQ_INT(json_integer_value(json_array_get(m, 0)), 1);
  TT_EQ_INT(json_integer_value(json_array_get(m, 1)), id);
  TT_ASSERT(json_is_null(json_array_get(m, 2)));
  json_t *res = json_array_get(m, 3);
  TT_ASSERT(json_is_true(json_object_get(res, "subscribed")));
  long long v = tc_int(res, "keys_version");
  json_decref(m);
  return v;
}

/* The next notification, which must be [2, method, args]; returns args (caller decrefs). */
static json_t *expect_note(raw *r, const char *method) {
  json_t *m = raw_next(r, 10000);
  TT_ASSERT_MSG(m != NULL, "no %s notification within 10 s", method);
  char *shown = json_dumps(m, JSON_COMPACT);
  TT_ASSERT_MSG(json_array_size(m) == 3 && json_integer_value(json_array_get(m, 0)) == 2,
                "expected a notification, got %.400s", shown);
  TT_ASSERT_MSG(strcmp(json_string_value(json_array_get(m, 1)), method) == 0,
                "expected a %s notification, got %.400s", method, shown);
  free(shown);
  json_t *args = json_incref(json_array_get(m, 2));
  TT_ASSERT(json_is_array(args) && json_array_size(args) >= 1);
  json_decref(m);
  return args;
}

/* The entry of kind and id in a "revoked" args array, or NULL. */
static json_t *entry_of(const json_t *args, const char *kind, const char *id) {
  for (size_t i = 0; i < json_array_size(args); i++) {
    json_t *e = json_array_get(args, i);
    if (strcmp(tc_str(e, "kind"), kind) == 0 && (!id || strcmp(tc_str(e, "id"), id) == 0)) return e;
  }
  return NULL;
}

/* A single-entry "revoked" notification of kind and id; returns its until. */
static long long expect_revoked_one(raw *r, const char *kind, const char *id) {
  json_t *args = expect_note(r, "revoked");
  char *shown = json_dumps(args, JSON_COMPACT);
  TT_ASSERT_MSG(json_array_size(args) == 1, "expected one entry, got %.400s", shown);
  json_t *e = json_array_get(args, 0);
  TT_ASSERT_MSG(strcmp(tc_str(e, "kind"), kind) == 0 && strcmp(tc_str(e, "id"), id) == 0,
                "expected {kind: %s, id: %s}, got %.400s", kind, id, shown);
  TT_EQ_INT(json_object_size(e), 4); /* kind, id, until, cursor: `before` only for kind sub */
  TT_ASSERT(strlen(tc_str(e, "cursor")) == 32);
  long long until = tc_int(e, "until");
  free(shown);
  json_decref(args);
  return until;
}

/* ---- token.pair ------------------------------------------------------------------------- */

static void assert_pair_shape(const json_t *p, long long access_ttl, long long refresh_ttl) {
  TT_EQ_INT(json_object_size(p), 7);
  const char *at = tc_str(p, "access_token"), *rt = tc_str(p, "refresh_token");
  TT_EQ_INT(count_of(at, "."), 2);
  TT_EQ_INT(count_of(rt, "."), 2);
  TT_ASSERT(strcmp(at, rt) != 0);
  TT_ASSERT(tc_is_b64url(tc_str(p, "family"), ID_CHARS));
  long long now = (long long)time(NULL);
  long long aat = tc_int(p, "access_expires_at"), ain = tc_int(p, "access_expires_in");
  long long rat = tc_int(p, "refresh_expires_at"), rin = tc_int(p, "refresh_expires_in");
  TT_ASSERT_MSG(ain <= access_ttl && ain >= access_ttl - 2, "access_expires_in %lld", ain);
  TT_ASSERT_MSG(rin <= refresh_ttl && rin >= refresh_ttl - 2, "refresh_expires_in %lld", rin);
  TT_ASSERT(llabs(aat - (now + ain)) <= 1 && llabs(rat - (now + rin)) <= 1);
  TT_EQ_INT(tf_claim_int(at, "exp"), aat);
  TT_EQ_INT(tf_claim_int(rt, "exp"), rat);
}

static void pair_reply_shape(void) {
  static const char *const args[] = {"--access-ttl", "120", "--refresh-ttl", "600",
                                     "--max-refresh-ttl", "3600", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *p = tc_call_ok(c, "token.pair",
                      json_pack("{s:s, s:s, s:s, s:{s:s, s:i}}", "sub", "alice", "aud", "app",
                                "scope", "read write", "claims", "role", "editor", "n", 7));
  assert_pair_shape(p, 120, 600); /* the configured defaults */
  const char *at = tc_str(p, "access_token"), *rt = tc_str(p, "refresh_token");
  const char *fam = tc_str(p, "family");

  /* The access token verifies and carries fam, scope, aud and the caller's claims. */
  json_t *v = tc_call_ok(c, "token.verify", json_pack("{s:s, s:s}", "token", at, "aud", "app"));
  json_t *cl = json_object_get(v, "claims");
  TT_EQ_STR(tc_str(cl, "sub"), "alice");
  TT_EQ_STR(tc_str(cl, "fam"), fam);
  TT_EQ_STR(tc_str(cl, "scope"), "read write");
  TT_EQ_STR(tc_str(cl, "aud"), "app");
  TT_EQ_STR(tc_str(cl, "role"), "editor");
  TT_EQ_INT(tc_int(cl, "n"), 7);
  TT_EQ_STR(tc_str(cl, "iss"), "tessera");
  TT_EQ_INT(tc_int(cl, "exp"), tc_int(p, "access_expires_at"));
  TT_ASSERT(tc_is_b64url(tc_str(cl, "jti"), ID_CHARS));
  TT_ASSERT(json_is_string(json_object_get(v, "kid")));
  json_decref(v);
  TT_EQ_STR(verify(c, at, "app", true), "");
  TT_EQ_STR(verify(c, at, NULL, false), "unauthenticated"); /* it carries aud; none expected */
  TT_EQ_STR(verify(c, at, "other", false), "unauthenticated");

  /* The refresh token is no access token: typ rt+jwt, refused by token.verify. */
  json_t *h = tf_segment_json(rt, 0);
  TT_EQ_STR(tc_str(h, "typ"), "rt+jwt");
  json_decref(h);
  h = tf_segment_json(at, 0);
  TT_EQ_STR(tc_str(h, "typ"), "at+jwt");
  json_decref(h);
  json_t *rc = tf_segment_json(rt, 1);
  TT_EQ_STR(tc_str(rc, "fam"), fam);
  TT_EQ_STR(tc_str(rc, "sub"), "alice");
  TT_ASSERT(json_object_get(rc, "aud") == NULL && json_object_get(rc, "role") == NULL);
  json_decref(rc);
  TT_EQ_STR(verify(c, rt, NULL, false), "unauthenticated");
  TT_EQ_STR(verify(c, rt, "app", false), "unauthenticated");
  TT_EQ_STR(verify(c, rt, NULL, true), "unauthenticated");
  /* ... and the access token is no refresh token. */
  TT_EQ_STR(refresh(c, at, NULL), "unauthenticated");

  /* A refresh keeps the family, aud, scope and claims; its pair is new. */
  json_t *p2 = refresh_ok(c, rt);
  assert_pair_shape(p2, 120, 600);
  TT_EQ_STR(tc_str(p2, "family"), fam);
  TT_ASSERT(strcmp(tc_str(p2, "access_token"), at) != 0);
  TT_ASSERT(strcmp(tc_str(p2, "refresh_token"), rt) != 0);
  v = tc_call_ok(c, "token.verify",
              json_pack("{s:s, s:s}", "token", tc_str(p2, "access_token"), "aud", "app"));
  cl = json_object_get(v, "claims");
  TT_EQ_STR(tc_str(cl, "fam"), fam);
  TT_EQ_STR(tc_str(cl, "scope"), "read write");
  TT_EQ_STR(tc_str(cl, "role"), "editor");
  TT_ASSERT(strcmp(tc_str(cl, "jti"), "") != 0);
  json_decref(v);
  json_decref(p2);

  /* Explicit ttls, within the configured maxima; anything else is bad_request. */
  json_t *p3 = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "alice",
                                                   "access_ttl", 30, "refresh_ttl", 3600));
  assert_pair_shape(p3, 30, 3600);
  TT_ASSERT(strcmp(tc_str(p3, "family"), fam) != 0); /* every pair starts its own family */
  json_decref(p3);
  tc_expect_error(c, "token.pair", json_pack("{s:s, s:i}", "sub", "alice", "refresh_ttl", 3601),
              "bad_request", NULL);
  tc_expect_error(c, "token.pair", json_pack("{s:s, s:i}", "sub", "alice", "access_ttl", 0),
              "bad_request", NULL);
  tc_expect_error(c, "token.pair", json_pack("{s:s, s:i}", "sub", "alice", "refresh_ttl", -5),
              "bad_request", NULL);
  tc_expect_error(c, "token.pair", json_pack("{s:s, s:{s:s}}", "sub", "alice", "claims", "fam", "x"),
              "bad_request", NULL);
  tc_expect_error(c, "token.pair", json_pack("{s:i}", "access_ttl", 10), "bad_request", NULL);
  tc_expect_error(c, "token.pair", json_pack("{s:s, s:b}", "sub", "alice", "bogus", 1), "bad_request", NULL);
  tc_expect_error(c, "token.refresh", json_pack("{}"), "bad_request", NULL);
  tc_expect_error(c, "token.refresh", json_pack("{s:s}", "refresh_token", "garbage"),
              "unauthenticated", NULL);
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- rotation: concurrency, grace, reuse -------------------------------------------------- */

enum { RACERS = 50 };

typedef struct racer {
  tessera_client *c;
  pthread_barrier_t *go;
  const char *rt;
  int rc;
  char code[32];
  json_t *result;
} racer;

static void *race_refresh(void *arg) {
  racer *r = arg;
  json_t *p = json_pack("{s:s}", "refresh_token", r->rt);
  tessera_error err = {{0}, {0}};
  pthread_barrier_wait(r->go);
  r->rc = tessera_call(r->c, "token.refresh", p, 30000, &r->result, &err);
  snprintf(r->code, sizeof(r->code), "%s", err.code);
  json_decref(p);
  return NULL;
}

static void concurrent_refreshes_advance_the_family_once(void) {
  static const char *const args[] = {"--refresh-grace", "1", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *p1 = pair_for(c, "carl");
  const char *rt1 = tc_str(p1, "refresh_token");

  static racer rs[RACERS];
  pthread_t th[RACERS];
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, RACERS);
  for (int i = 0; i < RACERS; i++) {
    rs[i] = (racer){.c = tc_client(&d), .go = &go, .rt = rt1};
    json_decref(tc_call_ok(rs[i].c, "sys.ping", NULL)); /* connected and accepted before the race */
  }
  for (int i = 0; i < RACERS; i++) TT_ASSERT(pthread_create(&th[i], NULL, race_refresh, &rs[i]) == 0);
  for (int i = 0; i < RACERS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&go);

  for (int i = 0; i < RACERS; i++)
    TT_ASSERT_MSG(rs[i].rc == 0, "racer %d: %s (%s)", i, tessera_strerror(rs[i].rc), rs[i].code);
  const char *at2 = tc_str(rs[0].result, "access_token"), *rt2 = tc_str(rs[0].result, "refresh_token");
  TT_ASSERT(strcmp(rt2, rt1) != 0);
  for (int i = 1; i < RACERS; i++) {
    TT_EQ_STR(tc_str(rs[i].result, "access_token"), at2);
    TT_EQ_STR(tc_str(rs[i].result, "refresh_token"), rt2);
    TT_EQ_STR(tc_str(rs[i].result, "family"), tc_str(p1, "family"));
    TT_EQ_INT(tc_int(rs[i].result, "refresh_expires_at"), tc_int(rs[0].result, "refresh_expires_at"));
  }
  long long rotated = tf_claim_int(rt2, "iat");

  /* Exactly one generation: the successor is the family's current token and refreshes. */
  json_t *p3 = refresh_ok(c, rt2);
  TT_ASSERT(strcmp(tc_str(p3, "refresh_token"), rt2) != 0);
  TT_EQ_STR(verify(c, tc_str(p3, "access_token"), NULL, true), "");
  /* The original, presented after the grace window: reuse. The family is dead. */
  wait_clock_past(rotated + 1);
  TT_EQ_STR(refresh(c, rt1, NULL), "reused");
  TT_EQ_STR(refresh(c, tc_str(p3, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(p3, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, at2, NULL, true), "revoked");

  /* None of the 50 was taken for reuse: the one audit line is the original's replay. */
  char *log = td_read_log(&d);
  TT_EQ_INT(count_of(log, "refresh token reused"), 1);
  TT_ASSERT(strstr(log, rt1) == NULL && strstr(log, rt2) == NULL);
  free(log);
  for (int i = 0; i < RACERS; i++) {
    json_decref(rs[i].result);
    tessera_close(rs[i].c);
  }
  json_decref(p3);
  json_decref(p1);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void previous_token_within_grace_then_reused(void) {
  static const char *const args[] = {"--refresh-grace", "1", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *p1 = pair_for(c, "dora");
  const char *rt1 = tc_str(p1, "refresh_token");
  json_t *p2 = refresh_ok(c, rt1);
  long long rotated = tf_claim_int(tc_str(p2, "refresh_token"), "iat");
  /* Within the window (the daemon decided before this reply): the same successor pair. */
  json_t *again = refresh_ok(c, rt1);
  TT_ASSERT_MSG((long long)time(NULL) <= rotated + 1, "the machine is too slow for a 1 s grace");
  TT_EQ_STR(tc_str(again, "access_token"), tc_str(p2, "access_token"));
  TT_EQ_STR(tc_str(again, "refresh_token"), tc_str(p2, "refresh_token"));
  json_decref(again);
  /* Outside it: reused, and the whole family with it. */
  wait_clock_past(rotated + 1);
  TT_EQ_STR(refresh(c, rt1, NULL), "reused");
  TT_EQ_STR(refresh(c, rt1, NULL), "revoked"); /* the family is gone now */
  TT_EQ_STR(refresh(c, tc_str(p2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(p2, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(p2, "access_token"), NULL, false), ""); /* stateless by default */
  TT_EQ_STR(verify(c, tc_str(p1, "access_token"), NULL, true), "revoked");
  /* Another family of the same user is untouched. */
  json_t *other = pair_for(c, "dora");
  json_decref(refresh_ok(c, tc_str(other, "refresh_token")));
  json_decref(other);
  json_decref(p2);
  json_decref(p1);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void two_generations_old_is_reused_at_once(void) {
  td_daemon d;
  td_start(&d, NULL); /* the default 10 s grace */
  tessera_client *c = tc_client(&d);
  json_t *p1 = pair_for(c, "emil");
  const char *rt1 = tc_str(p1, "refresh_token");
  json_t *p2 = refresh_ok(c, rt1);
  json_t *p3 = refresh_ok(c, tc_str(p2, "refresh_token"));
  long long rotated = tf_claim_int(tc_str(p3, "refresh_token"), "iat");
  TT_EQ_STR(refresh(c, rt1, NULL), "reused");
  TT_ASSERT((long long)time(NULL) - rotated < 10); /* well inside the grace window */
  /* The newest token of the family answers revoked; so does the one in its grace window. */
  TT_EQ_STR(refresh(c, tc_str(p3, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(refresh(c, tc_str(p2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(p3, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(p1, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(p3, "access_token"), NULL, false), "");
  /* The audit line names the family, never a token. */
  char *log = td_read_log(&d);
  const char *line = strstr(log, "refresh token reused");
  TT_ASSERT_MSG(line != NULL, "no audit line for the reuse");
  TT_ASSERT(strstr(line, tc_str(p1, "family")) != NULL);
  TT_ASSERT(strstr(log, rt1) == NULL && strstr(log, tc_str(p3, "refresh_token")) == NULL);
  free(log);
  json_decref(p3);
  json_decref(p2);
  json_decref(p1);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- token.revoke ------------------------------------------------------------------------ */

static void revoke_refresh_token_kills_its_family(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *p1 = pair_for(c, "fred");
  json_t *p2 = refresh_ok(c, tc_str(p1, "refresh_token"));
  TT_EQ_INT(tc_stat(c, "families"), 1);
  TT_EQ_INT(revoke_token(c, tc_str(p2, "refresh_token")), 1);
  TT_EQ_INT(revoke_token(c, tc_str(p2, "refresh_token")), 0); /* nothing left to revoke */
  TT_EQ_INT(revoke_token(c, tc_str(p1, "refresh_token")), 0); /* a stale token of it, too */
  TT_EQ_STR(refresh(c, tc_str(p2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(refresh(c, tc_str(p1, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(p2, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(p1, "access_token"), NULL, true), "revoked");
  TT_EQ_INT(tc_stat(c, "families"), 0);
  json_decref(p2);
  json_decref(p1);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void revoke_by_family(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *p = pair_for(c, "gwen"), *keep = pair_for(c, "gwen");
  const char *fam = tc_str(p, "family");
  TT_EQ_INT(revoke_with(c, json_pack("{s:s}", "family", fam)), 1);
  TT_EQ_INT(revoke_with(c, json_pack("{s:s}", "family", fam)), 0);
  TT_EQ_STR(refresh(c, tc_str(p, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(p, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(p, "access_token"), NULL, false), "");
  /* Only that family. */
  TT_EQ_STR(verify(c, tc_str(keep, "access_token"), NULL, true), "");
  json_decref(refresh_ok(c, tc_str(keep, "refresh_token")));
  TT_EQ_INT(revoke_with(c, json_pack("{s:s}", "family", "AAAAAAAAAAAAAAAAAAAAAA")), 0);
  json_decref(keep);
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void revoke_access_token_denylists_its_jti(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "hana", "ttl", 300));
  const char *tok = tc_str(t, "token");
  TT_EQ_STR(verify(c, tok, NULL, true), "");
  TT_EQ_INT(revoke_token(c, tok), 1);
  TT_EQ_INT(revoke_token(c, tok), 0);
  TT_EQ_STR(verify(c, tok, NULL, true), "revoked");
  TT_EQ_STR(verify(c, tok, NULL, false), ""); /* plain verification stays stateless */
  /* The access token of a pair: its jti only, the family lives on. */
  json_t *p = pair_for(c, "hana");
  TT_EQ_INT(revoke_token(c, tc_str(p, "access_token")), 1);
  TT_EQ_STR(verify(c, tc_str(p, "access_token"), NULL, true), "revoked");
  json_t *p2 = refresh_ok(c, tc_str(p, "refresh_token"));
  TT_EQ_STR(verify(c, tc_str(p2, "access_token"), NULL, true), "");
  /* Another token of the same user is untouched. */
  json_t *t2 = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "hana"));
  TT_EQ_STR(verify(c, tc_str(t2, "token"), NULL, true), "");
  json_decref(t2);
  json_decref(p2);
  json_decref(p);
  json_decref(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void revoke_by_jti_and_exp(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "ivan", "ttl", 300));
  json_t *params = json_pack("{s:s, s:I}", "jti", tc_str(t, "jti"), "exp",
                             (json_int_t)tc_int(t, "expires_at"));
  TT_EQ_INT(revoke_with(c, json_deep_copy(params)), 1);
  TT_EQ_INT(revoke_with(c, json_deep_copy(params)), 0);
  TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, false), "");
  /* A jti whose exp is long past needs no entry. */
  TT_EQ_INT(revoke_with(c, json_pack("{s:s, s:I}", "jti", "BBBBBBBBBBBBBBBBBBBBBB", "exp",
                                (json_int_t)(time(NULL) - 3600))),
            0);
  json_decref(params);
  json_decref(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* The jti denylist binds refresh tokens too: token.revoke {jti, exp} with a refresh token's
 * jti answers {revoked: 1}, and that token then refreshes no more (it used to rotate). */
static void revoked_refresh_jti_cannot_refresh(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *p = pair_for(c, "iris"), *twin = pair_for(c, "iris");
  const char *rt = tc_str(p, "refresh_token");
  json_t *claims = tf_segment_json(rt, 1);
  TT_EQ_INT(revoke_with(c, json_pack("{s:s, s:I}", "jti", tc_str(claims, "jti"), "exp",
                                     (json_int_t)tc_int(claims, "exp"))),
            1);
  TT_EQ_STR(refresh(c, rt, NULL), "revoked");
  TT_EQ_STR(refresh(c, rt, NULL), "revoked"); /* and stays so */
  /* The other family of the same user is untouched. */
  json_decref(refresh_ok(c, tc_str(twin, "refresh_token")));
  json_decref(claims);
  json_decref(twin);
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* token.revoke {jti, exp} with exp near INT64_MAX: exp + leeway overflowed (undefined
 * behaviour) and the revocation was silently dropped ({revoked: 0}). Such an exp is capped to
 * the longest token lifetime: the jti is revoked. */
static void revoke_by_jti_with_huge_exp(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_int_t huge[] = {INT64_MAX, INT64_MAX - 30, (json_int_t)1 << 62};
  for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
    json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "ivan"));
    TT_EQ_INT(revoke_with(c, json_pack("{s:s, s:I}", "jti", tc_str(t, "jti"), "exp", huge[i])), 1);
    TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, true), "revoked");
    json_decref(t);
  }
  /* A very negative exp is simply in the past. */
  TT_EQ_INT(revoke_with(c, json_pack("{s:s, s:I}", "jti", "DDDDDDDDDDDDDDDDDDDDDD", "exp",
                                     (json_int_t)INT64_MIN)),
            0);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A family has an absolute lifetime (--refresh-max-lifetime) from its token.pair: rotation
 * used to set exp = now + refresh_ttl every time, so a family in use lived forever. Every
 * refresh token's exp stays within created + max lifetime, and a refresh after that (while the
 * token itself is still inside its leeway) answers expired. */
static void refresh_family_has_a_max_lifetime(void) {
  static const char *const args[] = {"--refresh-max-lifetime", "3s", NULL}; /* --leeway 60 */
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *p = pair_for(c, "olga"); /* refresh_ttl 30d by default */
  long long created = tf_claim_int(tc_str(p, "refresh_token"), "iat");
  long long end = created + 3;
  TT_ASSERT_MSG(tc_int(p, "refresh_expires_at") <= end, "first refresh exp %lld > %lld",
                tc_int(p, "refresh_expires_at"), end);
  TT_EQ_INT(tf_claim_int(tc_str(p, "refresh_token"), "exp"), tc_int(p, "refresh_expires_at"));
  /* Rotations, each before the end: none extends the family. */
  json_t *cur = p;
  for (int i = 0; i < 3 && (long long)time(NULL) < end; i++) {
    json_t *next = NULL;
    const char *code = refresh(c, tc_str(cur, "refresh_token"), &next);
    if (code[0] && (long long)time(NULL) >= end) break; /* the clock got there first */
    TT_ASSERT_MSG(code[0] == 0, "refresh %d: %s", i, code);
    TT_ASSERT_MSG(tc_int(next, "refresh_expires_at") <= end, "rotated refresh exp %lld > %lld",
                  tc_int(next, "refresh_expires_at"), end);
    TT_EQ_INT(tf_claim_int(tc_str(next, "refresh_token"), "exp"), tc_int(next, "refresh_expires_at"));
    TT_ASSERT(tc_int(next, "refresh_expires_in") <= 3);
    json_decref(cur);
    cur = next;
  }
  /* Past the end: expired (the token is still within exp + leeway, so this is the family). */
  wait_clock_past(end - 1);
  TT_EQ_STR(refresh(c, tc_str(cur, "refresh_token"), NULL), "expired");
  TT_EQ_STR(refresh(c, tc_str(cur, "refresh_token"), NULL), "expired"); /* not reuse */
  /* A new pair starts a new family. */
  json_t *fresh = pair_for(c, "olga");
  json_decref(refresh_ok(c, tc_str(fresh, "refresh_token")));
  json_decref(fresh);
  json_decref(cur);
  tessera_close(c);
  tc_stop_clean(&d);
  /* The environment sets it too (TESSERA_REFRESH_MAX_LIFETIME). */
  TT_ASSERT(setenv("TESSERA_REFRESH_MAX_LIFETIME", "2s", 1) == 0);
  td_start(&d, NULL);
  unsetenv("TESSERA_REFRESH_MAX_LIFETIME");
  c = tc_client(&d);
  p = pair_for(c, "olga");
  TT_ASSERT(tc_int(p, "refresh_expires_at") <= tf_claim_int(tc_str(p, "refresh_token"), "iat") + 2);
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void revoke_garbage_answers_zero(void) {
  td_daemon d, other;
  td_start(&d, NULL);
  td_start(&other, NULL); /* its own keys */
  tessera_client *c = tc_client(&d), *oc = tc_client(&other);
  json_t *foreign = pair_for(oc, "jack");
  json_t *mine = pair_for(c, "jack");
  char tampered[4096];
  snprintf(tampered, sizeof(tampered), "%s", tc_str(mine, "access_token"));
  char *last = tampered + strlen(tampered) - 2;
  *last = *last == 'A' ? 'B' : 'A';
  char *big = malloc(9001);
  memset(big, 'x', 9000);
  big[9000] = 0;
  const char *garbage[] = {"garbage", "a.b.c", "...", tampered, big,
                           tc_str(foreign, "access_token"), tc_str(foreign, "refresh_token")};
  long long before = tc_stat(c, "revocations");
  for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++)
    TT_ASSERT_MSG(revoke_token(c, garbage[i]) == 0, "garbage %zu revoked something", i);
  TT_EQ_INT(tc_stat(c, "revocations"), before);
  /* Nothing of ours was touched. */
  TT_EQ_STR(verify(c, tc_str(mine, "access_token"), NULL, true), "");
  json_decref(refresh_ok(c, tc_str(mine, "refresh_token")));
  free(big);
  json_decref(mine);
  json_decref(foreign);
  tessera_close(oc);
  tessera_close(c);
  tc_stop_clean(&other);
  tc_stop_clean(&d);
}

static void revoke_needs_exactly_one_target(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *p = pair_for(c, "kate");
  const char *rt = tc_str(p, "refresh_token"), *fam = tc_str(p, "family");
  tc_expect_error(c, "token.revoke", json_pack("{}"), "bad_request", NULL);
  tc_expect_error(c, "token.revoke", json_pack("{s:s, s:s}", "token", rt, "family", fam), "bad_request", NULL);
  tc_expect_error(c, "token.revoke", json_pack("{s:s, s:s, s:i}", "family", fam, "jti", "x", "exp", 9),
              "bad_request", NULL);
  tc_expect_error(c, "token.revoke", json_pack("{s:s}", "jti", "CCCCCCCCCCCCCCCCCCCCCC"), "bad_request", NULL);
  tc_expect_error(c, "token.revoke", json_pack("{s:i}", "exp", 1900000000), "bad_request", NULL);
  tc_expect_error(c, "token.revoke", json_pack("{s:i}", "token", 5), "bad_request", NULL);
  tc_expect_error(c, "token.revoke", json_pack("{s:s, s:b}", "token", rt, "bogus", 1), "bad_request", NULL);
  /* None of those revoked anything. */
  json_decref(refresh_ok(c, rt));
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- user.revoke ------------------------------------------------------------------------ */

static json_t *session_for(tessera_client *c, const char *sub) {
  return tc_call_ok(c, "session.create", json_pack("{s:s}", "sub", sub));
}

static const char *validate(tessera_client *c, const char *sid) {
  return tc_call_code(c, "session.validate", json_pack("{s:s}", "sid", sid), NULL);
}

static void user_revoke_logs_out_everywhere(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s1 = session_for(c, "bob"), *s2 = session_for(c, "bob"), *sc = session_for(c, "carol");
  json_t *p1 = pair_for(c, "bob"), *p2 = pair_for(c, "bob"), *pc = pair_for(c, "carol");
  json_t *p1b = refresh_ok(c, tc_str(p1, "refresh_token")); /* a rotated family counts once */
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "bob"));
  long long t0 = (long long)time(NULL);
  json_t *r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "bob"));
  long long t1 = (long long)time(NULL);
  TT_EQ_INT(json_object_size(r), 2);
  TT_EQ_INT(tc_int(r, "sessions"), 2);
  TT_EQ_INT(tc_int(r, "families"), 2);
  json_decref(r);

  TT_EQ_STR(validate(c, tc_str(s1, "sid")), "unauthenticated");
  TT_EQ_STR(validate(c, tc_str(s2, "sid")), "unauthenticated");
  TT_EQ_STR(refresh(c, tc_str(p1b, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(refresh(c, tc_str(p2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(refresh(c, tc_str(p1, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(p1b, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(p2, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, true), "revoked"); /* not of a family: the cut-off */
  TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, false), "");
  /* carol is untouched. */
  TT_EQ_STR(validate(c, tc_str(sc, "sid")), "");
  TT_EQ_STR(verify(c, tc_str(pc, "access_token"), NULL, true), "");
  json_decref(refresh_ok(c, tc_str(pc, "refresh_token")));
  /* Nothing left for a second call. */
  r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "bob"));
  TT_EQ_INT(tc_int(r, "sessions"), 0);
  TT_EQ_INT(tc_int(r, "families"), 0);
  json_decref(r);

  /* The reply came only once the cut-off second was over: tokens issued from now on work. */
  TT_ASSERT(t1 > t0);
  json_t *later = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "bob"));
  TT_EQ_STR(verify(c, tc_str(later, "token"), NULL, true), "");
  json_t *lp = pair_for(c, "bob");
  TT_EQ_STR(verify(c, tc_str(lp, "access_token"), NULL, true), "");
  json_t *lp2 = refresh_ok(c, tc_str(lp, "refresh_token"));
  TT_EQ_STR(verify(c, tc_str(lp2, "access_token"), NULL, true), "");
  json_t *ls = session_for(c, "bob");
  TT_EQ_STR(validate(c, tc_str(ls, "sid")), "");
  tc_expect_error(c, "user.revoke", json_pack("{}"), "bad_request", NULL);
  tc_expect_error(c, "user.revoke", json_pack("{s:s}", "sub", ""), "bad_request", NULL);
  json_decref(ls);
  json_decref(lp2);
  json_decref(lp);
  json_decref(later);
  json_decref(t);
  json_decref(p1b);
  json_decref(pc);
  json_decref(p2);
  json_decref(p1);
  json_decref(sc);
  json_decref(s2);
  json_decref(s1);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A login right after "log out everywhere" works: user.revoke answers only once the cut-off
 * second is over, so a token issued after its reply has iat > before (it used to be dead on
 * arrival when issued in the same second). Also for the local verifier's feed: the `sub`
 * notification's before is below the new token's iat. */
static void login_right_after_user_revoke_works(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  raw feed;
  raw_open(&feed, &d);
  raw_subscribe(&feed);
  for (int round = 0; round < 3; round++) {
    json_t *old = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "nina"));
    json_decref(tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "nina")));
    json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "nina"));
    json_t *p = pair_for(c, "nina");
    TT_EQ_STR(verify(c, tc_str(old, "token"), NULL, true), "revoked");
    TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, true), "");
    TT_EQ_STR(verify(c, tc_str(p, "access_token"), NULL, true), "");
    json_t *p2 = refresh_ok(c, tc_str(p, "refresh_token"));
    TT_EQ_STR(verify(c, tc_str(p2, "access_token"), NULL, true), "");
    /* What subscribers are told agrees: before < the new token's iat <= the old one's... */
    json_t *args = expect_note(&feed, "revoked");
    json_t *e = entry_of(args, "sub", "nina");
    TT_ASSERT(e != NULL);
    long long before = tc_int(e, "before");
    TT_ASSERT(tf_claim_int(tc_str(old, "token"), "iat") <= before);
    TT_ASSERT(tf_claim_int(tc_str(t, "token"), "iat") > before);
    TT_ASSERT(tf_claim_int(tc_str(p, "access_token"), "iat") > before);
    json_decref(args);
    json_decref(p2);
    json_decref(p);
    json_decref(t);
    json_decref(old);
  }
  raw_close(&feed);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- events ----------------------------------------------------------------------------- */

static void subscribers_hear_every_revocation(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *checker = tc_client(&d);
  raw sub, quiet;
  raw_open(&sub, &d);
  raw_open(&quiet, &d); /* never subscribes */
  long long kv = raw_subscribe(&sub);

  /* An access token: {kind: jti, id: its jti, until: its exp + the leeway}. */
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "lena", "ttl", 300));
  TT_EQ_INT(revoke_token(c, tc_str(t, "token")), 1);
  long long until = expect_revoked_one(&sub, "jti", tc_str(t, "jti"));
  TT_EQ_INT(until, tc_int(t, "expires_at") + 60);
  /* A family revoke. */
  json_t *p = pair_for(c, "lena");
  TT_EQ_INT(revoke_with(c, json_pack("{s:s}", "family", tc_str(p, "family"))), 1);
  until = expect_revoked_one(&sub, "family", tc_str(p, "family"));
  TT_ASSERT(until >= tc_int(p, "refresh_expires_at"));
  /* Rotation is no revocation, nor is revoking something already revoked: the next
   * notification is the reuse detection's. */
  json_t *q1 = pair_for(c, "lena");
  json_t *q2 = refresh_ok(c, tc_str(q1, "refresh_token"));
  json_t *q3 = refresh_ok(c, tc_str(q2, "refresh_token"));
  TT_EQ_INT(revoke_token(c, tc_str(t, "token")), 0);
  TT_EQ_STR(refresh(c, tc_str(q1, "refresh_token"), NULL), "reused");
  expect_revoked_one(&sub, "family", tc_str(q1, "family"));
  /* session.revoke is no feed entry (only the daemon validates sessions): the next
   * notification is user.revoke's. */
  json_t *s = session_for(c, "lena");
  json_t *r = tc_call_ok(c, "session.revoke", json_pack("{s:s}", "handle", tc_str(s, "handle")));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);

  /* user.revoke: one notification with the sub cut-off and its families. */
  json_t *ms1 = session_for(c, "mark"), *ms2 = session_for(c, "mark");
  json_t *mp = pair_for(c, "mark");
  long long t0 = (long long)time(NULL);
  r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "mark"));
  long long t1 = (long long)time(NULL);
  json_decref(r);
  json_t *args = expect_note(&sub, "revoked");
  char *shown = json_dumps(args, JSON_COMPACT);
  TT_ASSERT_MSG(json_array_size(args) == 2, "user.revoke notification: %s", shown);
  json_t *e = entry_of(args, "sub", "mark");
  TT_ASSERT_MSG(e != NULL, "no sub entry: %s", shown);
  TT_EQ_INT(json_object_size(e), 5); /* kind, id, until, before, cursor */
  long long before = tc_int(e, "before");
  TT_ASSERT(before >= t0 && before <= t1);
  TT_ASSERT(tc_int(e, "until") > before + 365LL * 86400); /* outlives any token issued before */
  TT_ASSERT_MSG(!strstr(shown, tc_str(ms1, "handle")) && !strstr(shown, tc_str(ms2, "handle")),
                "%s", shown);
  e = entry_of(args, "family", tc_str(mp, "family"));
  TT_ASSERT_MSG(e != NULL, "%s", shown);
  TT_ASSERT(tc_int(e, "until") >= tc_int(mp, "refresh_expires_at"));
  free(shown);
  json_decref(args);

  /* keys.rotate: [2, "keys", [{keys_version}]]. */
  r = tc_call_ok(c, "keys.rotate", NULL);
  long long nkv = tc_int(r, "keys_version");
  json_decref(r);
  TT_ASSERT(nkv != kv);
  args = expect_note(&sub, "keys");
  TT_EQ_INT(json_array_size(args), 1);
  TT_EQ_INT(json_object_size(json_array_get(args, 0)), 1);
  TT_EQ_INT(tc_int(json_array_get(args, 0), "keys_version"), nkv);
  json_decref(args);

  /* A connection that never subscribed got none of it: its next message is its own reply. */
  uint32_t id = raw_send(&quiet, "sys.ping", NULL);
  json_t *m = raw_next(&quiet, 10000);
  TT_ASSERT(m != NULL);
  TT_EQ_INT(json_integer_value(json_array_get(m, 0)), 1);
  TT_EQ_INT(json_integer_value(json_array_get(m, 1)), id);
  json_decref(m);

  /* The subscriber itself revoking: its reply and the notification both come, on the one
   * connection, and the revocation is in force once either arrives. */
  json_t *t2 = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "lena"));
  id = raw_send(&sub, "token.revoke", json_pack("{s:s}", "token", tc_str(t2, "token")));
  bool got_reply = false, got_note = false;
  int first = 0;
  while (!got_reply || !got_note) {
    m = raw_next(&sub, 10000);
    TT_ASSERT_MSG(m != NULL, "reply %d, notification %d", got_reply, got_note);
    TT_EQ_STR(verify(checker, tc_str(t2, "token"), NULL, true), "revoked");
    long long type = json_integer_value(json_array_get(m, 0));
    if (!first) first = (int)type;
    if (type == 1) {
      TT_EQ_INT(json_integer_value(json_array_get(m, 1)), id);
      TT_EQ_INT(tc_int(json_array_get(m, 3), "revoked"), 1);
      got_reply = true;
    } else {
      TT_EQ_INT(type, 2);
      TT_ASSERT(entry_of(json_array_get(m, 2), "jti", tc_str(t2, "jti")) != NULL);
      got_note = true;
    }
    json_decref(m);
  }
  fprintf(stderr, "on the revoking connection itself the %s came first\n",
          first == 1 ? "reply" : "notification");
  json_decref(t2);
  raw_close(&quiet);
  raw_close(&sub);
  json_decref(mp);
  json_decref(ms2);
  json_decref(ms1);
  json_decref(s);
  json_decref(q3);
  json_decref(q2);
  json_decref(q1);
  json_decref(p);
  json_decref(t);
  tessera_close(checker);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A notification is sent only once its revocation is durable: kill -9 the moment one arrives
 * (the revoker has not even read its reply) and the revocation is still there after restart. */
static void notification_means_durable(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "nina", "ttl", 600));
  json_t *p = pair_for(c, "nina");
  tessera_close(c);
  raw sub, rev;
  raw_open(&sub, &d);
  raw_open(&rev, &d);
  raw_subscribe(&sub);
  raw_send(&rev, "token.revoke", json_pack("{s:s}", "token", tc_str(t, "token")));
  expect_revoked_one(&sub, "jti", tc_str(t, "jti"));
  td_kill9(&d);
  raw_close(&sub);
  raw_close(&rev);
  td_launch(&d, NULL);
  c = tc_client(&d);
  TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, true), "revoked");
  tessera_close(c);

  raw_open(&sub, &d);
  raw_open(&rev, &d);
  raw_subscribe(&sub);
  raw_send(&rev, "token.revoke", json_pack("{s:s}", "family", tc_str(p, "family")));
  expect_revoked_one(&sub, "family", tc_str(p, "family"));
  td_kill9(&d);
  raw_close(&sub);
  raw_close(&rev);
  td_launch(&d, NULL);
  c = tc_client(&d);
  TT_EQ_STR(refresh(c, tc_str(p, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(p, "access_token"), NULL, true), "revoked");
  tessera_close(c);
  json_decref(p);
  json_decref(t);
  tc_stop_clean(&d);
}

/* ---- the revocation list is bounded ------------------------------------------------------ */

static void revocation_list_is_swept(void) {
  static const char *const args[] = {"--leeway", "0", "--sweep-interval", "200ms", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  enum { N = 20 };
  json_t *toks[N];
  long long last_exp = 0;
  for (int i = 0; i < N; i++) {
    toks[i] = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "paul", "ttl", 2));
    TT_EQ_INT(revoke_token(c, tc_str(toks[i], "token")), 1);
    if (tc_int(toks[i], "expires_at") > last_exp) last_exp = tc_int(toks[i], "expires_at");
  }
  /* A revoked family and a live one, both short-lived. */
  json_t *dead = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "paul",
                                                    "access_ttl", 2, "refresh_ttl", 2));
  json_t *live = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "paul",
                                                    "access_ttl", 2, "refresh_ttl", 2));
  TT_EQ_INT(revoke_with(c, json_pack("{s:s}", "family", tc_str(dead, "family"))), 1);
  if (tc_int(dead, "refresh_expires_at") > last_exp) last_exp = tc_int(dead, "refresh_expires_at");
  if (tc_int(live, "refresh_expires_at") > last_exp) last_exp = tc_int(live, "refresh_expires_at");
  TT_EQ_INT(tc_stat(c, "revocations"), N + 1);
  TT_EQ_INT(tc_stat(c, "families"), 1);
  long long swept0 = tc_stat(c, "swept");

  wait_clock_past(last_exp);
  TT_ASSERT_MSG(tc_wait_stat(c, "revocations", false, 0, 5000) == 0, "revocations still %lld after their exp",
                tc_stat(c, "revocations"));
  TT_ASSERT(tc_wait_stat(c, "families", false, 0, 5000) == 0);
  TT_ASSERT(tc_stat(c, "swept") >= swept0 + N + 2);
  /* Forgetting them resurrects nothing: the tokens themselves have expired. */
  for (int i = 0; i < N; i++) TT_EQ_STR(verify(c, tc_str(toks[i], "token"), NULL, true), "expired");
  TT_EQ_STR(refresh(c, tc_str(live, "refresh_token"), NULL), "expired");
  /* Revoking an expired token writes nothing. */
  TT_EQ_INT(revoke_token(c, tc_str(toks[0], "token")), 0);
  TT_EQ_INT(revoke_token(c, tc_str(dead, "refresh_token")), 0);
  TT_EQ_INT(tc_stat(c, "revocations"), 0);
  for (int i = 0; i < N; i++) json_decref(toks[i]);
  json_decref(live);
  json_decref(dead);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A token is accepted while now < exp + leeway: its last second is exp + leeway - 1. Its
 * revocation must stay in force through that second, whatever the sweeper does, and a family
 * must be refreshable through it. */
static void revocation_holds_through_the_last_second(void) {
  static const char *const args[] = {"--leeway", "0", "--sweep-interval", "100ms", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "vera", "ttl", 3));
  json_t *live = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "vera",
                                                    "access_ttl", 3, "refresh_ttl", 3));
  TT_EQ_INT(revoke_token(c, tc_str(t, "token")), 1);
  long long exp = tc_int(t, "expires_at");
  long long rexp = tc_int(live, "refresh_expires_at");
  wait_clock_past(rexp - 2); /* the refresh token's last second */
  json_t *next = NULL;
  if ((long long)time(NULL) == rexp - 1) { /* still accepted: the family must be there too */
    const char *code = refresh(c, tc_str(live, "refresh_token"), &next);
    TT_ASSERT_MSG(code[0] == 0 || (long long)time(NULL) >= rexp, "refresh in its last second: %s", code);
  }
  wait_clock_past(exp - 2);
  int checks = 0;
  while ((long long)time(NULL) == exp - 1) { /* the whole last second, with ~10 sweeps in it */
    const char *code = verify(c, tc_str(t, "token"), NULL, true);
    TT_ASSERT_MSG(strcmp(code, "revoked") == 0 || (strcmp(code, "expired") == 0 &&
                                                   (long long)time(NULL) >= exp),
                  "a revoked token answered '%s' in its last second", code);
    checks++;
    usleep(50 * 1000);
  }
  fprintf(stderr, "%d checks in the token's last second\n", checks);
  TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, true), "expired");
  /* Afterwards everything is swept: nothing is kept forever. */
  TT_ASSERT_MSG(tc_wait_stat(c, "revocations", false, 0, 5000) == 0, "revocations: %lld",
                tc_stat(c, "revocations"));
  if (next) wait_clock_past(tc_int(next, "refresh_expires_at"));
  TT_ASSERT_MSG(tc_wait_stat(c, "families", false, 0, 5000) == 0, "families: %lld", tc_stat(c, "families"));
  TT_ASSERT(tc_wait_stat(c, "expiry_index", false, 0, 5000) == 0);
  json_decref(next);
  json_decref(live);
  json_decref(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A family's access tokens may outlive its refresh token (access_ttl > refresh_ttl): revoking
 * the family must keep them dead until they expire, not just until the refresh token would. */
static void family_revocation_outlives_its_access_tokens(void) {
  static const char *const args[] = {"--leeway", "0", "--sweep-interval", "200ms", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  raw sub;
  raw_open(&sub, &d);
  raw_subscribe(&sub);
  json_t *p = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "quin", "access_ttl",
                                                 60, "refresh_ttl", 1));
  json_t *q1 = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "quin", "access_ttl",
                                                  60, "refresh_ttl", 1));
  json_t *q2 = refresh_ok(c, tc_str(q1, "refresh_token"));
  json_t *q3 = refresh_ok(c, tc_str(q2, "refresh_token"));
  TT_EQ_INT(revoke_with(c, json_pack("{s:s}", "family", tc_str(p, "family"))), 1);
  long long until = expect_revoked_one(&sub, "family", tc_str(p, "family"));
  TT_ASSERT_MSG(until >= tc_int(p, "access_expires_at"),
                "the family entry ends at %lld, its access token lives until %lld", until,
                tc_int(p, "access_expires_at"));
  TT_EQ_STR(refresh(c, tc_str(q1, "refresh_token"), NULL), "reused");
  until = expect_revoked_one(&sub, "family", tc_str(q1, "family"));
  TT_ASSERT(until >= tc_int(q3, "access_expires_at"));
  long long past = tc_int(q3, "refresh_expires_at");
  if (tc_int(p, "refresh_expires_at") > past) past = tc_int(p, "refresh_expires_at");
  wait_clock_past(past + 1); /* the refresh tokens are gone; the access tokens are not */
  TT_EQ_STR(verify(c, tc_str(p, "access_token"), NULL, false), "");
  TT_EQ_STR(verify(c, tc_str(p, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(q3, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(c, tc_str(q1, "access_token"), NULL, true), "revoked");
  raw_close(&sub);
  json_decref(q3);
  json_decref(q2);
  json_decref(q1);
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- the stolen-token story ------------------------------------------------------------- */

static void stolen_tokens_are_cut_off(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *app = tc_client(&d), *attacker = tc_client(&d);
  /* alice logs in: the app hands her a pair. */
  json_t *login = tc_call_ok(app, "token.pair", json_pack("{s:s, s:s, s:i}", "sub", "alice",
                                                       "scope", "mail", "access_ttl", 900));
  /* Malware copies both tokens. */
  char *stolen_at = strdup(tc_str(login, "access_token"));
  char *stolen_rt = strdup(tc_str(login, "refresh_token"));
  /* alice keeps using the app; her client rotates. */
  json_t *alice = refresh_ok(app, tc_str(login, "refresh_token"));
  /* The attacker uses the access token: it is valid. */
  TT_EQ_STR(verify(attacker, stolen_at, NULL, false), "");
  TT_EQ_STR(verify(attacker, stolen_at, NULL, true), "");

  /* The app's API servers check access tokens locally, with a subscribed verifier. */
  tessera_verifier *lv = NULL;
  tessera_verifier_options o;
  tessera_verifier_options_init(&o);
  o.socket_path = d.socket;
  o.subscribe = 1;
  tessera_error verr = {{0}, {0}};
  int vrc = tessera_verifier_new(&o, &lv, &verr);
  TT_ASSERT_MSG(vrc == 0, "tessera_verifier_new: %s (%s)", tessera_strerror(vrc), verr.code);
  TT_EQ_INT(tessera_verifier_verify(lv, stolen_at, strlen(stolen_at), NULL, &verr), 0);
  tessera_verifier_stats vst;
  tessera_verifier_stats_get(lv, &vst);
  uint64_t seen = vst.feed_events;

  /* The app's security check notices and logs alice out everywhere. */
  json_t *r = tc_call_ok(app, "user.revoke", json_pack("{s:s}", "sub", "alice"));
  long long cutoff = (long long)time(NULL);
  TT_EQ_INT(tc_int(r, "families"), 1);
  json_decref(r);
  /* Statelessly the stolen access token still verifies until its exp ... */
  TT_EQ_STR(verify(attacker, stolen_at, NULL, false), "");
  /* ... but every check that consults the revocation list refuses it at once, */
  TT_EQ_STR(verify(attacker, stolen_at, NULL, true), "revoked");
  /* the stolen refresh token is refused, */
  TT_EQ_STR(refresh(attacker, stolen_rt, NULL), "revoked");
  /* and so is alice's own: she must log in again. */
  TT_EQ_STR(refresh(app, tc_str(alice, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(app, tc_str(alice, "access_token"), NULL, true), "revoked");

  /* The subscribed local verifier refuses it within a second, with no call per verify. */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long ms = 0;
  for (;;) {
    vrc = tessera_verifier_verify(lv, stolen_at, strlen(stolen_at), NULL, &verr);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (vrc != 0 || ms >= 1000) break;
    tessera_verifier_wait_feed(lv, seen, 1000 - (int)ms); /* the feed's own signal */
    tessera_verifier_stats_get(lv, &vst);
    seen = vst.feed_events;
  }
  TT_ASSERT_MSG(vrc == TESSERA_EREJECTED, "the local verifier still accepts after %ld ms", ms);
  TT_EQ_STR(verr.code, "revoked");
  fprintf(stderr, "the local verifier refused the stolen token %ld ms after user.revoke answered\n", ms);
  long long requests = tc_stat(app, "requests");
  for (int i = 0; i < 100; i++)
    TT_EQ_INT(tessera_verifier_verify(lv, stolen_at, strlen(stolen_at), NULL, NULL),
              TESSERA_EREJECTED);
  TT_EQ_INT(tc_stat(app, "requests"), requests + 1); /* only that sys.stats: no call per verify */

  /* alice logs in again (in a later second than the cut-off) and all is well. */
  wait_clock_past(cutoff);
  json_t *relogin = pair_for(app, "alice");
  TT_EQ_STR(verify(app, tc_str(relogin, "access_token"), NULL, true), "");
  json_decref(refresh_ok(app, tc_str(relogin, "refresh_token")));
  /* The attacker's copies stay dead. */
  TT_EQ_STR(refresh(attacker, stolen_rt, NULL), "revoked");
  TT_EQ_STR(verify(attacker, stolen_at, NULL, true), "revoked");
  /* ... and locally: the new login verifies, the stolen token does not. */
  TT_EQ_INT(tessera_verifier_verify(lv, tc_str(relogin, "access_token"),
                                    strlen(tc_str(relogin, "access_token")), NULL, &verr), 0);
  TT_EQ_INT(tessera_verifier_verify(lv, stolen_at, strlen(stolen_at), NULL, NULL),
            TESSERA_EREJECTED);
  tessera_verifier_free(lv);
  json_decref(relogin);
  json_decref(alice);
  json_decref(login);
  free(stolen_rt);
  free(stolen_at);
  tessera_close(attacker);
  tessera_close(app);
  tc_stop_clean(&d);
}

/* The same story, the app revoking only the family of the stolen refresh token. */
static void stolen_refresh_token_replay_kills_the_family(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *app = tc_client(&d), *attacker = tc_client(&d);
  json_t *login = pair_for(app, "alice");
  char *stolen_rt = strdup(tc_str(login, "refresh_token"));
  char *stolen_at = strdup(tc_str(login, "access_token"));
  json_t *other_device = pair_for(app, "alice");
  /* The attacker refreshes first and gets a fresh pair ... */
  json_t *evil = refresh_ok(attacker, stolen_rt);
  json_t *evil2 = refresh_ok(attacker, tc_str(evil, "refresh_token"));
  /* ... then alice's client presents the token it holds: two generations old, reuse. */
  TT_EQ_STR(refresh(app, tc_str(login, "refresh_token"), NULL), "reused");
  /* Everything the attacker got from that family is dead. */
  TT_EQ_STR(refresh(attacker, tc_str(evil2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(attacker, tc_str(evil2, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(attacker, tc_str(evil, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(verify(attacker, stolen_at, NULL, true), "revoked");
  /* alice's other device (another family) is not affected. */
  json_decref(refresh_ok(app, tc_str(other_device, "refresh_token")));
  /* Revoking the dead family again is a quiet no-op. */
  TT_EQ_INT(revoke_with(app, json_pack("{s:s}", "family", tc_str(login, "family"))), 0);
  json_decref(evil2);
  json_decref(evil);
  json_decref(other_device);
  json_decref(login);
  free(stolen_at);
  free(stolen_rt);
  tessera_close(attacker);
  tessera_close(app);
  tc_stop_clean(&d);
}

/* ---- durability ------------------------------------------------------------------------- */

static void pairs_and_revocations_survive_kill9(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *p = pair_for(c, "rita");         /* refreshes after the crash */
  json_t *rot = pair_for(c, "rita");       /* rotated before the crash */
  json_t *rot2 = refresh_ok(c, tc_str(rot, "refresh_token"));
  json_t *fam = pair_for(c, "rita");       /* family revoked */
  json_t *reuse = pair_for(c, "rita");     /* reuse detected */
  json_t *reuse2 = refresh_ok(c, tc_str(reuse, "refresh_token"));
  json_t *reuse3 = refresh_ok(c, tc_str(reuse2, "refresh_token"));
  TT_EQ_STR(refresh(c, tc_str(reuse, "refresh_token"), NULL), "reused");
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "rita"));
  TT_EQ_INT(revoke_token(c, tc_str(t, "token")), 1);
  TT_EQ_INT(revoke_with(c, json_pack("{s:s}", "family", tc_str(fam, "family"))), 1);
  json_t *gone = pair_for(c, "sam");
  json_t *gone_s = session_for(c, "sam");
  json_decref(tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "sam")));
  tessera_close(c);

  td_kill9(&d);
  td_launch(&d, NULL);
  c = tc_client(&d);
  /* Acknowledged pairs and rotations are there. */
  TT_EQ_STR(verify(c, tc_str(p, "access_token"), NULL, true), "");
  json_t *p2 = refresh_ok(c, tc_str(p, "refresh_token"));
  TT_EQ_STR(tc_str(p2, "family"), tc_str(p, "family"));
  json_t *rot3 = refresh_ok(c, tc_str(rot2, "refresh_token"));
  json_decref(rot3);
  /* Acknowledged revocations are there. */
  TT_EQ_STR(verify(c, tc_str(t, "token"), NULL, true), "revoked");
  TT_EQ_STR(refresh(c, tc_str(fam, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(fam, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(refresh(c, tc_str(reuse3, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(reuse3, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(refresh(c, tc_str(gone, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(verify(c, tc_str(gone, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(validate(c, tc_str(gone_s, "sid")), "unauthenticated");
  json_decref(p2);
  json_decref(gone_s);
  json_decref(gone);
  json_decref(t);
  json_decref(reuse3);
  json_decref(reuse2);
  json_decref(reuse);
  json_decref(fam);
  json_decref(rot2);
  json_decref(rot);
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A rotation acknowledged just before a crash: the grace retry still answers the same pair
 * (the successor is re-signed from what was stored). */
static void grace_retry_survives_kill9(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *p1 = pair_for(c, "tess");
  json_t *p2 = refresh_ok(c, tc_str(p1, "refresh_token"));
  tessera_close(c);
  td_kill9(&d);
  td_launch(&d, NULL);
  c = tc_client(&d);
  json_t *again = refresh_ok(c, tc_str(p1, "refresh_token"));
  TT_ASSERT((long long)time(NULL) - tf_claim_int(tc_str(p2, "refresh_token"), "iat") <= 10);
  TT_EQ_STR(tc_str(again, "access_token"), tc_str(p2, "access_token"));
  TT_EQ_STR(tc_str(again, "refresh_token"), tc_str(p2, "refresh_token"));
  json_decref(again);
  json_decref(p2);
  json_decref(p1);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- a revocation that is not written is not announced ----------------------------------- */

static void failed_revocation_is_not_announced(void) {
  static const char *const args[] = {"--max-store-bytes", "2M", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *s1 = session_for(c, "uma"), *s2 = session_for(c, "uma");
  json_t *up = pair_for(c, "uma");
  /* Fill the store with families until it answers unavailable. */
  char *blob = malloc(3001);
  memset(blob, 'z', 3000);
  blob[3000] = 0;
  json_t *fill = json_pack("{s:s, s:{s:s}}", "sub", "filler", "claims", "blob", blob);
  int n = 0;
  const char *code = "";
  for (; n < 20000; n++) {
    code = tc_call_code(c, "token.pair", json_incref(fill), NULL);
    if (code[0]) break;
  }
  fprintf(stderr, "%d families fit in 2M; then %s\n", n, code);
  TT_EQ_STR(code, "unavailable");
  raw sub;
  raw_open(&sub, &d);
  long long kv = raw_subscribe(&sub);
  /* Log uma out everywhere while the store is full. */
  const char *got = tc_call_code(c, "user.revoke", json_pack("{s:s}", "sub", "uma"), NULL);
  fprintf(stderr, "user.revoke on a full store: %s\n", got[0] ? got : "ok");
  if (strcmp(got, "unavailable") == 0) {
    /* Nothing was written: sessions and refresh still work ... */
    TT_EQ_STR(validate(c, tc_str(s1, "sid")), "");
    TT_EQ_STR(verify(c, tc_str(up, "access_token"), NULL, true), "");
    /* ... and subscribers must not have been told otherwise: the next notification is the
     * key rotation's (a notification that is no revocation, as a fence). */
    json_t *r = tc_call_ok(c, "keys.rotate", NULL);
    json_decref(r);
    json_t *m = raw_next(&sub, 10000);
    TT_ASSERT(m != NULL);
    char *shown = json_dumps(m, JSON_COMPACT);
    TT_ASSERT_MSG(strcmp(json_string_value(json_array_get(m, 1)), "keys") == 0,
                  "subscribers heard of a revocation that was not written: %.500s", shown);
    TT_ASSERT(tc_int(json_array_get(json_array_get(m, 2), 0), "keys_version") != kv);
    free(shown);
    json_decref(m);
  } else {
    TT_EQ_STR(got, "");
    TT_EQ_STR(validate(c, tc_str(s1, "sid")), "unauthenticated");
  }
  raw_close(&sub);
  json_decref(fill);
  free(blob);
  json_decref(up);
  json_decref(s2);
  json_decref(s1);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* user.revoke reaches every family, however many the user holds (they are revoked in rounds). */
static void user_revoke_reaches_thousands_of_families(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 4500 }; /* more than one round of 4096 */
  json_t *p = json_pack("{s:s}", "sub", "many");
  static uint32_t ids[N];
  for (int i = 0; i < N; i++) TT_EQ_INT(tessera_send(c, "token.pair", p, &ids[i]), 0);
  json_t *last = NULL;
  for (int i = 0; i < N; i++) {
    json_t *r = NULL;
    TT_EQ_INT(tessera_wait(c, ids[i], 60000, &r, NULL), 0);
    if (i == N - 1) last = r;
    else json_decref(r);
  }
  json_decref(p);
  json_t *r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "many"));
  TT_EQ_INT(json_integer_value(json_object_get(r, "families")), N);
  json_decref(r);
  json_t *q = json_pack("{s:O}", "refresh_token", json_object_get(last, "refresh_token"));
  json_t *res = NULL;
  tessera_error err;
  TT_EQ_INT(tessera_call(c, "token.refresh", q, 10000, &res, &err), TESSERA_EREMOTE);
  TT_EQ_STR(err.code, "revoked");
  json_decref(q);
  json_decref(last);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

/* The CLI's refresh-flow commands: token pair | refresh | revoke, user revoke, and events,
 * which prints each notification as a JSON line. */
static void cli_refresh_commands(void) {
  td_daemon d;
  td_start(&d, NULL);
  char cmd[512], line[4096];
  snprintf(cmd, sizeof(cmd), "%s --socket %s events", TESSERA_CLI_PATH, d.socket);
  FILE *events = popen(cmd, "r");
  TT_ASSERT(events && fgets(line, sizeof(line), events));
  TT_ASSERT_MSG(strstr(line, "\"subscribed\":true") != NULL, "events printed: %s", line);
  json_t *pair = tc_cli_json(&d, (const char *const[]){"token", "pair", "dana", "--scope", "read", NULL});
  const char *rt = json_string_value(json_object_get(pair, "refresh_token"));
  TT_ASSERT(rt && json_is_string(json_object_get(pair, "family")));
  json_t *next = tc_cli_json(&d, (const char *const[]){"token", "refresh", rt, NULL});
  TT_ASSERT(json_is_string(json_object_get(next, "refresh_token")));
  json_t *r = tc_cli_json(&d, (const char *const[]){"token", "revoke", "garbage", NULL});
  TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), 0);
  json_decref(r);
  r = tc_cli_json(&d, (const char *const[]){"user", "revoke", "dana", NULL});
  TT_EQ_INT(json_integer_value(json_object_get(r, "families")), 1);
  json_decref(r);
  /* events saw the revocation, as one JSON line */
  TT_ASSERT(fgets(line, sizeof(line), events));
  json_t *ev = json_loads(line, 0, NULL);
  TT_ASSERT_MSG(ev && strcmp(json_string_value(json_object_get(ev, "method")), "revoked") == 0,
                "events printed: %s", line);
  TT_ASSERT(strstr(line, "\"kind\":\"sub\"") && strstr(line, "\"id\":\"dana\""));
  json_decref(ev);
  static char out[8192];
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), NULL, 0,
                   (const char *const[]){"token", "refresh",
                                         json_string_value(json_object_get(next, "refresh_token")),
                                         NULL}),
            1); /* revoked */
  json_decref(pair);
  json_decref(next);
  td_stop(&d); /* the events command ends when the daemon goes */
  pclose(events);
  td_cleanup(&d);
}

static const tt_case cases[] = {
    TT_CASE(cli_refresh_commands),
    TT_CASE(user_revoke_reaches_thousands_of_families),
    TT_CASE(pair_reply_shape),
    TT_CASE(concurrent_refreshes_advance_the_family_once),
    TT_CASE(previous_token_within_grace_then_reused),
    TT_CASE(two_generations_old_is_reused_at_once),
    TT_CASE(refresh_family_has_a_max_lifetime),
    TT_CASE(revoke_refresh_token_kills_its_family),
    TT_CASE(revoke_by_family),
    TT_CASE(revoke_access_token_denylists_its_jti),
    TT_CASE(revoke_by_jti_and_exp),
    TT_CASE(revoke_by_jti_with_huge_exp),
    TT_CASE(revoked_refresh_jti_cannot_refresh),
    TT_CASE(revoke_garbage_answers_zero),
    TT_CASE(revoke_needs_exactly_one_target),
    TT_CASE(user_revoke_logs_out_everywhere),
    TT_CASE(login_right_after_user_revoke_works),
    TT_CASE(subscribers_hear_every_revocation),
    TT_CASE(notification_means_durable),
    TT_CASE(revocation_list_is_swept),
    TT_CASE(revocation_holds_through_the_last_second),
    TT_CASE(family_revocation_outlives_its_access_tokens),
    TT_CASE(stolen_tokens_are_cut_off),
    TT_CASE(stolen_refresh_token_replay_kills_the_family),
    TT_CASE(pairs_and_revocations_survive_kill9),
    TT_CASE(grace_retry_survives_kill9),
    TT_CASE(failed_revocation_is_not_announced),
};
TT_MAIN(cases)
