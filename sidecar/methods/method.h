/* sidecar/methods/method.h: a method of the protocol as one const row.
 *
 * Each file under methods/ serves one domain: it holds the param specs, the static handlers
 * and one exported `const ts_method` row per method; methods/list.c gathers the rows (as
 * dav1d's output.c lists its muxers). The rows are the only way to a handler.
 *
 * Before a handler runs, dispatch (dispatch.c) has found its row, counted the call, checked
 * the admin door, parsed the request's params against the row's spec (ts_params_parse: unknown
 * keys, types, required keys, lengths, UTF-8) and run the row's check hook, replying
 * bad_request on the first failure (as Redis checks a command's arity before the command). So
 * a handler receives the parsed values, v[i] for spec[i], and only interprets them (defaults,
 * maxima, decoding). The values point into the request's msgpack object: valid during the
 * handler's synchronous part only; copy what an asynchronous completion needs.
 *
 * A handler replies through ts_req_result/ts_req_send or ts_req_fail (server.h), at once or
 * later (a write queued to the writer thread replies when its commit returns). Rows are
 * const: the daemon's per-method counters live in ts_stats (stats.h), indexed by the row's
 * place in the list. */
#ifndef TS_METHOD_H
#define TS_METHOD_H

#include "params.h"
#include "server.h"

#include <stddef.h>

/* The most params a row may declare (the values dispatch keeps on its stack). */
#define TS_METHOD_MAX_PARAMS 8

typedef void (*ts_handler)(ts_req *r, const ts_param_value *v);

enum ts_method_flags {
  TS_METHOD_ADMIN = 1, /* the peer's uid must be an --admin-uid */
};

typedef struct ts_method {
  const char *name;
  ts_handler handler;
  unsigned flags;
  const ts_param *params; /* the spec: NULL when the method takes none */
  size_t n_params;
  /* Optional: a rule across params (e.g. "exactly one of"), run after the spec matched and
   * before the handler. Returns NULL, or the bad_request message. */
  const char *(*check)(const ts_param_value *v);
} ts_method;

/* .params and .n_params of a row from a spec array; the count is the compiler's, and a spec
 * longer than TS_METHOD_MAX_PARAMS does not compile. */
#define TS_PARAMS(spec)                                                                       \
  .params = (spec),                                                                          \
  .n_params = TS_PARAMS_N(spec) +                                                            \
              0 * sizeof(char[TS_PARAMS_N(spec) <= TS_METHOD_MAX_PARAMS ? 1 : -1])

/* The list (methods/list.c). */
size_t ts_method_count(void);
const ts_method *ts_method_at(size_t i);
/* The row named name[0..len), and its index in *index; NULL if there is none. */
const ts_method *ts_method_find(const char *name, size_t len, size_t *index);

#endif
