/* tests/integration/test_revocation.c: revocation against the real daemon (PROTOCOL.md
 * "tokens", "users", "Errors"; SECURITY.md "Sessions and refresh"): every token.revoke form
 * (a refresh token kills its family, by family, an access token's jti is denylisted, by jti and
 * exp, garbage answers zero, exactly one target), user.revoke (log out everywhere, thousands of
 * families, a login right after it works), and the bounded revocation list (swept after exp,
 * holding through the last second, a family's revocation outliving its access tokens).
 * Notifications: test_events.c; refresh families: test_refresh.c.
 *
 * Waiting: replies are the signal. The only waits on the clock are where the wall clock is the
 * thing under test (the cut-off second): they wait until the instant the daemon named, never
 * longer. The sweeper signals nothing to clients, so those cases poll sys.stats in a bounded
 * loop. */
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

/* ---- token.revoke ------------------------------------------------------------------------ */

static void revoke_refresh_token_kills_its_family(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *p1 = tc_pair_for(c, "fred");
  json_t *p2 = tc_refresh_ok(c, tc_str(p1, "refresh_token"));
  TT_EQ_INT(tc_stat(c, "families"), 1);
  TT_EQ_INT(tc_revoke_token(c, tc_str(p2, "refresh_token")), 1);
  TT_EQ_INT(tc_revoke_token(c, tc_str(p2, "refresh_token")), 0); /* nothing left to revoke */
  TT_EQ_INT(tc_revoke_token(c, tc_str(p1, "refresh_token")), 0); /* a stale token of it, too */
  TT_EQ_STR(tc_refresh(c, tc_str(p2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_refresh(c, tc_str(p1, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p2, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p1, "access_token"), NULL, true), "revoked");
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
  json_t *p = tc_pair_for(c, "gwen"), *keep = tc_pair_for(c, "gwen");
  const char *fam = tc_str(p, "family");
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s}", "family", fam)), 1);
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s}", "family", fam)), 0);
  TT_EQ_STR(tc_refresh(c, tc_str(p, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p, "access_token"), NULL, false), "");
  /* Only that family. */
  TT_EQ_STR(tc_verify_code(c, tc_str(keep, "access_token"), NULL, true), "");
  json_decref(tc_refresh_ok(c, tc_str(keep, "refresh_token")));
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s}", "family", "AAAAAAAAAAAAAAAAAAAAAA")), 0);
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
  TT_EQ_STR(tc_verify_code(c, tok, NULL, true), "");
  TT_EQ_INT(tc_revoke_token(c, tok), 1);
  TT_EQ_INT(tc_revoke_token(c, tok), 0);
  TT_EQ_STR(tc_verify_code(c, tok, NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tok, NULL, false), ""); /* plain verification stays stateless */
  /* The access token of a pair: its jti only, the family lives on. */
  json_t *p = tc_pair_for(c, "hana");
  TT_EQ_INT(tc_revoke_token(c, tc_str(p, "access_token")), 1);
  TT_EQ_STR(tc_verify_code(c, tc_str(p, "access_token"), NULL, true), "revoked");
  json_t *p2 = tc_refresh_ok(c, tc_str(p, "refresh_token"));
  TT_EQ_STR(tc_verify_code(c, tc_str(p2, "access_token"), NULL, true), "");
  /* Another token of the same user is untouched. */
  json_t *t2 = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "hana"));
  TT_EQ_STR(tc_verify_code(c, tc_str(t2, "token"), NULL, true), "");
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
  TT_EQ_INT(tc_revoke_with(c, json_deep_copy(params)), 1);
  TT_EQ_INT(tc_revoke_with(c, json_deep_copy(params)), 0);
  TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, false), "");
  /* A jti whose exp is long past needs no entry. */
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s, s:I}", "jti", "BBBBBBBBBBBBBBBBBBBBBB", "exp",
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
  json_t *p = tc_pair_for(c, "iris"), *twin = tc_pair_for(c, "iris");
  const char *rt = tc_str(p, "refresh_token");
  json_t *claims = tf_segment_json(rt, 1);
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s, s:I}", "jti", tc_str(claims, "jti"), "exp",
                                        (json_int_t)tc_int(claims, "exp"))),
            1);
  TT_EQ_STR(tc_refresh(c, rt, NULL), "revoked");
  TT_EQ_STR(tc_refresh(c, rt, NULL), "revoked"); /* and stays so */
  /* The other family of the same user is untouched. */
  json_decref(tc_refresh_ok(c, tc_str(twin, "refresh_token")));
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
    TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s, s:I}", "jti", tc_str(t, "jti"), "exp", huge[i])), 1);
    TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, true), "revoked");
    json_decref(t);
  }
  /* A very negative exp is simply in the past. */
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s, s:I}", "jti", "DDDDDDDDDDDDDDDDDDDDDD", "exp",
                                        (json_int_t)INT64_MIN)),
            0);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* What one token.revoke {jti, exp} of a made-up jti may add is bounded: its entry lasts no
 * longer than the longest token lifetime (+ leeway), however far exp is. Seen in the entry's
 * `until` on the feed (uncapped, a made-up exp a month out was kept a month). */
static void made_up_revocation_lasts_no_longer_than_any_token(void) {
  td_daemon d;
  td_start(&d, (const char *[]){"--access-ttl", "5m", "--max-access-ttl", "10m",
                                "--purpose-ttl", "20m", "--max-purpose-ttl", "20m",
                                "--refresh-ttl", "30m", "--max-refresh-ttl", "30m", "--leeway",
                                "5", NULL});
  tessera_client *c = tc_client(&d), *sub = tc_client(&d);
  json_decref(tc_call_ok(sub, "events.subscribe", NULL));
  long long before = (long long)time(NULL);
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s, s:I}", "jti", "made-up-jti-for-a-month", "exp",
                                        (json_int_t)(before + 30 * 86400))),
            1);
  long long after = (long long)time(NULL);
  char method[TESSERA_NOTIFY_METHOD_MAX];
  json_t *args = NULL;
  TT_EQ_INT(tessera_next_notification(sub, 10000, method, &args), 0);
  TT_EQ_STR(method, "revoked");
  json_t *e = json_array_get(args, 0);
  TT_EQ_STR(tc_str(e, "id"), "made-up-jti-for-a-month");
  long long until = (long long)json_integer_value(json_object_get(e, "until"));
  TT_ASSERT_MSG(until >= before && until <= after + 30 * 60 + 5,
                "until %lld, revoked at %lld..%lld: more than the longest lifetime", until,
                before, after);
  json_decref(args);
  tessera_close(sub);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void revoke_garbage_answers_zero(void) {
  td_daemon d, other;
  td_start(&d, NULL);
  td_start(&other, NULL); /* its own keys */
  tessera_client *c = tc_client(&d), *oc = tc_client(&other);
  json_t *foreign = tc_pair_for(oc, "jack");
  json_t *mine = tc_pair_for(c, "jack");
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
    TT_ASSERT_MSG(tc_revoke_token(c, garbage[i]) == 0, "garbage %zu revoked something", i);
  TT_EQ_INT(tc_stat(c, "revocations"), before);
  /* Nothing of ours was touched. */
  TT_EQ_STR(tc_verify_code(c, tc_str(mine, "access_token"), NULL, true), "");
  json_decref(tc_refresh_ok(c, tc_str(mine, "refresh_token")));
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
  json_t *p = tc_pair_for(c, "kate");
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
  json_decref(tc_refresh_ok(c, rt));
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- user.revoke ------------------------------------------------------------------------ */

static void user_revoke_logs_out_everywhere(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s1 = tc_create_sub(c, "bob"), *s2 = tc_create_sub(c, "bob"), *sc = tc_create_sub(c, "carol");
  json_t *p1 = tc_pair_for(c, "bob"), *p2 = tc_pair_for(c, "bob"), *pc = tc_pair_for(c, "carol");
  json_t *p1b = tc_refresh_ok(c, tc_str(p1, "refresh_token")); /* a rotated family counts once */
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "bob"));
  long long t0 = (long long)time(NULL);
  json_t *r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "bob"));
  long long t1 = (long long)time(NULL);
  TT_EQ_INT(json_object_size(r), 2);
  TT_EQ_INT(tc_int(r, "sessions"), 2);
  TT_EQ_INT(tc_int(r, "families"), 2);
  json_decref(r);

  TT_EQ_STR(tc_validate(c, tc_str(s1, "sid"), NULL, NULL), "unauthenticated");
  TT_EQ_STR(tc_validate(c, tc_str(s2, "sid"), NULL, NULL), "unauthenticated");
  TT_EQ_STR(tc_refresh(c, tc_str(p1b, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_refresh(c, tc_str(p2, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_refresh(c, tc_str(p1, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p1b, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p2, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, true), "revoked"); /* not of a family: the cut-off */
  TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, false), "");
  /* carol is untouched. */
  TT_EQ_STR(tc_validate(c, tc_str(sc, "sid"), NULL, NULL), "");
  TT_EQ_STR(tc_verify_code(c, tc_str(pc, "access_token"), NULL, true), "");
  json_decref(tc_refresh_ok(c, tc_str(pc, "refresh_token")));
  /* Nothing left for a second call. */
  r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "bob"));
  TT_EQ_INT(tc_int(r, "sessions"), 0);
  TT_EQ_INT(tc_int(r, "families"), 0);
  json_decref(r);

  /* The reply came only once the cut-off second was over: tokens issued from now on work. */
  TT_ASSERT(t1 > t0);
  json_t *later = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "bob"));
  TT_EQ_STR(tc_verify_code(c, tc_str(later, "token"), NULL, true), "");
  json_t *lp = tc_pair_for(c, "bob");
  TT_EQ_STR(tc_verify_code(c, tc_str(lp, "access_token"), NULL, true), "");
  json_t *lp2 = tc_refresh_ok(c, tc_str(lp, "refresh_token"));
  TT_EQ_STR(tc_verify_code(c, tc_str(lp2, "access_token"), NULL, true), "");
  json_t *ls = tc_create_sub(c, "bob");
  TT_EQ_STR(tc_validate(c, tc_str(ls, "sid"), NULL, NULL), "");
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
  tc_raw feed;
  tc_raw_open(&feed, &d);
  tc_raw_subscribe(&feed);
  for (int round = 0; round < 3; round++) {
    json_t *old = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "nina"));
    json_decref(tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "nina")));
    json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "nina"));
    json_t *p = tc_pair_for(c, "nina");
    TT_EQ_STR(tc_verify_code(c, tc_str(old, "token"), NULL, true), "revoked");
    TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, true), "");
    TT_EQ_STR(tc_verify_code(c, tc_str(p, "access_token"), NULL, true), "");
    json_t *p2 = tc_refresh_ok(c, tc_str(p, "refresh_token"));
    TT_EQ_STR(tc_verify_code(c, tc_str(p2, "access_token"), NULL, true), "");
    /* What subscribers are told agrees: before < the new token's iat <= the old one's... */
    json_t *args = tc_expect_note(&feed, "revoked");
    json_t *e = tc_entry_of(args, "sub", "nina");
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
  tc_raw_close(&feed);
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

/* ---- the revocation list is bounded ------------------------------------------------------ */

static void revocation_list_is_swept(void) {
  static const char *const args[] = {"--leeway", "0", "--sweep-interval", "200ms", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  enum { N = 20 };
  /* Short lives, long enough that the setup ends before the first one does (a daemon under
   * valgrind on a loaded machine took 3 s); the counts below are exact only then. */
  const int ttl = getenv("TT_SANITIZED") ? 10 : 2;
  json_t *toks[N];
  long long last_exp = 0;
  int64_t first_exp = tc_start_of_next_second() + ttl;
  for (int i = 0; i < N; i++) {
    toks[i] = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "paul", "ttl", ttl));
    TT_EQ_INT(tc_revoke_token(c, tc_str(toks[i], "token")), 1);
    if (tc_int(toks[i], "expires_at") > last_exp) last_exp = tc_int(toks[i], "expires_at");
  }
  /* A revoked family and a live one, both short-lived. */
  json_t *dead = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "paul",
                                                       "access_ttl", ttl, "refresh_ttl", ttl));
  json_t *live = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "paul",
                                                       "access_ttl", ttl, "refresh_ttl", ttl));
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s}", "family", tc_str(dead, "family"))), 1);
  if (tc_int(dead, "refresh_expires_at") > last_exp) last_exp = tc_int(dead, "refresh_expires_at");
  if (tc_int(live, "refresh_expires_at") > last_exp) last_exp = tc_int(live, "refresh_expires_at");
  long long revocations = tc_stat(c, "revocations"), families = tc_stat(c, "families");
  TT_ASSERT_MSG(tc_before_second(first_exp),
                "the setup outlasted the first revocation's life (%d s): too slow to judge", ttl);
  TT_EQ_INT(revocations, N + 1);
  TT_EQ_INT(families, 1);
  long long swept0 = tr_env_redis() ? 0 : tc_stat(c, "swept"); /* LMDB's sweeper */

  tc_wait_wall_until(last_exp + 1);
  TT_ASSERT_MSG(tc_wait_stat(c, "revocations", false, 0, 5000) == 0, "revocations still %lld after their exp",
                tc_stat(c, "revocations"));
  TT_ASSERT(tc_wait_stat(c, "families", false, 0, 5000) == 0);
  if (!tr_env_redis()) TT_ASSERT(tc_stat(c, "swept") >= swept0 + N + 2);
  /* Forgetting them resurrects nothing: the tokens themselves have expired. */
  for (int i = 0; i < N; i++) TT_EQ_STR(tc_verify_code(c, tc_str(toks[i], "token"), NULL, true), "expired");
  TT_EQ_STR(tc_refresh(c, tc_str(live, "refresh_token"), NULL), "expired");
  /* Revoking an expired token writes nothing. */
  TT_EQ_INT(tc_revoke_token(c, tc_str(toks[0], "token")), 0);
  TT_EQ_INT(tc_revoke_token(c, tc_str(dead, "refresh_token")), 0);
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
  TT_EQ_INT(tc_revoke_token(c, tc_str(t, "token")), 1);
  long long exp = tc_int(t, "expires_at");
  long long rexp = tc_int(live, "refresh_expires_at");
  tc_wait_wall_until(rexp - 1); /* the refresh token's last second */
  json_t *next = NULL;
  if ((long long)time(NULL) == rexp - 1) { /* still accepted: the family must be there too */
    const char *code = tc_refresh(c, tc_str(live, "refresh_token"), &next);
    TT_ASSERT_MSG(code[0] == 0 || (long long)time(NULL) >= rexp, "refresh in its last second: %s", code);
  }
  tc_wait_wall_until(exp - 1);
  int checks = 0;
  while ((long long)time(NULL) == exp - 1) { /* the whole last second, with ~10 sweeps in it */
    const char *code = tc_verify_code(c, tc_str(t, "token"), NULL, true);
    TT_ASSERT_MSG(strcmp(code, "revoked") == 0 || (strcmp(code, "expired") == 0 &&
                                                   (long long)time(NULL) >= exp),
                  "a revoked token answered '%s' in its last second", code);
    checks++;
    usleep(50 * 1000);
  }
  fprintf(stderr, "%d checks in the token's last second\n", checks);
  TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, true), "expired");
  /* Afterwards everything is swept: nothing is kept forever. */
  TT_ASSERT_MSG(tc_wait_stat(c, "revocations", false, 0, 5000) == 0, "revocations: %lld",
                tc_stat(c, "revocations"));
  if (next) tc_wait_wall_until(tc_int(next, "refresh_expires_at") + 1);
  TT_ASSERT_MSG(tc_wait_stat(c, "families", false, 0, 5000) == 0, "families: %lld", tc_stat(c, "families"));
  if (!tr_env_redis()) TT_ASSERT(tc_wait_stat(c, "expiry_index", false, 0, 5000) == 0);
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
  tc_raw sub;
  tc_raw_open(&sub, &d);
  tc_raw_subscribe(&sub);
  json_t *p = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "quin", "access_ttl",
                                                    60, "refresh_ttl", 4));
  json_t *q1 = tc_call_ok(c, "token.pair", json_pack("{s:s, s:i, s:i}", "sub", "quin", "access_ttl",
                                                     60, "refresh_ttl", 4));
  json_t *q2 = tc_refresh_ok(c, tc_str(q1, "refresh_token"));
  json_t *q3 = tc_refresh_ok(c, tc_str(q2, "refresh_token"));
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s}", "family", tc_str(p, "family"))), 1);
  long long until = tc_expect_revoked_one(&sub, "family", tc_str(p, "family"));
  TT_ASSERT_MSG(until >= tc_int(p, "access_expires_at"),
                "the family entry ends at %lld, its access token lives until %lld", until,
                tc_int(p, "access_expires_at"));
  TT_EQ_STR(tc_refresh(c, tc_str(q1, "refresh_token"), NULL), "reused");
  until = tc_expect_revoked_one(&sub, "family", tc_str(q1, "family"));
  TT_ASSERT(until >= tc_int(q3, "access_expires_at"));
  long long past = tc_int(q3, "refresh_expires_at");
  if (tc_int(p, "refresh_expires_at") > past) past = tc_int(p, "refresh_expires_at");
  tc_wait_wall_until(past + 2); /* the refresh tokens are gone; the access tokens are not */
  TT_EQ_STR(tc_verify_code(c, tc_str(p, "access_token"), NULL, false), "");
  TT_EQ_STR(tc_verify_code(c, tc_str(p, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(q3, "access_token"), NULL, true), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(q1, "access_token"), NULL, true), "revoked");
  tc_raw_close(&sub);
  json_decref(q3);
  json_decref(q2);
  json_decref(q1);
  json_decref(p);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(user_revoke_reaches_thousands_of_families),
    TT_CASE(revoke_refresh_token_kills_its_family),
    TT_CASE(revoke_by_family),
    TT_CASE(revoke_access_token_denylists_its_jti),
    TT_CASE(revoke_by_jti_and_exp),
    TT_CASE(revoke_by_jti_with_huge_exp),
    TT_CASE(made_up_revocation_lasts_no_longer_than_any_token),
    TT_CASE(revoked_refresh_jti_cannot_refresh),
    TT_CASE(revoke_garbage_answers_zero),
    TT_CASE(revoke_needs_exactly_one_target),
    TT_CASE(user_revoke_logs_out_everywhere),
    TT_CASE(login_right_after_user_revoke_works),
    TT_CASE(revocation_list_is_swept),
    TT_CASE(revocation_holds_through_the_last_second),
    TT_CASE(family_revocation_outlives_its_access_tokens),
};

TT_MAIN(cases)
