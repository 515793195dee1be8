/* tests/integration/test_verifier.c: libtessera's local verifier (tessera/verifier.h)
 * against the real daemon: a valid token verifies and is cached, refused tokens name the
 * reason, audience and issuer checks, the unknown-kid refetch and its cooldown, rotation
 * without a refetch, a full cache, threads verifying at once, options checked. What reaches a
 * running verifier (notifications, the revocation feed): test_verifier_feed.c.
 *
 * Tokens come from token.issue, or are signed here with the daemon's own active key (forge.h)
 * when a test needs claims the daemon would never issue (expired, foreign issuer, no jti,
 * another typ). */
#include "calls.h"
#include "forge.h"
#include "daemon.h"
#include "tt.h"

#include <tessera/tessera.h>
#include <tessera/verifier.h>

#include "jws.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers: daemon calls ------------------------------------------------------------------ */

/* The kid in a token's header. */
static void kid_of(const char *tok, char kid[TS_JWS_KID_MAX + 1]) {
  const char *dot = strchr(tok, '.');
  TT_ASSERT(dot != NULL);
  uint8_t buf[512];
  size_t n;
  TT_ASSERT(ts_jws_b64_decode(tok, (size_t)(dot - tok), buf, sizeof(buf), &n) == 0);
  json_t *h = json_loadb((const char *)buf, n, 0, NULL);
  TT_ASSERT(json_is_string(json_object_get(h, "kid")));
  snprintf(kid, TS_JWS_KID_MAX + 1, "%s", json_string_value(json_object_get(h, "kid")));
  json_decref(h);
}

/* ---- helpers: the verifier ---------------------------------------------------------------------- */

static tessera_verifier_options opts_for(const td_daemon *d) {
  tessera_verifier_options o;
  tessera_verifier_options_init(&o);
  o.socket_path = d->socket;
  o.timeout_ms = 10000;
  return o;
}

/* ---- tests: local verification ------------------------------------------------------------------ */

static void valid_token_verifies_and_is_cached(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *tok = tc_issue_claims(c, "alice", json_pack("{s:s, s:{s:s}}", "scope", "read write", "claims",
                                          "role", "admin"));
  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *v = tc_verifier_new(&o);
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.jwks_fetches, 1);
  TT_ASSERT(st.keys_version != 0);
  TT_EQ_INT(st.feed_up, 0);

  json_t *cl = TC_EXPECT_LOCAL_OK(v, tok);
  TT_EQ_STR(json_string_value(json_object_get(cl, "sub")), "alice");
  TT_EQ_STR(json_string_value(json_object_get(cl, "iss")), "tessera");
  TT_EQ_STR(json_string_value(json_object_get(cl, "scope")), "read write");
  TT_EQ_STR(json_string_value(json_object_get(cl, "role")), "admin");
  TT_ASSERT(json_is_string(json_object_get(cl, "jti")));
  st = tc_verifier_stats(v);
  TT_EQ_INT(st.signature_checks, 1);
  TT_EQ_INT(st.cache_hits, 0);
  TT_EQ_INT(st.cached_tokens, 1);
  /* The claims are the caller's own copy: changing them changes nothing inside. */
  json_object_set_new(cl, "sub", json_string("mallory"));
  json_decref(cl);

  cl = TC_EXPECT_LOCAL_OK(v, tok);
  TT_EQ_STR(json_string_value(json_object_get(cl, "sub")), "alice");
  json_decref(cl);
  TT_EQ_INT(tessera_verifier_verify(v, tok, strlen(tok), NULL, NULL), 0); /* claims not wanted */
  st = tc_verifier_stats(v);
  TT_EQ_INT(st.signature_checks, 1); /* the second and third verify were hash lookups */
  TT_EQ_INT(st.cache_hits, 2);
  TT_EQ_INT(st.verifies, 3);
  TT_EQ_INT(st.accepted, 3);
  TT_EQ_INT(st.jwks_fetches, 1);

  /* The same token through the daemon agrees. */
  json_decref(tc_call_ok(c, "token.verify", json_pack("{s:s}", "token", tok)));
  free(tok);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void refused_tokens_name_the_reason(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *v = tc_verifier_new(&o);
  tf_signer s;
  tf_daemon_signer(&d, &s);
  int64_t now = (int64_t)time(NULL);

  char *tok = tc_issue_claims(c, "alice", NULL);
  json_decref(TC_EXPECT_LOCAL_OK(v, tok));
  size_t len = strlen(tok);
  char *bad = strdup(tok);
  bad[len - 2] = bad[len - 2] == 'A' ? 'B' : 'A'; /* the signature */
  TC_EXPECT_LOCAL_REFUSED(v, bad, "unauthenticated");
  strcpy(bad, tok);
  char *payload = strchr(bad, '.') + 1;
  payload[3] = payload[3] == 'A' ? 'B' : 'A'; /* the claims */
  TC_EXPECT_LOCAL_REFUSED(v, bad, "unauthenticated");
  TC_EXPECT_LOCAL_REFUSED(v, "not.a.token", "unauthenticated");
  TC_EXPECT_LOCAL_REFUSED(v, "", "unauthenticated");
  free(bad);
  char *huge = malloc(9000);
  memset(huge, 'A', 9000);
  tc_expect_local_refused_(v, huge, 9000, "unauthenticated", __LINE__);
  free(huge);

  /* Time: exp and nbf outside the 60 s leeway. */
  char *t = tf_sign(&s, "at+jwt", tf_claims("alice", now - 3600, now - 61));
  TC_EXPECT_LOCAL_REFUSED(v, t, "expired");
  free(t);
  t = tf_sign(&s, "at+jwt", tf_claims("alice", now - 3600, now - 30)); /* within the leeway */
  json_decref(TC_EXPECT_LOCAL_OK(v, t));
  free(t);
  json_t *cl = tf_claims("alice", now, now + 600);
  json_object_set_new(cl, "nbf", json_integer(now + 120));
  t = tf_sign(&s, "at+jwt", cl);
  TC_EXPECT_LOCAL_REFUSED(v, t, "expired");
  free(t);

  /* Identity: another issuer, no jti, no sub. */
  cl = tf_claims("alice", now, now + 600);
  json_object_set_new(cl, "iss", json_string("someone-else"));
  t = tf_sign(&s, "at+jwt", cl);
  TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
  free(t);
  cl = tf_claims("alice", now, now + 600);
  json_object_del(cl, "jti");
  t = tf_sign(&s, "at+jwt", cl);
  TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
  free(t);
  cl = tf_claims("alice", now, now + 600);
  json_object_del(cl, "sub");
  t = tf_sign(&s, "at+jwt", cl);
  TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
  free(t);

  /* Other token types presented as access tokens. */
  t = tf_sign(&s, "rt+jwt", tf_claims("alice", now, now + 600));
  TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
  free(t);
  json_t *pair = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "alice"));
  const char *rt = json_string_value(json_object_get(pair, "refresh_token"));
  const char *at = json_string_value(json_object_get(pair, "access_token"));
  TC_EXPECT_LOCAL_REFUSED(v, rt, "unauthenticated");
  cl = TC_EXPECT_LOCAL_OK(v, at);
  TT_EQ_STR(json_string_value(json_object_get(cl, "fam")),
            json_string_value(json_object_get(pair, "family")));
  json_decref(cl);
  json_decref(pair);
  char *pt = tc_issue_claims(c, "alice", json_pack("{s:s}", "purpose", "verify-email"));
  TC_EXPECT_LOCAL_REFUSED(v, pt, "unauthenticated");
  free(pt);

  /* A stranger's key: unknown kid. */
  tf_signer x;
  tf_named_stranger(&x, 1);
  t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
  TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
  free(t);
  /* The daemon's kid on a stranger's signature. */
  snprintf(x.kid, sizeof(x.kid), "%s", s.kid);
  t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
  TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
  free(t);

  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.cached_tokens, 3); /* tok, the token within the leeway, the pair's access token */
  TT_EQ_INT(tessera_verifier_verify(v, NULL, 0, NULL, NULL), TESSERA_EINVAL);
  TT_EQ_INT(tessera_verifier_verify(NULL, tok, len, NULL, NULL), TESSERA_EINVAL);
  free(tok);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void audience_and_issuer_are_checked(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *plain = tc_issue_claims(c, "alice", NULL);
  char *api = tc_issue_claims(c, "alice", json_pack("{s:s}", "aud", "api"));
  char *both = tc_issue_claims(c, "alice", json_pack("{s:[s,s]}", "aud", "web", "api"));
  char *web = tc_issue_claims(c, "alice", json_pack("{s:s}", "aud", "web"));

  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *none = tc_verifier_new(&o); /* no audience: tokens carrying aud are refused */
  json_decref(TC_EXPECT_LOCAL_OK(none, plain));
  TC_EXPECT_LOCAL_REFUSED(none, api, "unauthenticated");
  TC_EXPECT_LOCAL_REFUSED(none, both, "unauthenticated");
  tessera_verifier_free(none);

  o.audience = "api";
  tessera_verifier *v = tc_verifier_new(&o);
  json_decref(TC_EXPECT_LOCAL_OK(v, api));
  json_decref(TC_EXPECT_LOCAL_OK(v, both));
  TC_EXPECT_LOCAL_REFUSED(v, web, "unauthenticated");
  TC_EXPECT_LOCAL_REFUSED(v, plain, "unauthenticated");
  tessera_verifier_free(v);

  o.audience = NULL;
  o.issuer = "someone-else";
  v = tc_verifier_new(&o);
  TC_EXPECT_LOCAL_REFUSED(v, plain, "unauthenticated");
  tessera_verifier_free(v);

  free(plain);
  free(api);
  free(both);
  free(web);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void custom_issuer_of_the_daemon(void) {
  const char *args[] = {"--issuer", "https://auth.example", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  char *tok = tc_issue_claims(c, "alice", NULL);
  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *v = tc_verifier_new(&o); /* expects the default "tessera" */
  TC_EXPECT_LOCAL_REFUSED(v, tok, "unauthenticated");
  tessera_verifier_free(v);
  o.issuer = "https://auth.example";
  v = tc_verifier_new(&o);
  json_decref(TC_EXPECT_LOCAL_OK(v, tok));
  tessera_verifier_free(v);
  free(tok);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void unknown_kid_refetches_once_per_cooldown(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_verifier_options o = opts_for(&d);
  o.refetch_cooldown_ms = 60000; /* the whole test runs inside one cooldown */
  tessera_verifier *v = tc_verifier_new(&o);
  int64_t now = (int64_t)time(NULL);
  TT_EQ_INT(tc_verifier_stats(v).jwks_fetches, 1);

  tf_signer x;
  tf_named_stranger(&x, 0);
  char *t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
  TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
  free(t);
  TT_EQ_INT(tc_verifier_stats(v).jwks_fetches, 2); /* exactly one refetch */
  for (int i = 1; i <= 100; i++) {
    tf_named_stranger(&x, i);
    t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
    TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
    free(t);
  }
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.jwks_fetches, 2); /* the flood caused none */
  TT_EQ_INT(st.unknown_kid_refused, 100);
  TT_EQ_INT(st.signature_checks, 0);
  tessera_verifier_free(v);
  td_stop(&d);
  td_cleanup(&d);
}

static void cooldown_allows_a_later_refetch(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_verifier_options o = opts_for(&d);
  o.refetch_cooldown_ms = 1000;
  tessera_verifier *v = tc_verifier_new(&o);
  int64_t now = (int64_t)time(NULL);
  tf_signer x;
  tf_named_stranger(&x, 0);
  char *t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
  long long t0 = tc_mono_ms(); /* before the verifier stamps its refetch */
  TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
  TT_EQ_INT(tc_verifier_stats(v).jwks_fetches, 2);
  /* Asked again and again: the next refetch comes, and never before the cooldown has passed
   * (the forbidding itself is unknown_kid_refetches_once_per_cooldown's subject). */
  for (;;) {
    TC_EXPECT_LOCAL_REFUSED(v, t, "unauthenticated");
    long long fetches = (long long)tc_verifier_stats(v).jwks_fetches, waited = tc_mono_ms() - t0;
    if (fetches == 3) {
      TT_ASSERT_MSG(waited >= 1000, "refetched %lld ms after the last: inside the cooldown",
                    waited);
      break;
    }
    TT_EQ_INT(fetches, 2);
    TT_ASSERT_MSG(waited < 15000, "no refetch %lld ms after a 1 s cooldown began", waited);
    struct timespec nap = {0, 50 * 1000000};
    nanosleep(&nap, NULL);
  }
  free(t);
  tessera_verifier_free(v);
  td_stop(&d);
  td_cleanup(&d);
}

/* keys.rotate makes the published next key the signing key: a verifier that fetched before
 * the rotation already holds it. */
static void rotation_needs_no_refetch(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *before = tc_issue_claims(c, "alice", NULL);
  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *v = tc_verifier_new(&o);
  json_decref(TC_EXPECT_LOCAL_OK(v, before));

  json_t *r = tc_call_ok(c, "keys.rotate", NULL);
  char *after = tc_issue_claims(c, "alice", NULL);
  char kid_before[TS_JWS_KID_MAX + 1], kid_after[TS_JWS_KID_MAX + 1];
  kid_of(before, kid_before);
  kid_of(after, kid_after);
  TT_EQ_STR(kid_after, json_string_value(json_object_get(r, "kid")));
  TT_EQ_STR(kid_before, json_string_value(json_object_get(r, "previous")));
  TT_ASSERT(strcmp(kid_before, kid_after) != 0);
  json_decref(r);

  json_decref(TC_EXPECT_LOCAL_OK(v, after));
  json_decref(TC_EXPECT_LOCAL_OK(v, before)); /* the old key stays published */
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.jwks_fetches, 1);
  TT_EQ_INT(st.signature_checks, 2);
  free(before);
  free(after);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void full_cache_evicts_and_still_verifies(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier_options o = opts_for(&d);
  o.cache_entries = 4;
  tessera_verifier *v = tc_verifier_new(&o);
  char *tok[10];
  for (int i = 0; i < 10; i++) {
    char sub[16];
    snprintf(sub, sizeof(sub), "user%d", i);
    tok[i] = tc_issue_claims(c, sub, NULL);
    json_decref(TC_EXPECT_LOCAL_OK(v, tok[i]));
  }
  TT_EQ_INT(tc_verifier_stats(v).cached_tokens, 4);
  /* A hot token survives a stream of cold ones (the clock's second chance). */
  for (int round = 0; round < 3; round++) {
    for (int i = 1; i < 10; i++) {
      json_decref(TC_EXPECT_LOCAL_OK(v, tok[0]));
      json_t *cl = TC_EXPECT_LOCAL_OK(v, tok[i]);
      char sub[16];
      snprintf(sub, sizeof(sub), "user%d", i);
      TT_EQ_STR(json_string_value(json_object_get(cl, "sub")), sub);
      json_decref(cl);
    }
  }
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.cached_tokens, 4);
  TT_ASSERT(st.cache_hits >= 26); /* tok[0]: every verify after its first */
  for (int i = 0; i < 10; i++) free(tok[i]);
  tessera_verifier_free(v);

  o.cache_entries = 0; /* no cache at all */
  v = tc_verifier_new(&o);
  char *t = tc_issue_claims(c, "alice", NULL);
  json_decref(TC_EXPECT_LOCAL_OK(v, t));
  json_decref(TC_EXPECT_LOCAL_OK(v, t));
  st = tc_verifier_stats(v);
  TT_EQ_INT(st.cache_hits, 0);
  TT_EQ_INT(st.signature_checks, 2);
  free(t);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void threads_verify_concurrently(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *good[40], *bad[4];
  tf_hammer_tokens(c, good, 40, bad, 4);
  tessera_verifier_options o = opts_for(&d);
  o.refetch_cooldown_ms = 60000;
  tessera_verifier *v = tc_verifier_new(&o);
  tc_run_hammer(v, good, 40, bad, 4);
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.verifies, 8000);
  TT_ASSERT(st.jwks_fetches <= 2); /* unknown kids from 8 threads: one refetch in all */
  TT_ASSERT(st.signature_checks <= 40 * 8); /* each good token: once per thread at worst */
  TT_ASSERT(st.cache_hits >= st.accepted - 40 * 8);
  tessera_verifier_free(v);

  o.cache_entries = 8; /* constant eviction under contention */
  v = tc_verifier_new(&o);
  tc_run_hammer(v, good, 40, bad, 4);
  TT_ASSERT(tc_verifier_stats(v).cached_tokens <= 8);
  tessera_verifier_free(v);
  for (int i = 0; i < 40; i++) free(good[i]);
  for (int i = 0; i < 4; i++) free(bad[i]);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void options_are_checked(void) {
  tessera_verifier *v = (tessera_verifier *)1;
  tessera_verifier_options o;
  tessera_verifier_options_init(&o);
  TT_EQ_INT(o.leeway, 60);
  TT_EQ_INT(o.cache_entries, 10000);
  TT_EQ_INT(o.refetch_cooldown_ms, 1000);
  TT_EQ_INT(o.feed_down_policy, TESSERA_FEED_FAIL_CLOSED);
  o.leeway = -1;
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_EINVAL);
  TT_ASSERT(v == NULL);
  tessera_verifier_options_init(&o);
  o.feed_down_policy = 7;
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_EINVAL);
  tessera_verifier_options_init(&o);
  o.audience = "";
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_EINVAL);
  TT_EQ_INT(tessera_verifier_new(NULL, NULL, NULL), TESSERA_EINVAL);
  tessera_verifier_options_init(&o);
  o.socket_path = "/nonexistent/tesserad.sock";
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_ECONNECT);
  TT_ASSERT(v == NULL);
  o.subscribe = 1;
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_ECONNECT);
  tessera_verifier_free(NULL);
  TT_EQ_STR(tessera_err_name(TESSERA_EREJECTED), "EREJECTED");
  TT_EQ_STR(tessera_err_name(TESSERA_EUNAVAILABLE), "EUNAVAILABLE");
  TT_EQ_STR(tessera_err_name(TESSERA_EOVERFLOW), "EOVERFLOW");
}

static const tt_case cases[] = {
    TT_CASE(valid_token_verifies_and_is_cached),
    TT_CASE(refused_tokens_name_the_reason),
    TT_CASE(audience_and_issuer_are_checked),
    TT_CASE(custom_issuer_of_the_daemon),
    TT_CASE(unknown_kid_refetches_once_per_cooldown),
    TT_CASE(cooldown_allows_a_later_refetch),
    TT_CASE(rotation_needs_no_refetch),
    TT_CASE(full_cache_evicts_and_still_verifies),
    TT_CASE(threads_verify_concurrently),
    TT_CASE(options_are_checked),
};

int main(int argc, char **argv) {
  if (sodium_init() < 0) return 1;
  return tt_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
