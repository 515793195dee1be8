/* tests/lib/calls.h: calling the real daemon through libtessera, for integration tests.
 *
 * The one set of call helpers every integration program uses (issue 10: no test file keeps a
 * copy). Every helper fails the test (tt_fail) on anything unexpected, naming the method and
 * the daemon's error. Params passed in are stolen (json_decref'd), so calls read as one line:
 *   json_t *r = tc_call_ok(c, "session.create", json_pack("{s:s}", "sub", "ann"));
 * Errors are checked one way: tc_expect_error (the code, and optionally words of the message),
 * or tc_call_code where the test branches on the code. Results are new references the caller
 * json_decrefs. */
#ifndef TT_CALLS_H
#define TT_CALLS_H

#include "daemon.h"
#include "wire.h"

#include <tessera/tessera.h>
#include <tessera/verifier.h>

#include <pwd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TC_TIMEOUT_MS 60000

/* A new connection to d's socket (tessera_close it). */
tessera_client *tc_client(const td_daemon *d);
/* Calls method and returns its result; params stolen (may be NULL). */
json_t *tc_call_ok(tessera_client *c, const char *method, json_t *params);
/* Calls method and returns the daemon's error code ("" on success, the result then in *result
 * when result is not NULL); params stolen. Transport errors fail the test. The code points
 * into static storage, as does tc_last_message(): valid until the next call. */
const char *tc_call_code(tessera_client *c, const char *method, json_t *params, json_t **result);
/* The error message of the last tc_call_code / tc_expect_error ("" after a success). */
const char *tc_last_message(void);
/* Fails the test unless method answers the error code and, when message_has is not NULL, a
 * message containing message_has; params stolen. */
void tc_expect_error(tessera_client *c, const char *method, json_t *params, const char *code,
                     const char *message_has);
/* A string / integer member of o; fails the test when missing or of another type. */
const char *tc_str(const json_t *o, const char *key);
long long tc_int(const json_t *o, const char *key);
/* sys.stats[name]. */
long long tc_stat(tessera_client *c, const char *name);
/* Polls sys.stats[name] (every 20 ms, at most timeout_ms) until it is >= want (rising) or
 * <= want (!rising); returns the last value read. */
long long tc_wait_stat(tessera_client *c, const char *name, bool rising, long long want,
                       int timeout_ms);
/* A sys.ping on a new connection. */
void tc_ping(const td_daemon *d);
/* SIGTERM, expect a clean exit 0, remove the temp dir. */
void tc_stop_clean(td_daemon *d);
/* SIGTERM, expect a clean exit 0 (the temp dir stays). */
void tc_stop_ok(td_daemon *d);
/* Admin setup: the user "nobody", with d's temp dir and socket opened to it (0755 / 0666) so
 * that only the daemon's own checks (allow-uid, admin-uid) stand between it and a call. The
 * suites run as root (CI does); fails the test otherwise. */
const struct passwd *tc_open_to_nobody(const td_daemon *d);
/* Admin setup: starts tesserad on d with --allow-uid 0,<nobody's uid> and opens it to nobody
 * (tc_open_to_nobody); returns nobody. */
const struct passwd *tc_start_for_nobody(td_daemon *d);
/* In a child process running as nobody, on a new connection: calls first (which must succeed:
 * nobody is let in), then method, then sys.ping (the connection stays usable after a refusal).
 * Returns the code method answered ("" on success; static storage). */
const char *tc_call_as_nobody(const td_daemon *d, const char *first, const char *method);

/* Bulk sizes shrink where every write costs many times more: under the sanitizers (tests/run
 * sets TT_SANITIZED; a create costs ~5 ms under ASan) and under valgrind (TT_VALGRIND). */
int tc_scaled(int n);
/* Whether s is exactly n base64url characters. */
bool tc_is_b64url(const char *s, size_t n);
/* The wall clock and a monotonic clock, in ms. */
long long tc_mono_ms(void);

/* Runs the tessera CLI (td_cli) and returns its stdout parsed as JSON; fails the test on a
 * nonzero exit or output that is not JSON. */
json_t *tc_cli_json(const td_daemon *d, const char *const *args);

/* ---- tokens ---------------------------------------------------------------------------- */

/* token.issue with params (stolen); returns the token (malloc'd); the whole reply in *reply
 * when reply is not NULL. */
char *tc_issue(tessera_client *c, json_t *params, json_t **reply);
/* token.issue {sub} / {sub, purpose}; the token, malloc'd. */
char *tc_issue_sub(tessera_client *c, const char *sub);
char *tc_issue_purpose(tessera_client *c, const char *sub, const char *purpose);
/* token.verify params for tok with an optional aud and purpose. */
json_t *tc_verify_params(const char *tok, const char *aud, const char *purpose);
/* Verifies tok and expects code ("" for success); what names the case in a failure. Returns
 * the result on success (caller frees), else NULL. */
json_t *tc_expect_verify(tessera_client *c, const char *what, const char *tok, const char *aud,
                         const char *purpose, const char *code);
/* tc_expect_verify expecting success; the result has claims. */
json_t *tc_verify_ok(tessera_client *c, const char *what, const char *tok, const char *aud,
                     const char *purpose);
/* The kid a valid access token verifies with (malloc'd). */
char *tc_kid_of(tessera_client *c, const char *tok);
/* keys.jwks's result, and how many keys it holds. */
json_t *tc_jwks(tessera_client *c);
size_t tc_jwks_count(const json_t *set);

/* ---- sessions -------------------------------------------------------------------------- */

#define TC_SID_CHARS 43    /* a sid: 32 random bytes, base64url */
#define TC_HANDLE_CHARS 22 /* a handle: 16 bytes (creation ms, then random), base64url */

/* session.create with params (stolen) / with {sub}; the result. */
json_t *tc_create(tessera_client *c, json_t *params);
json_t *tc_create_sub(tessera_client *c, const char *sub);
/* Validates sid (client may be NULL, stolen); returns the error code, "" on success, and the
 * result in *out when out is not NULL. */
const char *tc_validate(tessera_client *c, const char *sid, json_t *client, json_t **out);
/* sid validates / is refused as unauthenticated. */
void tc_expect_valid(tessera_client *c, const char *sid);
void tc_expect_unauthenticated(tessera_client *c, const char *sid);
/* session.revoke {key: value}; how many it revoked. */
long long tc_revoke_n(tessera_client *c, const char *key, const char *value);
/* Pipelined creates: n sessions of params (borrowed) on c; each result is handed to each()
 * (may be NULL). */
void tc_create_many(tessera_client *c, const json_t *params, int n,
                    void (*each)(json_t *r, int i, void *arg), void *arg);
/* How many sessions session.list shows for sub, walking every page (limit 1000). */
long long tc_count_listed(tessera_client *c, const char *sub);

/* Sids and handles of n sessions; tc_keep_ids (an each() of tc_create_many, arg the set)
 * keeps entry i of a session.create result. */
typedef struct tc_idset {
  char (*sid)[TC_SID_CHARS + 1];
  char (*handle)[TC_HANDLE_CHARS + 1];
} tc_idset;
tc_idset tc_idset_new(int n);
void tc_idset_free(tc_idset *s);
void tc_keep_ids(json_t *r, int i, void *arg);
/* strcmp for qsort over an array of char[N]. */
int tc_cmp_str(const void *a, const void *b);

/* ---- the wall clock (where it is the thing under test) ----------------------------------- */

/* Returns once the wall clock reads at least `second`. The reference is time(), the clock the
 * daemon reads: on Linux it is the coarse clock, which turns a few milliseconds after
 * CLOCK_REALTIME does. Refuses to wait 30 s or more. */
void tc_wait_wall_until(int64_t second);
/* True while the fine wall clock (CLOCK_REALTIME, read now) is before `second`. Read after a
 * reply, it proves the answer came before that second began on every clock involved: the
 * daemon's coarse time() and Redis's key expiry (milliseconds on the fine clock) alike. */
bool tc_before_second(int64_t second);
/* The fine wall clock (CLOCK_REALTIME) in nanoseconds. */
int64_t tc_wall_ns(void);
/* Waits for the next wall-clock second to begin and returns it, so that a few requests fit
 * well inside one second. */
int64_t tc_start_of_next_second(void);

/* ---- refresh families and revocations --------------------------------------------------- */

/* token.pair {sub}; the result. */
json_t *tc_pair_for(tessera_client *c, const char *sub);
/* token.refresh: returns the error code ("" on success; then *out holds the pair). */
const char *tc_refresh(tessera_client *c, const char *rt, json_t **out);
json_t *tc_refresh_ok(tessera_client *c, const char *rt);
/* token.verify: "" when valid, else the error code. aud may be NULL. */
const char *tc_verify_code(tessera_client *c, const char *token, const char *aud,
                           bool check_revoked);
/* token.revoke with params (stolen) / {token}; how many it revoked (the result's only member). */
long long tc_revoke_with(tessera_client *c, json_t *params);
long long tc_revoke_token(tessera_client *c, const char *token);

/* ---- notifications on a raw connection ------------------------------------------------- */

/* A connection speaking msgpack-rpc by hand (tests/lib/wire.h), messages read as JSON. */
typedef struct tc_raw {
  int fd;
  tw_reader rd;
  uint32_t next_id;
} tc_raw;
void tc_raw_open(tc_raw *r, const td_daemon *d);
void tc_raw_close(tc_raw *r);
/* Sends [0, id, method, [params]] (params stolen; NULL: []). Returns the msgid. */
uint32_t tc_raw_send(tc_raw *r, const char *method, json_t *params);
/* The next message as JSON ([1, id, err, result] or [2, method, args]); NULL on time out/EOF. */
json_t *tc_raw_next(tc_raw *r, int timeout_ms);
/* events.subscribe; returns the keys_version of the reply. */
long long tc_raw_subscribe(tc_raw *r);
/* The next notification, which must be [2, method, args]; returns args (caller decrefs). */
json_t *tc_expect_note(tc_raw *r, const char *method);
/* The entry of kind and id (NULL: any) in a "revoked" args array, or NULL. */
json_t *tc_entry_of(const json_t *args, const char *kind, const char *id);
/* A single-entry "revoked" notification of kind and id; returns its until. */
long long tc_expect_revoked_one(tc_raw *r, const char *kind, const char *id);

/* ---- the in-process verifier ----------------------------------------------------------- */

/* token.issue {sub} plus extra params (stolen, may be NULL); returns the token (free()). */
char *tc_issue_claims(tessera_client *c, const char *sub, json_t *extra);
/* tessera_verifier_new, failing the test on an error. */
tessera_verifier *tc_verifier_new(const tessera_verifier_options *o);
tessera_verifier_stats tc_verifier_stats(tessera_verifier *v);
/* tessera_verifier_verify of tok must succeed (returns the claims) / be refused with code
 * ("unavailable" as TESSERA_EUNAVAILABLE, any other as TESSERA_EREJECTED), claims left NULL.
 * A failure names the caller's line. */
#define TC_EXPECT_LOCAL_OK(v, tok) tc_expect_local_ok_(v, tok, __LINE__)
#define TC_EXPECT_LOCAL_REFUSED(v, tok, code) \
  tc_expect_local_refused_(v, tok, strlen(tok), code, __LINE__)
json_t *tc_expect_local_ok_(tessera_verifier *v, const char *tok, int line);
void tc_expect_local_refused_(tessera_verifier *v, const char *tok, size_t len, const char *code,
                              int line);
/* Waits (bounded, 15 s, on the feed's own signal) until a feed counter reaches atleast. */
#define TC_WAIT_FEED_STAT(v, field, atleast) \
  tc_wait_feed_stat_(v, offsetof(tessera_verifier_stats, field), (atleast), #field, __LINE__)
void tc_wait_feed_stat_(tessera_verifier *v, size_t off, uint64_t atleast, const char *name,
                        int line);
/* 8 threads verify 1000 tokens each, picked at random: good[k] (sub "user<k>") must verify, one
 * in ten is a bad one that must be refused as unauthenticated. */
void tc_run_hammer(tessera_verifier *v, char **good, size_t ngood, char **bad, size_t nbad);

#endif
