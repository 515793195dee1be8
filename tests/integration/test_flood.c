/* tests/integration/test_flood.c: revocation floods cannot crowd out real revocations
 * (sidecar/store/lmdb/store.h, the reserve tiers).
 *
 * Anyone on the socket can make up revocations: token.revoke {jti, exp} of any id,
 * user.revoke of any sub. A flood of them must not fill the store past the point where the
 * revocation of a real token (one that verifies, a live family, a user with sessions) still
 * lands, and a full store must fail only the operations that did not fit, never a whole group
 * commit. A small --max-store-bytes makes the store fill in seconds. */
#include "calls.h"
#include "daemon.h"
#include "tt.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Sends made-up revocations (token.revoke {jti, exp} when subs is false, user.revoke {sub}
 * otherwise), pipelined, until one answers `unavailable`; returns how many were accepted.
 * Every answer must be success or `unavailable`. */
static int flood(tessera_client *c, bool subs) {
  enum { WINDOW = 256, MAX = 200000 };
  uint32_t ids[WINDOW];
  long long exp = (long long)time(NULL) + 600;
  int accepted = 0, refused = 0;
  for (int sent = 0; sent < MAX && refused == 0;) {
    for (int i = 0; i < WINDOW; i++, sent++) {
      char id[64];
      snprintf(id, sizeof(id), "%s-%08d", subs ? "nobody" : "made-up", sent);
      json_t *p = subs ? json_pack("{s:s}", "sub", id)
                       : json_pack("{s:s, s:I}", "jti", id, "exp", (json_int_t)exp);
      TT_EQ_INT(tessera_send(c, subs ? "user.revoke" : "token.revoke", p, &ids[i]), 0);
      json_decref(p);
    }
    for (int i = 0; i < WINDOW; i++) {
      tessera_error err = {0};
      int rc = tessera_wait(c, ids[i], TC_TIMEOUT_MS, NULL, &err);
      if (rc == 0) {
        accepted++;
        continue;
      }
      TT_ASSERT_MSG(rc == TESSERA_EREMOTE && strcmp(err.code, "unavailable") == 0,
                    "flood: %s (%s: %s)", tessera_strerror(rc), err.code, err.message);
      refused++;
    }
  }
  TT_ASSERT_MSG(refused > 0, "the store never filled after %d revocations", accepted);
  fprintf(stderr, "%d made-up revocations accepted before the store refused them\n", accepted);
  return accepted;
}

static void real_revocations_land_after_a_flood(bool subs) {
  static const char *const args[] = {"--max-store-bytes", "2M", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  /* What an attacker may want to keep alive: an access token, a refresh family, and the
   * sessions of a user. */
  json_t *access = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "victim"));
  json_t *pair = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "victim"));
  json_t *other = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "bystander"));
  json_t *sess = tc_call_ok(c, "session.create", json_pack("{s:s}", "sub", "victim"));
  json_t *gone = tc_call_ok(c, "session.create", json_pack("{s:s}", "sub", "victim2"));
  int accepted = flood(c, subs);
  TT_ASSERT(accepted > 100);
  /* Full for new data, and for more made-up revocations of either kind. */
  tc_expect_error(c, "session.create", json_pack("{s:s}", "sub", "late"), "unavailable", NULL);
  tc_expect_error(c, "token.revoke",
                  json_pack("{s:s, s:I}", "jti", "one-more", "exp", (json_int_t)time(NULL) + 600),
                 "unavailable", NULL);
  tc_expect_error(c, "user.revoke", json_pack("{s:s}", "sub", "nobody-more"), "unavailable", NULL);
  /* Every real revocation still lands. */
  json_t *r = tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", tc_str(access, "token")));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  r = tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", tc_str(pair, "refresh_token")));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  r = tc_call_ok(c, "token.revoke", json_pack("{s:s}", "family", tc_str(other, "family")));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  r = tc_call_ok(c, "session.revoke", json_pack("{s:s}", "sid", tc_str(gone, "sid")));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "victim"));
  TT_EQ_INT(tc_int(r, "sessions"), 1);
  json_decref(r);
  /* ... and holds. */
  tc_expect_error(c, "token.verify",
                  json_pack("{s:s, s:b}", "token", tc_str(access, "token"), "check_revoked", 1),
                 "revoked", NULL);
  tc_expect_error(c, "token.refresh", json_pack("{s:s}", "refresh_token", tc_str(pair, "refresh_token")),
                  "revoked", NULL);
  tc_expect_error(c, "token.refresh", json_pack("{s:s}", "refresh_token", tc_str(other, "refresh_token")),
                  "revoked", NULL);
  tc_expect_error(c, "session.validate", json_pack("{s:s}", "sid", tc_str(sess, "sid")),
                  "unauthenticated", NULL);
  /* The full store failed single operations, never a group commit. */
  TT_EQ_INT(tc_stat(c, "store_failed_commits"), 0);
  json_decref(access);
  json_decref(pair);
  json_decref(other);
  json_decref(sess);
  json_decref(gone);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void flood_of_made_up_jtis(void) { real_revocations_land_after_a_flood(false); }
static void flood_of_made_up_subs(void) { real_revocations_land_after_a_flood(true); }

static const tt_case cases[] = {
    TT_CASE(flood_of_made_up_jtis),
    TT_CASE(flood_of_made_up_subs),
};
TT_MAIN(cases)
