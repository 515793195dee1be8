/* tests/integration/test_replicas.c: three tesserad sharing one Redis (issue 12, the
 * deployment of several app replicas, each with its sidecar): a session made through A is
 * valid through B and C; a revocation through C is refused through A at once; 30 concurrent
 * refreshes of one token spread over A, B and C advance the family exactly once (the grace
 * rule across sidecars); a subscriber on B hears a revocation made on A within a second; a
 * subscriber on B that was away while A revoked catches up from its cursor. Each sidecar's
 * session cache (--session-cache) stays coherent: a session cached on A is refused by A right
 * after B or C revoked or rotated it, and after Redis was emptied.
 *
 * The three share the Redis (a real redis-server on a temp Unix socket, tests/lib/redis.h)
 * and the signing keys (one keys dir): what one issues the others verify. Waiting is for
 * notifications with bounded reads; nothing sleeps. */
#include "calls.h"
#include "daemon.h"
#include "redis.h"
#include "tt.h"

#include <tessera/tessera.h>

#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct trio {
  tr_redis redis;
  td_daemon d[3];
} trio;

/* The deadline is 2 s, not the default 200 ms: these cases test sharing and coherence under
 * floods of pipelined creates, each fsync'ed by appendfsync always on a shared machine;
 * deadlines and their faults are test_redis_faults'. */
static void trio_start(trio *t) {
  tr_start(&t->redis, NULL);
  const char *extra[] = {"--store", t->redis.url, "--redis-timeout", "2000", NULL};
  for (int i = 0; i < 3; i++) {
    td_init(&t->d[i]);
    if (i > 0) snprintf(t->d[i].keys, sizeof(t->d[i].keys), "%s", t->d[0].keys);
    td_launch(&t->d[i], extra);
  }
}

static void trio_stop(trio *t) {
  for (int i = 0; i < 3; i++) {
    tc_stop_clean(&t->d[i]);
    td_cleanup(&t->d[i]);
  }
  tr_stop(&t->redis);
  tr_cleanup(&t->redis);
}

static void session_made_on_a_validates_on_b_and_c(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]), *b = tc_client(&t.d[1]), *c = tc_client(&t.d[2]);
  json_t *s = tc_create_sub(a, "ana");
  const char *sid = tc_str(s, "sid");
  tc_expect_valid(b, sid);
  tc_expect_valid(c, sid);
  json_t *out = NULL;
  TT_EQ_STR(tc_validate(c, sid, NULL, &out), "");
  TT_EQ_STR(tc_str(out, "sub"), "ana");
  TT_EQ_STR(tc_str(out, "handle"), tc_str(s, "handle"));
  /* listed through any of them */
  TT_EQ_INT(tc_count_listed(b, "ana"), 1);
  json_decref(out);
  json_decref(s);
  tessera_close(a), tessera_close(b), tessera_close(c);
  trio_stop(&t);
}

static void revoked_on_c_is_refused_on_a_at_once(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]), *c = tc_client(&t.d[2]);
  json_t *s = tc_create_sub(a, "ben");
  tc_expect_valid(a, tc_str(s, "sid"));
  TT_EQ_INT(tc_revoke_n(c, "sid", tc_str(s, "sid")), 1);
  tc_expect_unauthenticated(a, tc_str(s, "sid"));
  /* A token revoked on C is refused by A's check_revoked, and its family by A's refresh. */
  char *tok = tc_issue_sub(a, "ben");
  TT_EQ_STR(tc_verify_code(a, tok, NULL, true), "");
  TT_EQ_INT(tc_revoke_token(c, tok), 1);
  TT_EQ_STR(tc_verify_code(a, tok, NULL, true), "revoked");
  json_t *p = tc_pair_for(a, "ben");
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s}", "family", tc_str(p, "family"))), 1);
  TT_EQ_STR(tc_refresh(a, tc_str(p, "refresh_token"), NULL), "revoked");
  /* user.revoke on C: A refuses the sub's sessions and tokens issued before it. */
  json_t *s2 = tc_create_sub(a, "ben");
  char *tok2 = tc_issue_sub(a, "ben");
  json_decref(tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "ben")));
  tc_expect_unauthenticated(a, tc_str(s2, "sid"));
  TT_EQ_STR(tc_verify_code(a, tok2, NULL, true), "revoked");
  free(tok), free(tok2);
  json_decref(s), json_decref(s2), json_decref(p);
  tessera_close(a), tessera_close(c);
  trio_stop(&t);
}

/* Waits (bounded) for a "keys" notification on sub; returns its keys_version. */
static long long next_keys_note(tessera_client *sub) {
  for (;;) {
    char method[TESSERA_NOTIFY_METHOD_MAX];
    json_t *args = NULL;
    int rc = tessera_next_notification(sub, 10000, method, &args);
    TT_ASSERT_MSG(rc == 0, "no keys notification: %s", tessera_strerror(rc));
    if (strcmp(method, "keys") == 0) {
      long long v = tc_int(json_array_get(args, 0), "keys_version");
      json_decref(args);
      return v;
    }
    json_decref(args);
  }
}

/* keys.rotate on A, whose key directory B and C share: B reloads it at once (a key-change
 * entry on the feed), its subscribers hear "keys", its JWKS follows, and after a second
 * rotation B verifies what A signs with the key the first one made (unknown to B before). */
static void keys_rotated_on_a_are_reloaded_by_b(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]), *b = tc_client(&t.d[1]), *c = tc_client(&t.d[2]),
                 *sub = tc_client(&t.d[1]), *sub_c = tc_client(&t.d[2]);
  json_decref(tc_call_ok(sub, "events.subscribe", NULL));
  json_decref(tc_call_ok(sub_c, "events.subscribe", NULL));
  json_t *jwks = tc_call_ok(b, "keys.jwks", NULL);
  long long v0 = tc_int(jwks, "keys_version");
  json_decref(jwks);
  json_t *rot = tc_call_ok(a, "keys.rotate", NULL);
  long long v1 = tc_int(rot, "keys_version");
  json_decref(rot);
  TT_ASSERT(v1 != v0);
  TT_EQ_INT(next_keys_note(sub), v1);
  jwks = tc_call_ok(b, "keys.jwks", NULL);
  TT_EQ_INT(tc_int(jwks, "keys_version"), v1);
  json_decref(jwks);
  rot = tc_call_ok(a, "keys.rotate", NULL);
  long long v2 = tc_int(rot, "keys_version");
  json_decref(rot);
  TT_EQ_INT(next_keys_note(sub), v2);
  while (next_keys_note(sub_c) != v2) {} /* C reloads on its own feed read: awaited too */
  char *tok = tc_issue_sub(a, "kim");
  TT_EQ_STR(tc_verify_code(b, tok, NULL, false), "");
  TT_EQ_STR(tc_verify_code(c, tok, NULL, false), "");
  free(tok);
  tessera_close(a), tessera_close(b), tessera_close(c), tessera_close(sub), tessera_close(sub_c);
  trio_stop(&t);
}

/* ---- the session cache (--session-cache, CLIENT TRACKING) ------------------------------------ */

/* Waits (bounded) until d's session cache is trusted: tracking on, invalidations flowing. */
static void await_cache(tessera_client *c) {
  TT_EQ_INT(tc_wait_stat(c, "redis_cache_up", true, 1, 10000), 1);
}

/* A validate served from A's cache: the hit counter moves. */
static void expect_cached_valid(tessera_client *a, const char *sid) {
  long long hits = tc_stat(a, "redis_cache_hits");
  tc_expect_valid(a, sid);
  TT_ASSERT_MSG(tc_stat(a, "redis_cache_hits") == hits + 1, "validate was not a cache hit");
}

/* Sessions A has cached are refused by A the moment B or C revoked them, by every way of
 * revoking, over many rounds (each round: a fresh session, cached on A, revoked elsewhere,
 * validated on A right after the revoking call's reply). */
static void cached_sessions_are_refused_at_once_after_a_revocation_elsewhere(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]), *b = tc_client(&t.d[1]), *c = tc_client(&t.d[2]);
  await_cache(a);
  const int rounds = getenv("TT_SANITIZED") ? 50 : 200;
  for (int i = 0; i < rounds; i++) {
    char sub[32];
    snprintf(sub, sizeof(sub), "cached-%d", i);
    json_t *s = tc_create_sub(b, sub);
    const char *sid = tc_str(s, "sid");
    tc_expect_valid(a, sid);         /* a miss: fills A's cache */
    expect_cached_valid(a, sid);     /* then served from it */
    tessera_client *other = i % 2 ? b : c;
    switch (i % 4) {
    case 0: TT_EQ_INT(tc_revoke_n(other, "sid", sid), 1); break;
    case 1: TT_EQ_INT(tc_revoke_n(other, "handle", tc_str(s, "handle")), 1); break;
    case 2:
      json_decref(tc_call_ok(other, "session.revoke_all", json_pack("{s:s}", "sub", sub)));
      break;
    default: json_decref(tc_call_ok(other, "user.revoke", json_pack("{s:s}", "sub", sub)));
    }
    tc_expect_unauthenticated(a, sid);
    json_decref(s);
  }
  /* A rotation elsewhere: the old sid is refused on A, the new one valid. */
  json_t *s = tc_create_sub(b, "rotated");
  tc_expect_valid(a, tc_str(s, "sid"));
  expect_cached_valid(a, tc_str(s, "sid"));
  json_t *r = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", tc_str(s, "sid")));
  tc_expect_unauthenticated(a, tc_str(s, "sid"));
  tc_expect_valid(a, tc_str(r, "sid"));
  TT_ASSERT(tc_stat(a, "redis_cache_invalidations") > 0);
  json_decref(r), json_decref(s);
  tessera_close(a), tessera_close(b), tessera_close(c);
  trio_stop(&t);
}

/* A revoke_all of many sessions on B: Redis announces the 1,100 keys in one invalidation
 * message of about 80 KiB, which it writes in parts (64 KiB a client per turn). Every session
 * A had cached is refused by A right after B's reply, never served from a half-read message. */
static void a_large_revocation_elsewhere_reaches_every_cached_session(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]), *b = tc_client(&t.d[1]);
  await_cache(a);
  enum { N = 1100, CHECKED = 100 };
  for (int round = 0; round < 3; round++) {
    char sub[32];
    snprintf(sub, sizeof(sub), "bulk-%d", round);
    tc_idset ids = tc_idset_new(N);
    json_t *params = json_pack("{s:s}", "sub", sub);
    tc_create_many(b, params, N, tc_keep_ids, &ids);
    json_decref(params);
    /* The creates were announced too (BCAST tracks every write): until A has read that
     * message whole, its cache answers nothing, so validate until each one is a hit. */
    for (int i = 0; i < CHECKED; i++) {
      long long deadline = tc_mono_ms() + 10000, hits = tc_stat(a, "redis_cache_hits");
      do tc_expect_valid(a, ids.sid[i * (N / CHECKED)]);
      while (tc_stat(a, "redis_cache_hits") == hits && tc_mono_ms() < deadline);
      TT_ASSERT_MSG(tc_stat(a, "redis_cache_hits") > hits,
                    "session %d never served from cache (up %lld, misses %lld)", i,
                    tc_stat(a, "redis_cache_up"), tc_stat(a, "redis_cache_misses"));
    }
    json_t *r = tc_call_ok(b, "session.revoke_all", json_pack("{s:s}", "sub", sub));
    TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), N);
    json_decref(r);
    for (int i = CHECKED - 1; i >= 0; i--)
      tc_expect_unauthenticated(a, ids.sid[i * (N / CHECKED)]);
    tc_idset_free(&ids);
  }
  tessera_close(a), tessera_close(b);
  trio_stop(&t);
}

/* FLUSHALL (or anything that empties Redis) empties every sidecar's cache: a cached session
 * Redis no longer has is refused. */
static void flushall_empties_the_caches(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]);
  await_cache(a);
  json_t *s = tc_create_sub(a, "flushed");
  tc_expect_valid(a, tc_str(s, "sid"));
  expect_cached_valid(a, tc_str(s, "sid"));
  char out[64];
  TT_EQ_INT(tr_cli(&t.redis, out, sizeof(out), (const char *[]){"FLUSHALL", NULL}), 0);
  tc_expect_unauthenticated(a, tc_str(s, "sid"));
  json_decref(s);
  tessera_close(a);
  trio_stop(&t);
}

/* --session-cache 0: no cache, every validate asks Redis (and still works). */
static void no_cache_when_turned_off(void) {
  tr_redis redis;
  tr_start(&redis, NULL);
  td_daemon d;
  td_start(&d, (const char *[]){"--store", redis.url, "--session-cache", "0", "--redis-timeout",
                                 "2000", NULL});
  tessera_client *c = tc_client(&d);
  json_t *s = tc_create_sub(c, "plain");
  for (int i = 0; i < 3; i++) tc_expect_valid(c, tc_str(s, "sid"));
  TT_EQ_INT(tc_stat(c, "redis_cache_up"), 0);
  TT_EQ_INT(tc_stat(c, "redis_cache_hits"), 0);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
  td_cleanup(&d);
  tr_stop(&redis);
  tr_cleanup(&redis);
}

#define RACERS 30

typedef struct racer {
  const td_daemon *d;
  const char *rt;
  pthread_barrier_t *go;
  char code[32];
  char next_rt[2048];
  char family[64];
} racer;

static void *race(void *arg) {
  racer *r = arg;
  tessera_client *c = NULL;
  if (tessera_connect(r->d->socket, &c) != 0) {
    snprintf(r->code, sizeof(r->code), "connect");
    pthread_barrier_wait(r->go);
    return NULL;
  }
  pthread_barrier_wait(r->go);
  json_t *params = json_pack("{s:s}", "refresh_token", r->rt), *res = NULL;
  tessera_error err = {{0}, {0}};
  int rc = tessera_call(c, "token.refresh", params, 10000, &res, &err);
  json_decref(params);
  if (rc == 0) {
    snprintf(r->next_rt, sizeof(r->next_rt), "%s",
             json_string_value(json_object_get(res, "refresh_token")));
    snprintf(r->family, sizeof(r->family), "%s",
             json_string_value(json_object_get(res, "family")));
  } else {
    snprintf(r->code, sizeof(r->code), "%s", err.code[0] ? err.code : tessera_strerror(rc));
  }
  json_decref(res);
  tessera_close(c);
  return NULL;
}

static void thirty_concurrent_refreshes_advance_the_family_once(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]);
  json_t *p = tc_pair_for(a, "cy");
  racer rs[RACERS];
  pthread_t th[RACERS];
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, RACERS);
  for (int i = 0; i < RACERS; i++) {
    memset(&rs[i], 0, sizeof(rs[i]));
    rs[i].d = &t.d[i % 3];
    rs[i].rt = tc_str(p, "refresh_token");
    rs[i].go = &go;
    TT_ASSERT(pthread_create(&th[i], NULL, race, &rs[i]) == 0);
  }
  for (int i = 0; i < RACERS; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&go);
  /* Every one succeeded (one rotated, the others are retries within the grace) and got the
   * very same successor: the family moved exactly one step. */
  for (int i = 0; i < RACERS; i++) {
    TT_ASSERT_MSG(rs[i].code[0] == 0, "refresh %d (via %c) failed: %s", i, 'A' + i % 3,
                  rs[i].code);
    TT_EQ_STR(rs[i].family, tc_str(p, "family"));
    TT_EQ_STR(rs[i].next_rt, rs[0].next_rt);
  }
  TT_ASSERT(strcmp(rs[0].next_rt, tc_str(p, "refresh_token")) != 0);
  /* The successor is the family's current token: it rotates (through C), once. */
  tessera_client *c = tc_client(&t.d[2]);
  json_t *q = tc_refresh_ok(c, rs[0].next_rt);
  TT_ASSERT(strcmp(tc_str(q, "refresh_token"), rs[0].next_rt) != 0);
  json_decref(q);
  json_decref(p);
  tessera_close(a), tessera_close(c);
  trio_stop(&t);
}

/* The next revocation entry heard on c within timeout_ms (a notification may carry several:
 * the rest wait in q for the next calls): its kind and id. */
typedef struct heard {
  json_t *q; /* entries not returned yet */
} heard;

static bool next_revoked(tessera_client *c, heard *h, int timeout_ms, char *kind, char *id,
                         size_t cap) {
  char method[TESSERA_NOTIFY_METHOD_MAX];
  while (!h->q || json_array_size(h->q) == 0) {
    json_t *args = NULL;
    int rc = tessera_next_notification(c, timeout_ms, method, &args);
    if (rc == TESSERA_ETIMEDOUT) return false;
    TT_ASSERT_MSG(rc == 0, "next_notification: %s", tessera_strerror(rc));
    TT_ASSERT_MSG(strcmp(method, "reset") != 0, "an unexpected reset");
    if (strcmp(method, "revoked") == 0) {
      json_decref(h->q);
      h->q = args;
    } else {
      json_decref(args);
    }
  }
  json_t *e = json_array_get(h->q, 0);
  snprintf(kind, 16, "%s", json_string_value(json_object_get(e, "kind")));
  snprintf(id, cap, "%s", json_string_value(json_object_get(e, "id")));
  json_array_remove(h->q, 0);
  return true;
}

static int cmp_ll(const void *x, const void *y) {
  long long a = *(const long long *)x, b = *(const long long *)y;
  return a < b ? -1 : a > b;
}

static void subscriber_on_b_hears_a_revocation_on_a_within_a_second(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]), *sub = tc_client(&t.d[1]);
  json_decref(tc_call_ok(sub, "events.subscribe", NULL));
  heard h = {NULL};
  enum { ROUNDS = 50 };
  long long lat[ROUNDS];
  for (int i = 0; i < ROUNDS; i++) {
    json_t *tok = tc_call_ok(a, "token.issue", json_pack("{s:s}", "sub", "dee"));
    TT_EQ_INT(tc_revoke_token(a, tc_str(tok, "token")), 1);
    long long t0 = tc_mono_ms();
    char kind[16], id[128];
    TT_ASSERT_MSG(next_revoked(sub, &h, 1000, kind, id, sizeof(id)),
                  "B heard nothing within a second of A's revocation");
    lat[i] = tc_mono_ms() - t0;
    TT_ASSERT(lat[i] <= 1000);
    TT_EQ_STR(kind, "jti");
    TT_EQ_STR(id, tc_str(tok, "jti"));
    json_decref(tok);
  }
  /* Reported, not asserted (speed goals are the benchmarks'): the issue's goal is p99 < 50 ms. */
  qsort(lat, ROUNDS, sizeof(lat[0]), cmp_ll);
  printf("# fan-out A -> B, reply to notification: p50 %lld ms, p99 %lld ms (%d revocations)\n",
         lat[ROUNDS / 2], lat[ROUNDS * 99 / 100], ROUNDS);
  json_decref(h.q);
  tessera_close(a), tessera_close(sub);
  trio_stop(&t);
}

static void subscriber_on_b_catches_up_from_its_cursor(void) {
  trio t;
  trio_start(&t);
  tessera_client *a = tc_client(&t.d[0]), *sub = tc_client(&t.d[1]);
  json_t *r = tc_call_ok(sub, "events.subscribe", NULL);
  char cursor[128];
  snprintf(cursor, sizeof(cursor), "%s", tc_str(r, "cursor"));
  json_decref(r);
  tessera_close(sub); /* B's subscriber goes away */
  char jti[3][64];
  for (int i = 0; i < 3; i++) {
    json_t *tok = tc_call_ok(a, "token.issue", json_pack("{s:s}", "sub", "eve"));
    snprintf(jti[i], sizeof(jti[i]), "%s", tc_str(tok, "jti"));
    TT_EQ_INT(tc_revoke_token(a, tc_str(tok, "token")), 1);
    json_decref(tok);
  }
  sub = tc_client(&t.d[1]);
  json_decref(tc_call_ok(sub, "events.subscribe", json_pack("{s:s}", "since", cursor)));
  heard h = {NULL};
  for (int i = 0; i < 3; i++) {
    char kind[16], id[128];
    TT_ASSERT_MSG(next_revoked(sub, &h, 5000, kind, id, sizeof(id)), "missed revocation %d", i);
    TT_EQ_STR(kind, "jti");
    TT_EQ_STR(id, jti[i]);
  }
  /* and nothing else: no duplicate */
  char kind[16], id[128];
  TT_ASSERT(!next_revoked(sub, &h, 300, kind, id, sizeof(id)));
  json_decref(h.q);
  tessera_close(a), tessera_close(sub);
  trio_stop(&t);
}

static const tt_case cases[] = {
    TT_CASE(session_made_on_a_validates_on_b_and_c),
    TT_CASE(revoked_on_c_is_refused_on_a_at_once),
    TT_CASE(thirty_concurrent_refreshes_advance_the_family_once),
    TT_CASE(subscriber_on_b_hears_a_revocation_on_a_within_a_second),
    TT_CASE(subscriber_on_b_catches_up_from_its_cursor),
    TT_CASE(cached_sessions_are_refused_at_once_after_a_revocation_elsewhere),
    TT_CASE(a_large_revocation_elsewhere_reaches_every_cached_session),
    TT_CASE(flushall_empties_the_caches),
    TT_CASE(no_cache_when_turned_off),
    TT_CASE(keys_rotated_on_a_are_reloaded_by_b),
};
TT_MAIN(cases)
