/* tests/integration/test_purpose.c: purpose tokens against the real daemon (PROTOCOL.md
 * "tokens", "session.exchange"): a purpose token (the e-mail verification link) lives 24 hours
 * by default, token.consume takes it exactly once, session.exchange turns it into a session
 * exactly once, and a purpose token is no access token (nor the reverse). */
#include "calls.h"
#include "forge.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include "jws.h"
#include "keyring.h"

#include <tessera/tessera.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PURPOSE_TTL_DEFAULT 86400 /* --purpose-ttl 24h */

/* ---- purpose tokens -------------------------------------------------------------------------- */

static void purpose_token_defaults_to_24h(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *reply = NULL;
  char *t = tc_issue(c, json_pack("{s:s, s:s}", "sub", "alice", "purpose", "email"), &reply);
  long long in = tc_int(reply, "expires_in");
  /* expires_in is counted from the reply's own now: 86400, or 86399 if a second ticked
   * between signing and replying. */
  TT_ASSERT_MSG(in == PURPOSE_TTL_DEFAULT || in == PURPOSE_TTL_DEFAULT - 1, "expires_in %lld", in);
  json_t *hdr = tf_segment_json(t, 0);
  TT_EQ_STR(tc_str(hdr, "typ"), "pt+jwt");
  json_t *r = tc_verify_ok(c, "purpose token", t, NULL, "email");
  json_t *cl = json_object_get(r, "claims");
  TT_EQ_INT(tc_int(cl, "exp") - tc_int(cl, "iat"), PURPOSE_TTL_DEFAULT);
  TT_EQ_INT(tc_int(cl, "exp"), tc_int(reply, "expires_at"));
  TT_EQ_STR(tc_str(cl, "purpose"), "email");
  TT_EQ_STR(tc_str(cl, "sub"), "alice");
  json_decref(r), json_decref(hdr), json_decref(reply);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void purpose_token_is_consumed_once(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *t = tc_issue(c, json_pack("{s:s, s:s, s:{s:s}}", "sub", "alice", "purpose", "reset",
                                  "claims", "ip", "192.0.2.1"), NULL);
  json_decref(tc_verify_ok(c, "before use", t, NULL, "reset"));
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "email"),
                  "unauthenticated", NULL);
  tc_expect_error(c, "token.consume", json_pack("{s:s}", "token", t), "bad_request", "purpose");
  json_t *r = tc_call_ok(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"));
  json_t *cl = json_object_get(r, "claims");
  TT_EQ_STR(tc_str(cl, "sub"), "alice");
  TT_EQ_STR(tc_str(cl, "purpose"), "reset");
  TT_EQ_STR(tc_str(cl, "ip"), "192.0.2.1");
  json_decref(r);
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"),
                  "revoked", NULL);
  tc_expect_verify(c, "verify after use", t, NULL, "reset", "revoked");
  tc_expect_error(c, "session.exchange", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"),
                  "revoked", NULL);
  /* Another token of the same sub and purpose is its own. */
  char *t2 = tc_issue_purpose(c, "alice", "reset");
  json_decref(
      tc_call_ok(c, "token.consume", json_pack("{s:s, s:s}", "token", t2, "purpose", "reset")));
  /* Durable: still used after a restart. */
  tessera_close(c);
  TT_ASSERT(WIFEXITED(td_stop(&d)));
  td_launch(&d, NULL);
  c = tc_client(&d);
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"),
                  "revoked", NULL);
  tc_expect_verify(c, "verify after use and a restart", t2, NULL, "reset", "revoked");
  free(t2), free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void session_exchange_happens_once(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *t = tc_issue_purpose(c, "carol", "email");
  tc_expect_error(c, "session.exchange", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"),
                  "unauthenticated", NULL);
  tc_expect_error(c, "session.exchange", json_pack("{s:s}", "token", t), "bad_request", "purpose");
  /* The refusals did not use it up. */
  json_t *s =
      tc_call_ok(c, "session.exchange", json_pack("{s:s, s:s}", "token", t, "purpose", "email"));
  const char *sid = tc_str(s, "sid");
  TT_EQ_INT(strlen(sid), 43);
  TT_ASSERT(json_is_string(json_object_get(s, "handle")));
  TT_ASSERT(tc_int(s, "expires_in") > 0);
  TT_ASSERT(tc_int(s, "idle_expires_at") <= tc_int(s, "expires_at"));
  TT_ASSERT(strstr(tc_str(s, "cookie"), sid) != NULL);
  json_t *v = tc_call_ok(c, "session.validate", json_pack("{s:s}", "sid", sid));
  TT_EQ_STR(tc_str(v, "sub"), "carol");
  TT_EQ_STR(tc_str(v, "handle"), tc_str(s, "handle"));
  json_decref(v);
  tc_expect_error(c, "session.exchange", json_pack("{s:s, s:s}", "token", t, "purpose", "email"),
                  "revoked", NULL);
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "email"),
                  "revoked", NULL);
  tc_expect_verify(c, "verify after the exchange", t, NULL, "email", "revoked");
  /* Exactly one session came of it. */
  json_t *list = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "carol"));
  TT_EQ_INT(json_array_size(json_object_get(list, "sessions")), 1);
  json_decref(list);

  /* Two exchanges of one token racing on two connections: one session, one revoked. */
  char *t2 = tc_issue_purpose(c, "dave", "email");
  tessera_client *c2 = tc_client(&d);
  json_t *p = json_pack("{s:s, s:s}", "token", t2, "purpose", "email");
  uint32_t id1, id2;
  TT_EQ_INT(tessera_send(c, "session.exchange", p, &id1), 0);
  TT_EQ_INT(tessera_send(c2, "session.exchange", p, &id2), 0);
  json_t *r1 = NULL, *r2 = NULL;
  tessera_error e1 = {{0}, {0}}, e2 = {{0}, {0}};
  int rc1 = tessera_wait(c, id1, 30000, &r1, &e1), rc2 = tessera_wait(c2, id2, 30000, &r2, &e2);
  TT_ASSERT_MSG((rc1 == 0) != (rc2 == 0), "racing exchanges: %d (%s), %d (%s)", rc1, e1.code, rc2,
                e2.code);
  TT_EQ_STR(rc1 == 0 ? e2.code : e1.code, "revoked");
  list = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "dave"));
  TT_EQ_INT(json_array_size(json_object_get(list, "sessions")), 1);
  json_decref(list), json_decref(r1), json_decref(r2), json_decref(p);
  tessera_close(c2);
  free(t2);
  json_decref(s);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(purpose_token_defaults_to_24h),
    TT_CASE(purpose_token_is_consumed_once),
    TT_CASE(session_exchange_happens_once),
};

TT_MAIN(cases)
