/* sidecar/methods/list.c: every method of the protocol, gathered from the domain files.
 *
 * The one place that names them all: dispatch finds a row here by name, sys.stats walks the
 * list in this order for its method.<name> counters. A new method is a row in its domain's
 * file plus a line here. Rows are const; ts_stats.method_calls is indexed by the place in this
 * list, and its size is checked against the list at compile time. */
#include "method.h"

#include "stats.h"

#include <string.h>

extern const ts_method ts_method_sys_ping, ts_method_sys_stats;
extern const ts_method ts_method_session_create, ts_method_session_validate,
    ts_method_session_rotate, ts_method_session_revoke, ts_method_session_list,
    ts_method_session_revoke_all, ts_method_session_exchange;
extern const ts_method ts_method_keys_jwks, ts_method_keys_rotate;
extern const ts_method ts_method_token_issue, ts_method_token_verify, ts_method_token_consume;
extern const ts_method ts_method_token_pair, ts_method_token_refresh, ts_method_token_revoke;
extern const ts_method ts_method_user_revoke;
extern const ts_method ts_method_events_subscribe;

static const ts_method *const methods[] = {
    &ts_method_sys_ping,          /* methods/sys.c */
    &ts_method_sys_stats,
    &ts_method_session_create,    /* methods/sessions.c */
    &ts_method_session_validate,
    &ts_method_session_rotate,
    &ts_method_session_revoke,
    &ts_method_session_list,
    &ts_method_session_revoke_all,
    &ts_method_session_exchange,  /* methods/tokens.c: consumes a purpose token */
    &ts_method_keys_jwks,         /* methods/keys.c */
    &ts_method_keys_rotate,
    &ts_method_token_issue,       /* methods/tokens.c */
    &ts_method_token_verify,
    &ts_method_token_consume,
    &ts_method_token_pair,        /* methods/refresh.c */
    &ts_method_token_refresh,
    &ts_method_token_revoke,
    &ts_method_user_revoke,       /* methods/users.c */
    &ts_method_events_subscribe,  /* methods/events.c */
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

_Static_assert(N_METHODS <= TS_STATS_MAX_METHODS, "ts_stats.method_calls is too small");

size_t ts_method_count(void) { return N_METHODS; }

const ts_method *ts_method_at(size_t i) { return i < N_METHODS ? methods[i] : NULL; }

const ts_method *ts_method_find(const char *name, size_t len, size_t *index) {
  for (size_t i = 0; i < N_METHODS; i++) {
    if (strlen(methods[i]->name) == len && memcmp(methods[i]->name, name, len) == 0) {
      *index = i;
      return methods[i];
    }
  }
  return NULL;
}
