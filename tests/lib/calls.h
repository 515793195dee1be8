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

#include <tessera/tessera.h>

#include <pwd.h>
#include <stdbool.h>

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

#endif
