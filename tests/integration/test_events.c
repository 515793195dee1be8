/* tests/integration/test_events.c: revocation notifications against the real daemon
 * (PROTOCOL.md "events"): an events.subscribe connection hears every revocation (session,
 * token, family, user) as a [2, "revoked", ...] notification, a notification means the
 * revocation is durable (it survives kill -9 right after), and a revocation that was not
 * written (the store full) is not announced. The connection is spoken by hand (tc_raw,
 * tests/lib/calls.h) so that the exact notifications are seen. The replay feed and in-process
 * verifiers: test_feed.c, test_verifier_feed.c.
 *
 * Waiting: notifications are the signal, each awaited with a bounded read. */
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

/* ---- events ----------------------------------------------------------------------------- */

static void subscribers_hear_every_revocation(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *checker = tc_client(&d);
  tc_raw sub, quiet;
  tc_raw_open(&sub, &d);
  tc_raw_open(&quiet, &d); /* never subscribes */
  long long kv = tc_raw_subscribe(&sub);

  /* An access token: {kind: jti, id: its jti, until: its exp + the leeway}. */
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "lena", "ttl", 300));
  TT_EQ_INT(tc_revoke_token(c, tc_str(t, "token")), 1);
  long long until = tc_expect_revoked_one(&sub, "jti", tc_str(t, "jti"));
  TT_EQ_INT(until, tc_int(t, "expires_at") + 60);
  /* A family revoke. */
  json_t *p = tc_pair_for(c, "lena");
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s}", "family", tc_str(p, "family"))), 1);
  until = tc_expect_revoked_one(&sub, "family", tc_str(p, "family"));
  TT_ASSERT(until >= tc_int(p, "refresh_expires_at"));
  /* Rotation is no revocation, nor is revoking something already revoked: the next
   * notification is the reuse detection's. */
  json_t *q1 = tc_pair_for(c, "lena");
  json_t *q2 = tc_refresh_ok(c, tc_str(q1, "refresh_token"));
  json_t *q3 = tc_refresh_ok(c, tc_str(q2, "refresh_token"));
  TT_EQ_INT(tc_revoke_token(c, tc_str(t, "token")), 0);
  TT_EQ_STR(tc_refresh(c, tc_str(q1, "refresh_token"), NULL), "reused");
  tc_expect_revoked_one(&sub, "family", tc_str(q1, "family"));
  /* session.revoke is no feed entry (only the daemon validates sessions): the next
   * notification is user.revoke's. */
  json_t *s = tc_create_sub(c, "lena");
  json_t *r = tc_call_ok(c, "session.revoke", json_pack("{s:s}", "handle", tc_str(s, "handle")));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);

  /* user.revoke: one notification with the sub cut-off and its families. */
  json_t *ms1 = tc_create_sub(c, "mark"), *ms2 = tc_create_sub(c, "mark");
  json_t *mp = tc_pair_for(c, "mark");
  long long t0 = (long long)time(NULL);
  r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "mark"));
  long long t1 = (long long)time(NULL);
  json_decref(r);
  json_t *args = tc_expect_note(&sub, "revoked");
  char *shown = json_dumps(args, JSON_COMPACT);
  TT_ASSERT_MSG(json_array_size(args) == 2, "user.revoke notification: %s", shown);
  json_t *e = tc_entry_of(args, "sub", "mark");
  TT_ASSERT_MSG(e != NULL, "no sub entry: %s", shown);
  TT_EQ_INT(json_object_size(e), 5); /* kind, id, until, before, cursor */
  long long before = tc_int(e, "before");
  TT_ASSERT(before >= t0 && before <= t1);
  TT_ASSERT(tc_int(e, "until") > before + 365LL * 86400); /* outlives any token issued before */
  TT_ASSERT_MSG(!strstr(shown, tc_str(ms1, "handle")) && !strstr(shown, tc_str(ms2, "handle")),
                "%s", shown);
  e = tc_entry_of(args, "family", tc_str(mp, "family"));
  TT_ASSERT_MSG(e != NULL, "%s", shown);
  TT_ASSERT(tc_int(e, "until") >= tc_int(mp, "refresh_expires_at"));
  free(shown);
  json_decref(args);

  /* keys.rotate: [2, "keys", [{keys_version}]]. */
  r = tc_call_ok(c, "keys.rotate", NULL);
  long long nkv = tc_int(r, "keys_version");
  json_decref(r);
  TT_ASSERT(nkv != kv);
  args = tc_expect_note(&sub, "keys");
  TT_EQ_INT(json_array_size(args), 1);
  TT_EQ_INT(json_object_size(json_array_get(args, 0)), 1);
  TT_EQ_INT(tc_int(json_array_get(args, 0), "keys_version"), nkv);
  json_decref(args);

  /* A connection that never subscribed got none of it: its next message is its own reply. */
  uint32_t id = tc_raw_send(&quiet, "sys.ping", NULL);
  json_t *m = tc_raw_next(&quiet, 10000);
  TT_ASSERT(m != NULL);
  TT_EQ_INT(json_integer_value(json_array_get(m, 0)), 1);
  TT_EQ_INT(json_integer_value(json_array_get(m, 1)), id);
  json_decref(m);

  /* The subscriber itself revoking: its reply and the notification both come, on the one
   * connection, and the revocation is in force once either arrives. */
  json_t *t2 = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "lena"));
  id = tc_raw_send(&sub, "token.revoke", json_pack("{s:s}", "token", tc_str(t2, "token")));
  bool got_reply = false, got_note = false;
  int first = 0;
  while (!got_reply || !got_note) {
    m = tc_raw_next(&sub, 10000);
    TT_ASSERT_MSG(m != NULL, "reply %d, notification %d", got_reply, got_note);
    TT_EQ_STR(tc_verify_code(checker, tc_str(t2, "token"), NULL, true), "revoked");
    long long type = json_integer_value(json_array_get(m, 0));
    if (!first) first = (int)type;
    if (type == 1) {
      TT_EQ_INT(json_integer_value(json_array_get(m, 1)), id);
      TT_EQ_INT(tc_int(json_array_get(m, 3), "revoked"), 1);
      got_reply = true;
    } else {
      TT_EQ_INT(type, 2);
      TT_ASSERT(tc_entry_of(json_array_get(m, 2), "jti", tc_str(t2, "jti")) != NULL);
      got_note = true;
    }
    json_decref(m);
  }
  fprintf(stderr, "on the revoking connection itself the %s came first\n",
          first == 1 ? "reply" : "notification");
  json_decref(t2);
  tc_raw_close(&quiet);
  tc_raw_close(&sub);
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
  json_t *p = tc_pair_for(c, "nina");
  tessera_close(c);
  tc_raw sub, rev;
  tc_raw_open(&sub, &d);
  tc_raw_open(&rev, &d);
  tc_raw_subscribe(&sub);
  tc_raw_send(&rev, "token.revoke", json_pack("{s:s}", "token", tc_str(t, "token")));
  tc_expect_revoked_one(&sub, "jti", tc_str(t, "jti"));
  td_kill9(&d);
  tc_raw_close(&sub);
  tc_raw_close(&rev);
  td_launch(&d, NULL);
  c = tc_client(&d);
  TT_EQ_STR(tc_verify_code(c, tc_str(t, "token"), NULL, true), "revoked");
  tessera_close(c);

  tc_raw_open(&sub, &d);
  tc_raw_open(&rev, &d);
  tc_raw_subscribe(&sub);
  tc_raw_send(&rev, "token.revoke", json_pack("{s:s}", "family", tc_str(p, "family")));
  tc_expect_revoked_one(&sub, "family", tc_str(p, "family"));
  td_kill9(&d);
  tc_raw_close(&sub);
  tc_raw_close(&rev);
  td_launch(&d, NULL);
  c = tc_client(&d);
  TT_EQ_STR(tc_refresh(c, tc_str(p, "refresh_token"), NULL), "revoked");
  TT_EQ_STR(tc_verify_code(c, tc_str(p, "access_token"), NULL, true), "revoked");
  tessera_close(c);
  json_decref(p);
  json_decref(t);
  tc_stop_clean(&d);
}

/* ---- a revocation that is not written is not announced ----------------------------------- */

static void failed_revocation_is_not_announced(void) {
  static const char *const args[] = {"--max-store-bytes", "2M", NULL};
  td_daemon d;
  td_start(&d, args);
  if (tr_env_redis()) { /* the Redis store's cap: maxmemory with noeviction (tests/lib/redis.c) */
    char out[64];
    TT_EQ_INT(tr_cli(&d.redis, out, sizeof(out),
                     (const char *[]){"CONFIG", "SET", "maxmemory", "3mb", NULL}), 0);
  }
  tessera_client *c = tc_client(&d);
  json_t *s1 = tc_create_sub(c, "uma"), *s2 = tc_create_sub(c, "uma");
  json_t *up = tc_pair_for(c, "uma");
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
  if (tr_env_redis()) {
    /* Used memory now hovers at the cap, where a freed client buffer can dip it under: lower the
     * cap well below it so every step below meets a full Redis. What must still work there:
     * subscribing (the feed head is allow-oom) and a logout, which only deletes. */
    char out[64];
    TT_EQ_INT(tr_cli(&d.redis, out, sizeof(out),
                     (const char *[]){"CONFIG", "SET", "maxmemory", "1mb", NULL}), 0);
    TT_EQ_INT(tc_revoke_n(c, "sid", tc_str(s2, "sid")), 1);
    tc_expect_unauthenticated(c, tc_str(s2, "sid"));
  }
  tc_raw sub;
  tc_raw_open(&sub, &d);
  long long kv = tc_raw_subscribe(&sub);
  /* Log uma out everywhere while the store is full. */
  const char *got = tc_call_code(c, "user.revoke", json_pack("{s:s}", "sub", "uma"), NULL);
  fprintf(stderr, "user.revoke on a full store: %s\n", got[0] ? got : "ok");
  if (strcmp(got, "unavailable") == 0) {
    /* Nothing was written: sessions and refresh still work ... */
    TT_EQ_STR(tc_validate(c, tc_str(s1, "sid"), NULL, NULL), "");
    TT_EQ_STR(tc_verify_code(c, tc_str(up, "access_token"), NULL, true), "");
    /* ... and subscribers must not have been told otherwise: the next notification is the
     * key rotation's (a notification that is no revocation, as a fence). */
    json_t *r = tc_call_ok(c, "keys.rotate", NULL);
    json_decref(r);
    json_t *m = tc_raw_next(&sub, 10000);
    TT_ASSERT(m != NULL);
    char *shown = json_dumps(m, JSON_COMPACT);
    TT_ASSERT_MSG(strcmp(json_string_value(json_array_get(m, 1)), "keys") == 0,
                  "subscribers heard of a revocation that was not written: %.500s", shown);
    TT_ASSERT(tc_int(json_array_get(json_array_get(m, 2), 0), "keys_version") != kv);
    free(shown);
    json_decref(m);
  } else {
    TT_EQ_STR(got, "");
    TT_EQ_STR(tc_validate(c, tc_str(s1, "sid"), NULL, NULL), "unauthenticated");
  }
  tc_raw_close(&sub);
  json_decref(fill);
  free(blob);
  json_decref(up);
  json_decref(s2);
  json_decref(s1);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(subscribers_hear_every_revocation),
    TT_CASE(notification_means_durable),
    TT_CASE(failed_revocation_is_not_announced),
};

TT_MAIN(cases)
