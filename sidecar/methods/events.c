/* sidecar/methods/events.c: events.subscribe.
 *
 * The backend says where `since` resumes (feed_resume; at once with LMDB, later with Redis).
 * The connection then becomes a subscriber (events.c), the reply carries the cursor of the
 * latest entry, and only then does the pump send what followed `since`: a subscriber sees
 * its reply before the first "revoked" notification of its replay (a reset notification,
 * when since cannot be resumed, comes before the reply). Loop thread. */
#include "method.h"

#include "backend.h"
#include "domain.h"
#include "error.h"
#include "events.h"
#include "rpc.h"

static void on_resume(void *ctx, int status, bool resumable, ts_feed_pos after,
                      ts_feed_pos latest) {
  ts_req *r = ctx;
  ts_conn *c = r->conn;
  ts_domain *d = c->server->domain;
  if (status == 0 && !c->closing && !resumable && !ts_events_send_reset(c)) status = TS_ENOMEM;
  if (status) {
    ts_req_fail(r, status == TS_ENOMEM ? status : TS_EUNAVAILABLE, NULL);
    return;
  }
  bool live = !c->closing;
  if (live) ts_events_start(c, after);
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 3);
  ts_pack_cstr(pk, "subscribed");
  msgpack_pack_true(pk);
  ts_pack_cstr(pk, "keys_version");
  msgpack_pack_int64(pk, d->keys.version);
  ts_events_pack_cursor(pk, d->backend, latest);
  ts_req_send(r); /* may finish c's last request: c is used only if it was live */
  if (live) ts_events_pump(c); /* what followed since, in chunks as the write queue allows */
}

static void events_subscribe(ts_req *r, const ts_param_value *v) {
  ts_backend *b = r->conn->server->domain->backend;
  b->ops->feed_resume(b, v[0].present ? v[0].str : NULL, v[0].present ? v[0].len : 0, on_resume,
                      r);
}

static const ts_param subscribe_params[] = {{"since", TS_P_STR, false, 1, 64}};

const ts_method ts_method_events_subscribe = {
    .name = "events.subscribe", .handler = events_subscribe, TS_PARAMS(subscribe_params)};
