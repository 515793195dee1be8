/* tests/lib/calls.h: calling the real daemon through libtessera, for integration tests.
 *
 * Every helper fails the test (tt_fail) on anything unexpected, naming the method and the
 * daemon's error. Params passed in are stolen (json_decref'd), so calls read as one line:
 *   json_t *r = tc_call_ok(c, "session.create", json_pack("{s:s}", "sub", "ann"));
 * Results are new references the caller json_decrefs. */
#ifndef TT_CALLS_H
#define TT_CALLS_H

#include "daemon.h"

#include <tessera/tessera.h>

#define TC_TIMEOUT_MS 60000

/* A new connection to d's socket (tessera_close it). */
tessera_client *tc_client(const td_daemon *d);
/* Calls method and returns its result; params stolen (may be NULL). */
json_t *tc_call_ok(tessera_client *c, const char *method, json_t *params);
/* Calls method and returns the daemon's error code ("" on success, the result then in *result
 * when result is not NULL); params stolen. Transport errors fail the test. The code points
 * into static storage: valid until the next call. */
const char *tc_call_code(tessera_client *c, const char *method, json_t *params, json_t **result);
/* Fails the test unless method answers the error code. */
void tc_expect_code(tessera_client *c, const char *method, json_t *params, const char *code);
/* A string / integer member of o; fails the test when missing or of another type. */
const char *tc_str(const json_t *o, const char *key);
long long tc_int(const json_t *o, const char *key);
/* sys.stats[name]. */
long long tc_stat(tessera_client *c, const char *name);
/* SIGTERM, expect a clean exit 0, remove the temp dir. */
void tc_stop_clean(td_daemon *d);

#endif
