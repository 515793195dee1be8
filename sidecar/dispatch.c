/* sidecar/dispatch.c: decode a message, find its row (methods/list.c), count the call, check
 * the door, check the params against the row's spec, run the handler; and the reply helpers
 * every handler uses.
 *
 * Replies carry sids and tokens: the reply buffer grows without leaving copies behind
 * (ts_wipe_sbuffer_write), a result discarded for an error is wiped, and the buffer is wiped
 * when the request finishes (proto/wipe.h).
 *
 * No allocation per request in the steady state (issue 11): a finished ts_req goes on the
 * server's free list with its (wiped, emptied) reply buffer, up to REQ_POOL_MAX of them; the
 * request's msgpack objects live in one zone the server keeps and clears after each message
 * (strings are not copied: they point into the connection's input); a reply is copied into
 * its connection's output buffer (conn.c) and the request is done at once. */
#include "server.h"

#include "error.h"
#include "internal.h"
#include "log.h"
#include "method.h"
#include "observe.h"
#include "params.h"
#include "rpc.h"
#include "wipe.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQ_POOL_MAX 4096 /* finished requests kept for reuse */
#define REQ_OUT_KEEP 4096 /* a reply buffer larger than this is freed, not kept */

static ts_req *req_new(ts_conn *c, uint32_t msgid) {
  ts_server *s = c->server;
  ts_req *r = s->free_reqs;
  if (r) {
    s->free_reqs = r->next_free;
    s->n_free_reqs--;
  } else {
    r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    msgpack_sbuffer_init(&r->out);
  }
  msgpack_sbuffer out = r->out; /* empty, maybe with memory to reuse */
  memset(r, 0, sizeof(*r));
  r->out = out;
  r->conn = c;
  r->msgid = msgid;
  msgpack_packer_init(&r->pk, &r->out, ts_wipe_sbuffer_write);
  if (ts_rpc_pack_response_head(&r->pk, msgid) != 0) {
    ts_wipe_sbuffer_destroy(&r->out);
    free(r);
    return NULL;
  }
  r->head_len = r->out.size;
  r->started_ns = uv_hrtime();
  c->in_flight++;
  return r;
}

static void req_free(ts_req *r) {
  ts_conn *c = r->conn;
  ts_server *s = c->server;
  ts_observe_free(r);
  if (s->n_free_reqs < REQ_POOL_MAX && r->out.alloc <= REQ_OUT_KEEP) {
    ts_wipe_sbuffer(&r->out);
    r->next_free = s->free_reqs;
    s->free_reqs = r;
    s->n_free_reqs++;
  } else {
    ts_wipe_sbuffer_destroy(&r->out);
    free(r);
  }
  ts_conn_request_done(c);
}

void ts_dispatch_free_pool(ts_server *s) {
  while (s->free_reqs) {
    ts_req *r = s->free_reqs;
    s->free_reqs = r->next_free;
    ts_wipe_sbuffer_destroy(&r->out);
    free(r);
  }
  s->n_free_reqs = 0;
}

/* Drops whatever was packed after the head, wiping it. */
static void discard_result(ts_req *r) {
  if (r->out.size > r->head_len)
    sodium_memzero(r->out.data + r->head_len, r->out.size - r->head_len);
  r->out.size = r->head_len;
}

msgpack_packer *ts_req_result(ts_req *r) {
  discard_result(r);
  ts_rpc_pack_ok(&r->pk);
  return &r->pk;
}

void ts_req_send(ts_req *r) {
  ts_conn *c = r->conn;
  if (r->method) ts_observe_reply(r);
  if (c->internal) { /* an internal call (internal.c): the reply goes to its callback */
    if (!c->closing && r->out.size > r->head_len) ts_internal_reply(c, r->out.data, r->out.size);
    req_free(r);
    return;
  }
  if (!c->closing && r->out.size > r->head_len && ts_conn_queue(c, r->out.data, r->out.size) != 0)
    ts_conn_close(c, "out of memory");
  req_free(r);
}

void ts_req_fail(ts_req *r, int err, const char *detail) {
  ts_stats_count_error(&r->conn->server->stats, err);
  r->err = err;
  discard_result(r);
  ts_rpc_pack_error(&r->pk, ts_err_code(err), detail ? detail : ts_strerror(err));
  ts_req_send(r);
}

void ts_req_failf(ts_req *r, int err, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  ts_req_fail(r, err, msg);
}

void ts_req_reply_count(ts_req *r, int err, const char *key, uint64_t n) {
  if (err) {
    ts_req_fail(r, err, NULL);
    return;
  }
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 1);
  ts_pack_cstr(pk, key);
  msgpack_pack_uint64(pk, n);
  ts_req_send(r);
}

/* Parses params against the row's spec, runs its check hook, then the handler: a handler
 * only ever sees params that matched its spec. */
static void run_method(ts_req *r, const ts_method *method, const msgpack_object *params) {
  ts_param_value v[TS_METHOD_MAX_PARAMS];
  char why[160];
  if (ts_params_parse(params, method->params, method->n_params, v, why, sizeof(why)) != 0) {
    ts_req_fail(r, TS_EBAD_REQUEST, why);
    return;
  }
  const char *bad = method->check ? method->check(v) : NULL;
  if (bad) {
    ts_req_fail(r, TS_EBAD_REQUEST, bad);
    return;
  }
  method->handler(r, v);
}

static int dispatch_request(ts_conn *c, const ts_rpc_msg *m) {
  ts_req *r = req_new(c, m->msgid);
  if (!r) return TS_ENOMEM;
  c->server->stats.requests++;
  if (m->error) {
    ts_req_fail(r, m->error, m->error_detail);
    return 0;
  }
  if (!ts_utf8_valid(m->method, m->method_len)) { /* never echoed, never logged */
    ts_req_fail(r, TS_EBAD_REQUEST, "method must be valid UTF-8");
    return 0;
  }
  size_t index;
  const ts_method *method = ts_method_find(m->method, m->method_len, &index);
  if (!method) {
    ts_req_fail(r, TS_EUNKNOWN_METHOD, NULL);
    return 0;
  }
  c->server->stats.method_calls[index]++;
  r->method = method;
  r->method_index = index;
  ts_observe_request(r, m->params);
  if ((method->flags & TS_METHOD_ADMIN) && !c->admin) {
    ts_log(TS_LOG_WARN, "admin method refused", "{s:s, s:i}", "method", method->name, "uid",
           (int)c->uid);
    ts_req_fail(r, TS_EFORBIDDEN, NULL);
    return 0;
  }
  run_method(r, method, m->params);
  return 0;
}

int ts_dispatch_message(ts_conn *c, const uint8_t *msg, size_t len) {
  msgpack_zone *z = &c->server->zone; /* ts_server_start made it */
  msgpack_object obj;
  size_t off = 0;
  int rc = msgpack_unpack((const char *)msg, len, &off, z, &obj) == MSGPACK_UNPACK_SUCCESS
               ? 0 : TS_EENVELOPE;
  ts_rpc_msg m;
  if (rc == 0) rc = ts_rpc_decode_request(&obj, &m);
  if (rc == 0 && m.kind == TS_RPC_REQUEST) rc = dispatch_request(c, &m);
  msgpack_zone_clear(z);
  return rc;
}
