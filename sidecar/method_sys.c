/* sidecar/method_sys.c: sys.ping and sys.stats. */
#include "dispatch.h"
#include "domain.h"
#include "error.h"
#include "params.h"
#include "rpc.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static bool no_params(ts_req *r, const msgpack_object *params) {
  char why[128];
  if (ts_params_parse(params, NULL, 0, NULL, why, sizeof(why)) != 0) {
    ts_req_fail(r, TS_EBAD_REQUEST, why);
    return false;
  }
  return true;
}

void ts_sys_ping(ts_req *r, const msgpack_object *params) {
  if (!no_params(r, params)) return;
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 2);
  ts_pack_cstr(pk, "version");
  ts_pack_cstr(pk, TESSERA_VERSION);
  ts_pack_cstr(pk, "now");
  msgpack_pack_int64(pk, (int64_t)time(NULL));
  ts_req_send(r);
}

void ts_stat_add(ts_stat_list *l, const char *name, uint64_t value) {
  if (l->n == TS_STATS_MAX) return;
  snprintf(l->items[l->n].name, sizeof(l->items[l->n].name), "%s", name);
  l->items[l->n].value = value;
  l->n++;
}

void ts_sys_stats(ts_req *r, const msgpack_object *params) {
  if (!no_params(r, params)) return;
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
  size_t n;
  ts_method *m = ts_methods(&n);
  char name[96];
  for (size_t i = 0; i < n; i++) {
    snprintf(name, sizeof(name), "method.%s", m[i].name);
    ts_stat_add(&l, name, m[i].calls);
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
