/* sidecar/observe.h: what every reply tells the metrics and the audit log.
 *
 * Owner: the HTTP edge (metrics) and the audit stream. dispatch.c calls these three hooks for
 * every request that found its method row, on the socket and on internal calls alike:
 * ts_observe_request when it starts (keeps the public params an audit line names), and
 * ts_observe_reply when its reply is complete (counts the method x code, the latency, the
 * revocations, and writes the audit line), ts_observe_free when the request is freed. Loop
 * thread only. Nothing secret is kept: sids only as a keyed hash, tokens only as their
 * public claims (jti, fam, sub). */
#ifndef TS_OBSERVE_H
#define TS_OBSERVE_H

#include "server.h"

void ts_observe_request(ts_req *r, const msgpack_object *params);
void ts_observe_reply(ts_req *r);
void ts_observe_free(ts_req *r);

/* The wire codes in the order of ts_stats.method_codes[1..]: "bad_request", ... */
const char *ts_observe_code_name(size_t i);

#endif
