/* sidecar/methods/sys.c: sys.ping and sys.stats, the daemon's own methods.
 *
 * sys.stats gathers, in this order, the server's counters (stats.h), the domain's gauges
 * (ts_domain_stats), one method.<name> per row of methods/list.c and one error.<code> per
 * wire code. A static list: loop thread only. */
#include "method.h"

#include "domain.h"
#include "error.h"
#include "rpc.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void sys_ping(ts_req *r, const ts_param_value *v) {
  (void)v;
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 2);
  ts_pack_cstr(pk, "version");
  ts_pack_cstr(pk, TESSERA_VERSION);
  ts_pack_cstr(pk, "now");
  msgpack_pack_int64(pk, (int64_t)time(NULL));
  ts_req_send(r);
}

static void sys_stats(ts_req *r, const ts_param_value *v) {
  (void)v;
  ts_server *s = r->conn->server;
  static ts_stat_list l; /* loop thread only */
  l.n = 0;
  ts_stat_add(&l, "uptime", (uv_now(s->loop) - s->started_ms) / 1000);
  ts_stat_add(&l, "connections", s->n_conns);
  ts_stat_add(&l, "connections_accepted", s->stats.accepted);
  ts_stat_add(&l, "connections_rejected_peer", s->stats.rejected_peers);
  ts_stat_add(&l, "connections_closed_protocol", s->stats.closed_protocol);
  ts_stat_add(&l, "connections_closed_timeout", s->stats.closed_timeout);
  ts_stat_add(&l, "read_pauses", s->stats.read_pauses);
  ts_stat_add(&l, "requests", s->stats.requests);
  ts_stat_add(&l, "feed_entries_sent", s->stats.feed_entries_sent);
  ts_stat_add(&l, "feed_resets", s->stats.feed_resets);
  ts_stat_add(&l, "feed_holds", s->stats.feed_holds);
  ts_domain_stats(s->domain, &l);
  char name[96];
  for (size_t i = 0; i < ts_method_count(); i++) {
    snprintf(name, sizeof(name), "method.%s", ts_method_at(i)->name);
    ts_stat_add(&l, name, s->stats.method_calls[i]);
  }
  static const int codes[] = {TS_EBAD_REQUEST, TS_EUNKNOWN_METHOD, TS_EUNAUTHENTICATED,
                              TS_EEXPIRED, TS_EREVOKED, TS_EREUSED, TS_EFORBIDDEN,
                              TS_EOVERLOADED, TS_EUNAVAILABLE, TS_EINTERNAL};
  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    snprintf(name, sizeof(name), "error.%s", ts_err_code(codes[i]));
    ts_stat_add(&l, name, s->stats.errors[codes[i] - TS_ERROR_FIRST_ - 1]);
  }
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, l.n);
  for (size_t i = 0; i < l.n; i++) {
    ts_pack_cstr(pk, l.items[i].name);
    msgpack_pack_uint64(pk, l.items[i].value);
  }
  ts_req_send(r);
}

const ts_method ts_method_sys_ping = {.name = "sys.ping", .handler = sys_ping};
const ts_method ts_method_sys_stats = {.name = "sys.stats", .handler = sys_stats};
