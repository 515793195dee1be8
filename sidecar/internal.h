/* sidecar/internal.h: calling a protocol method from inside the daemon (the HTTP edge).
 *
 * Owner: the HTTP edge (sidecar/http/). An internal call is an ordinary MessagePack-RPC request
 * dispatched on a pseudo-connection that has no socket: the same decoding, method rows, door
 * and param checks as the Unix socket, and the reply goes to a callback instead of a write.
 * So the HTTP edge never reaches into session or token code: it only knows method names and
 * their documented params and results (PROTOCOL.md), whatever store backs them.
 *
 * The pseudo-connection is not an admin (admin methods answer `forbidden`) and never
 * subscribes. Loop thread only. */
#ifndef TS_INTERNAL_H
#define TS_INTERNAL_H

#include "server.h"

#include <msgpack.h>
#include <stddef.h>

/* err: 0, or the TS_E* code of the reply's error (its wire code mapped back; unknown codes are
 * TS_EINTERNAL). result: the result object on success (NULL on error), valid during the
 * callback only; it may hold secrets (a sid, a cookie): copy nothing of them into logs. */
typedef void (*ts_internal_cb)(void *ctx, int err, const msgpack_object *result);

/* Sets up s's pseudo-connection (once, after ts_server_start). Returns 0 or TS_ENOMEM. */
int ts_internal_init(ts_server *s);
void ts_internal_free(ts_server *s);

/* Calls method with params, a packed msgpack map (NULL/0: no params). The callback runs
 * exactly once, possibly before ts_internal_call returns (a method that answers at once) or
 * later (one that waits for the writer). Returns 0, or a TS_E* code when the request could not
 * be built (then the callback never runs). The params bytes are not kept. */
int ts_internal_call(ts_server *s, const char *method, const void *params, size_t params_len,
                     ts_internal_cb cb, void *ctx);

/* dispatch.c hands the reply of a request made on the pseudo-connection here. */
void ts_internal_reply(ts_conn *c, const char *reply, size_t len);

/* The TS_E* value of a wire error code ("unauthenticated" -> TS_EUNAUTHENTICATED). */
int ts_internal_err_of_code(const char *code, size_t len);

#endif
