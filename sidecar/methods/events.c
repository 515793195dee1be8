/* sidecar/methods/events.c: events.subscribe.
 *
 * The connection becomes a subscriber (events.c), the reply carries the cursor of the latest
 * entry, and only then does the pump send what followed `since`: a subscriber sees its reply
 * before the first "revoked" notification of its replay (a reset notification, when since
 * cannot be resumed, comes before the reply). Loop thread. */
#include "method.h"

#include "domain.h"
#include "events.h"
#include "rpc.h"

static void events_subscribe(ts_req *r, const ts_param_value *v) {
  ts_conn *c = r->conn;
  ts_domain *d = c->server->domain;
  uint64_t latest;
  int rc = ts_events_subscribe(c, v[0].present ? v[0].str : NULL, v[0].len, &latest);
  if (rc) {
    ts_req_fail(r, rc, NULL);
    return;
  }
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 3);
  ts_pack_cstr(pk, "subscribed");
  msgpack_pack_true(pk);
  ts_pack_cstr(pk, "keys_version");
  msgpack_pack_int64(pk, d->keys.version);
  ts_events_pack_cursor(pk, d->store_id, latest);
  ts_req_send(r);
  ts_events_pump(c); /* what followed since, in chunks as the write queue allows */
}

static const ts_param subscribe_params[] = {{"since", TS_P_STR, false, 1, 64}};

const ts_method ts_method_events_subscribe = {
    .name = "events.subscribe", .handler = events_subscribe, TS_PARAMS(subscribe_params)};
