/* sidecar/methods/users.c: user.revoke, "log out everywhere".
 *
 * One backend operation (user_revoke, store/backend.h) deletes every session of the sub,
 * revokes every refresh family of it and sets the sub's cut-off `before` (the second the
 * write applies in), which kills every token of the sub with iat <= before; the families and
 * the cut-off go to the revocation feed.
 *
 * Tokens carry iat in whole seconds, so a token issued later in that same second would be
 * dead on arrival: the reply is held until the wall clock has left that second (at most a
 * second, on a libuv timer; the loop never waits). Whoever issues a token after the reply (a
 * login after "log out everywhere") gets iat > before. The cut-off's meaning, its value and
 * the `sub` notification are unchanged, so every verifier (the daemon's check_revoked,
 * token.refresh, libtessera's local verifier) keeps comparing iat <= before. */
#include "method.h"

#include "backend.h"
#include "domain.h"
#include "error.h"
#include "log.h"
#include "rpc.h"

#include <stdlib.h>
#include <time.h>

typedef struct user_op {
  ts_req *req;
  int64_t now; /* the cut-off second, once applied */
  char sub[257];
  size_t sub_len;
  unsigned sessions, families; /* results */
  uv_timer_t timer;            /* holds the reply until the cut-off second is over */
} user_op;

static void send_user_reply(user_op *op) {
  ts_log(TS_LOG_INFO, "user revoked everywhere", "{s:s%, s:i, s:i}", "sub", op->sub, op->sub_len,
         "sessions", (int)op->sessions, "families", (int)op->families);
  msgpack_packer *pk = ts_req_result(op->req);
  msgpack_pack_map(pk, 2);
  ts_pack_cstr(pk, "sessions");
  msgpack_pack_uint32(pk, op->sessions);
  ts_pack_cstr(pk, "families");
  msgpack_pack_uint32(pk, op->families);
  ts_req_send(op->req);
}

static void on_user_timer_closed(uv_handle_t *h) { free(h->data); }

/* Milliseconds from now to just past the end of the wall-clock second `second`. */
static uint64_t ms_until_after(int64_t second) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ms = (second + 1 - (int64_t)ts.tv_sec) * 1000 - ts.tv_nsec / 1000000 + 2;
  return ms < 2 ? 2 : ms > 1002 ? 1002 : (uint64_t)ms;
}

/* The reply waits until time() has left the cut-off second (at most a second): tokens carry
 * iat in whole seconds and the cut-off kills iat <= before, so a token issued after the reply
 * (a login right after "log out everywhere") must be issued in a later second. time() is the
 * clock token.issue reads; it may lag CLOCK_REALTIME by a tick, hence the check again. */
static void on_user_timer(uv_timer_t *t) {
  user_op *op = t->data;
  if ((int64_t)time(NULL) == op->now) { /* a clock stepped back is not waited for */
    uv_timer_start(t, on_user_timer, ms_until_after(op->now), 0);
    return;
  }
  send_user_reply(op);
  uv_close((uv_handle_t *)t, on_user_timer_closed);
}

static void on_user_revoked(void *ctx, int status, unsigned sessions, unsigned families,
                            int64_t at) {
  user_op *op = ctx;
  op->sessions = sessions;
  op->families = families;
  op->now = at;
  if (status) {
    ts_req_fail(op->req, status, NULL);
  } else if ((int64_t)time(NULL) == op->now &&
             uv_timer_init(op->req->conn->server->loop, &op->timer) == 0) {
    op->timer.data = op;
    uv_timer_start(&op->timer, on_user_timer, ms_until_after(op->now), 0);
    return; /* the timer's close frees op */
  } else {
    send_user_reply(op);
  }
  free(op);
}

static const ts_param revoke_params[] = {{"sub", TS_P_STR, true, 1, 256}};

static void user_revoke(ts_req *r, const ts_param_value *v) {
  user_op *op = calloc(1, sizeof(*op));
  if (!op) {
    ts_req_fail(r, TS_ENOMEM, NULL);
    return;
  }
  ts_domain *d = r->conn->server->domain;
  op->req = r;
  op->now = (int64_t)time(NULL);
  ts_param_copy(&v[0], op->sub, sizeof(op->sub));
  op->sub_len = v[0].len;
  d->backend->ops->user_revoke(d->backend, op->sub, op->sub_len, op->now,
                               ts_config_longest_ttl(d->cfg), d->cfg->leeway, on_user_revoked, op);
}

const ts_method ts_method_user_revoke = {
    .name = "user.revoke", .handler = user_revoke, TS_PARAMS(revoke_params)};
