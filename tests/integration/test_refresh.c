/* tests/integration/test_refresh.c: access + refresh token pairs against the real daemon
 * (PROTOCOL.md "tokens"; SECURITY.md "Sessions and refresh"): the pair's shape, rotation under
 * 50 concurrent refreshes, the grace window and reuse detection (RFC 9700 4.14: a replayed
 * refresh token revokes its family), the family's max lifetime, the stolen-token story end to
 * end (a subscribed libtessera verifier included), and durability across kill -9.
 * token.revoke and user.revoke: test_revocation.c; notifications: test_events.c.
 *
 * Waiting: replies and notifications are the signals. The only waits on the clock are where
 * the wall clock is the thing under test (the grace window, a ttl): they wait until the
 * instant the daemon named, never longer. */
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

#define ID_CHARS 22 /* family ids, jtis and handles: 16 bytes, base64url */

static int count_of(const char *haystack, const char *needle) {
  int n = 0;
  for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
  return n;
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
  TT_EQ_STR(tc_verify_code(c, at, "app", true), "");
  TT_EQ_STR(tc_verify_code(c, at, NULL, false), "unauthenticated"); /* it carries aud; none expected */
  TT_EQ_STR(tc_verify_code(c, at, "other", false), "unauthenticated");

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
  TT_EQ_STR(tc_verify_code(c, rt, NULL, false), "unauthenticated");
  TT_EQ_STR(tc_verify_code(c, rt, "app", false), "unauthenticated");
  TT_EQ_STR(tc_verify_code(c, rt, NULL, true), "unauthenticated");
  /* ... and the access token is no refresh token. */
  TT_EQ_STR(tc_refresh(c, at, NULL), "unauthenticated");

  /* A refresh keeps the family, aud, scope and claims; its pair is new. */
  json_t *p2 = tc_refresh_ok(c, rt);
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
  json_t *p1 = tc_pair_for(c, "carl");
  const char *rt1 = tc_str(p1, "refresh_token");

  static racer rs[RACERS];
  pthread_t th[RACERS];
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, RACERS);
  for (int i = 0; i < RACERS; i++) {
    rs[i] = (racer){.c = tc_client(&d), .go = &go, .rt = rt1};
    json_decref(tc_call_ok(rs[i].c, "sys.ping", NULL)); /* connected and accepted before the race */
  }
  tc_start_of_next_second(); /* the whole race well inside the 1 s grace */
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
  json_t *p3 = tc_refresh_ok(c, rt2);
  TT_ASSERT(strcmp(tc_str(p3, "refresh_token"), rt2) != 0);
  TT_EQ_STR(tc_verify_code(c, tc_str(p3, "access_token"), NULL, true), "");
  /* The original, presented after the grace window: reuse. The family is dead. */
  tc_wait_wall_until(rotated + 2);
  TT_EQ_STR(tc_refresh(c, rt1, NULL), "reused");
  TT_EQ_STR(tc_refresh(c, tc_str(p3, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p3, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, at2, NULL, true), "revoked");

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
  json_t *p1 = tc_pair_for(c, "dora");
  const char *rt1 = tc_str(p1, "refresh_token");
  tc_start_of_next_second(); /* the rotation at a second's start: the retry has most of two */
  json_t *p2 = tc_refresh_ok(c, rt1);
  long long rotated = tf_claim_int(tc_str(p2, "refresh_token"), "iat");
  /* Within the window (the daemon decided before this reply): the same successor pair. */
  json_t *again = tc_refresh_ok(c, rt1);
  TT_ASSERT_MSG((long long)time(NULL) <= rotated + 1, "the machine is too slow for a 1 s grace");
  TT_EQ_STR(tc_str(again, "access_token"), tc_str(p2, "access_token"));
  TT_EQ_STR(tc_str(again, "refresh_token"), tc_str(p2, "refresh_token"));
  json_decref(again);
  /* Outside it: reused, and the whole family with it. */
  tc_wait_wall_until(rotated + 2);
  TT_EQ_STR(tc_refresh(c, rt1, NULL), "reused");
  TT_EQ_STR(tc_refresh(c, rt1, NULL), "revoked"); /* the family is gone now */
  TT_EQ_STR(tc_refresh(c, tc_str(p2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p2, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p2, "access_token"), NULL, false), ""); /* stateless by default */
  TT_EQ_STR(tc_verify_code(c, tc_str(p1, "access_token"), NULL, true), "revoked");
  /* Another family of the same user is untouched. */
  json_t *other = tc_pair_for(c, "dora");
  json_decref(tc_refresh_ok(c, tc_str(other, "refresh_token")));
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
  json_t *p1 = tc_pair_for(c, "emil");
  const char *rt1 = tc_str(p1, "refresh_token");
  json_t *p2 = tc_refresh_ok(c, rt1);
  json_t *p3 = tc_refresh_ok(c, tc_str(p2, "refresh_token"));
  long long rotated = tf_claim_int(tc_str(p3, "refresh_token"), "iat");
  TT_EQ_STR(tc_refresh(c, rt1, NULL), "reused");
  TT_ASSERT((long long)time(NULL) - rotated < 10); /* well inside the grace window */
  /* The newest token of the family answers revoked; so does the one in its grace window. */
  TT_EQ_STR(tc_refresh(c, tc_str(p3, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_refresh(c, tc_str(p2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p3, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p1, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p3, "access_token"), NULL, false), "");
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

/* A family has an absolute lifetime (--refresh-max-lifetime) from its token.pair: rotation
 * used to set exp = now + refresh_ttl every time, so a family in use lived forever. Every
 * refresh token's exp stays within created + max lifetime, and a refresh after that (while the
 * token itself is still inside its leeway) answers expired. */
static void refresh_family_has_a_max_lifetime(void) {
  static const char *const args[] = {"--refresh-max-lifetime", "3s", NULL}; /* --leeway 60 */
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *p = tc_pair_for(c, "olga"); /* refresh_ttl 30d by default */
  long long created = tf_claim_int(tc_str(p, "refresh_token"), "iat");
  long long end = created + 3;
  TT_ASSERT_MSG(tc_int(p, "refresh_expires_at") <= end, "first refresh exp %lld > %lld",
                tc_int(p, "refresh_expires_at"), end);
  TT_EQ_INT(tf_claim_int(tc_str(p, "refresh_token"), "exp"), tc_int(p, "refresh_expires_at"));
  /* Rotations, each before the end: none extends the family. */
  json_t *cur = p;
  for (int i = 0; i < 3 && (long long)time(NULL) < end; i++) {
    json_t *next = NULL;
    const char *code = tc_refresh(c, tc_str(cur, "refresh_token"), &next);
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
  tc_wait_wall_until(end);
  TT_EQ_STR(tc_refresh(c, tc_str(cur, "refresh_token"), NULL), "expired");
  TT_EQ_STR(tc_refresh(c, tc_str(cur, "refresh_token"), NULL), "expired"); /* not reuse */
  /* A new pair starts a new family. */
  json_t *fresh = tc_pair_for(c, "olga");
  json_decref(tc_refresh_ok(c, tc_str(fresh, "refresh_token")));
  json_decref(fresh);
  json_decref(cur);
  tessera_close(c);
  tc_stop_clean(&d);
  /* The environment sets it too (TESSERA_REFRESH_MAX_LIFETIME). */
  TT_ASSERT(setenv("TESSERA_REFRESH_MAX_LIFETIME", "2s", 1) == 0);
  td_start(&d, NULL);
  unsetenv("TESSERA_REFRESH_MAX_LIFETIME");
  c = tc_client(&d);
  p = tc_pair_for(c, "olga");
  TT_ASSERT(tc_int(p, "refresh_expires_at") <= tf_claim_int(tc_str(p, "refresh_token"), "iat") + 2);
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
  json_t *alice = tc_refresh_ok(app, tc_str(login, "refresh_token"));
  /* The attacker uses the access token: it is valid. */
  TT_EQ_STR(tc_verify_code(attacker, stolen_at, NULL, false), "");
  TT_EQ_STR(tc_verify_code(attacker, stolen_at, NULL, true), "");

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
  TT_EQ_STR(tc_verify_code(attacker, stolen_at, NULL, false), "");
  /* ... but every check that consults the revocation list refuses it at once, */
  TT_EQ_STR(tc_verify_code(attacker, stolen_at, NULL, true), "revoked");
  /* the stolen refresh token is refused, */
  TT_EQ_STR(tc_refresh(attacker, stolen_rt, NULL), "revoked");
  /* and so is alice's own: she must log in again. */
  TT_EQ_STR(tc_refresh(app, tc_str(alice, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(app, tc_str(alice, "access_token"), NULL, true), "revoked");

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
  tc_wait_wall_until(cutoff + 1);
  json_t *relogin = tc_pair_for(app, "alice");
  TT_EQ_STR(tc_verify_code(app, tc_str(relogin, "access_token"), NULL, true), "");
  json_decref(tc_refresh_ok(app, tc_str(relogin, "refresh_token")));
  /* The attacker's copies stay dead. */
  TT_EQ_STR(tc_refresh(attacker, stolen_rt, NULL), "revoked");
  TT_EQ_STR(tc_verify_code(attacker, stolen_at, NULL, true), "revoked");
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
  json_t *login = tc_pair_for(app, "alice");
  char *stolen_rt = strdup(tc_str(login, "refresh_token"));
  char *stolen_at = strdup(tc_str(login, "access_token"));
  json_t *other_device = tc_pair_for(app, "alice");
  /* The attacker refreshes first and gets a fresh pair ... */
  json_t *evil = tc_refresh_ok(attacker, stolen_rt);
  json_t *evil2 = tc_refresh_ok(attacker, tc_str(evil, "refresh_token"));
  /* ... then alice's client presents the token it holds: two generations old, reuse. */
  TT_EQ_STR(tc_refresh(app, tc_str(login, "refresh_token"), NULL), "reused");
  /* Everything the attacker got from that family is dead. */
  TT_EQ_STR(tc_refresh(attacker, tc_str(evil2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(attacker, tc_str(evil2, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(attacker, tc_str(evil, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(attacker, stolen_at, NULL, true), "revoked");
  /* alice's other device (another family) is not affected. */
  json_decref(tc_refresh_ok(app, tc_str(other_device, "refresh_token")));
  /* Revoking the dead family again is a quiet no-op. */
  TT_EQ_INT(tc_revoke_with(app, json_pack("{s:s}", "family", tc_str(login, "family"))), 0);
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
  json_t *p = tc_pair_for(c, "rita");         /* refreshes after the crash */
  json_t *rot = tc_pair_for(c, "rita");       /* rotated before the crash */
  json_t *rot2 = tc_refresh_ok(c, tc_str(rot, "refresh_token"));
  json_t *fam = tc_pair_for(c, "rita");       /* family revoked */
  json_t *reuse = tc_pair_for(c, "rita");     /* reuse detected */
  json_t *reuse2 = tc_refresh_ok(c, tc_str(reuse, "refresh_token"));
  json_t *reuse3 = tc_refresh_ok(c, tc_str(reuse2, "refresh_token"));
  TT_EQ_STR(tc_refresh(c, tc_str(reuse, "refresh_token"), NULL), "reused");
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "rita"));
  TT_EQ_INT(tc_revoke_token(c, tc_str(t, "token")), 1);
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s}", "family", tc_str(fam, "family"))), 1);
  json_t *gone = tc_pair_for(c, "sam");
  json_t *gone_s = tc_create_sub(c, "sam");
  json_decref(tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "sam")));
  tessera_close(c);

  td_kill9(&d);
  td_launch(&d, NULL);
  c = tc_client(&d);
  /* Acknowledged pairs and rotations are there. */
  TT_EQ_STR(tc_verify_code(c, tc_str(p, "access_token"), NULL, true), "");
  json_t *p2 = tc_refresh_ok(c, tc_str(p, "refresh_token"));
  TT_EQ_STR(tc_str(p2, "family"), tc_str(p, "family"));
  json_t *rot3 = tc_refresh_ok(c, tc_str(rot2, "refresh_token"));
  json_decref(rot3);
  /* Acknowledged revocations are there. */
  TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, true), "revoked");
  TT_EQ_STR(tc_refresh(c, tc_str(fam, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(fam, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_refresh(c, tc_str(reuse3, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(reuse3, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_refresh(c, tc_str(gone, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(gone, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_validate(c, tc_str(gone_s, "sid"), NULL, NULL), "unauthenticated");
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
  json_t *p1 = tc_pair_for(c, "tess");
  json_t *p2 = tc_refresh_ok(c, tc_str(p1, "refresh_token"));
  tessera_close(c);
  td_kill9(&d);
  td_launch(&d, NULL);
  c = tc_client(&d);
  json_t *again = tc_refresh_ok(c, tc_str(p1, "refresh_token"));
  TT_ASSERT((long long)time(NULL) - tf_claim_int(tc_str(p2, "refresh_token"), "iat") <= 10);
  TT_EQ_STR(tc_str(again, "access_token"), tc_str(p2, "access_token"));
  TT_EQ_STR(tc_str(again, "refresh_token"), tc_str(p2, "refresh_token"));
  json_decref(again);
  json_decref(p2);
  json_decref(p1);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(pair_reply_shape),
    TT_CASE(concurrent_refreshes_advance_the_family_once),
    TT_CASE(previous_token_within_grace_then_reused),
    TT_CASE(two_generations_old_is_reused_at_once),
    TT_CASE(refresh_family_has_a_max_lifetime),
    TT_CASE(stolen_tokens_are_cut_off),
    TT_CASE(stolen_refresh_token_replay_kills_the_family),
    TT_CASE(pairs_and_revocations_survive_kill9),
    TT_CASE(grace_retry_survives_kill9),
};
TT_MAIN(cases)
