/* sidecar/dispatch.h: the method table.
 *
 * Each method is a handler that takes the request and its params map (NULL when params was
 * []). The handler replies through ts_req_result/ts_req_send or ts_req_fail (server.h), at once
 * or later (a write queued to the writer thread replies when its commit returns). */
#ifndef TS_DISPATCH_H
#define TS_DISPATCH_H

#include "server.h"

typedef void (*ts_handler)(ts_req *r, const msgpack_object *params);

enum ts_method_flags {
  TS_METHOD_ADMIN = 1, /* the peer's uid must be an --admin-uid */
};

typedef struct ts_method {
  const char *name;
  ts_handler handler;
  unsigned flags;
  uint64_t calls; /* sys.stats: method.<name> */
} ts_method;

/* The table, for sys.stats. */
ts_method *ts_methods(size_t *n);

/* Handlers (one file per domain). */
void ts_sys_ping(ts_req *r, const msgpack_object *params);
void ts_sys_stats(ts_req *r, const msgpack_object *params);

#endif
