/* sidecar/methods/users.c: user.revoke, "log out everywhere".
 *
 * One writer transaction deletes every session of the sub, revokes every refresh family of
 * it (in rounds: each revoked family leaves fam_by_sub) and sets the sub's cut-off `before`
 * (the second the write applies in), which kills every token of the sub with iat <= before;
 * the families and the cut-off go to the revocation feed, published once durable.
 *
 * Tokens carry iat in whole seconds, so a token issued later in that same second would be
 * dead on arrival: the reply is held until the wall clock has left that second (at most a
 * second, on a libuv timer; the loop never waits). Whoever issues a token after the reply (a
 * login after "log out everywhere") gets iat > before. The cut-off's meaning, its value and
 * the `sub` notification are unchanged, so every verifier (the daemon's check_revoked,
 * token.refresh, libtessera's local verifier) keeps comparing iat <= before. */
#include "method.h"

#include "domain.h"
#include "error.h"
#include "events.h"
#include "families.h"
#include "feed.h"
#include "log.h"
#include "revocations.h"
#include "rpc.h"
#include "session_store.h"
#include "writer.h"

#include <stdlib.h>
#include <time.h>

#define MAX_FAMILIES_AT_ONCE 4096

typedef struct user_op {
  ts_write w; /* first: the writer hands this pointer back */
  ts_req *req;
  ts_domain *d;
  int64_t now; /* the cut-off second, once applied */
  char sub[257];
  size_t sub_len;
  /* results */
  unsigned revoked, sessions, families;
  uint64_t feed_last; /* the last feed seq it wrote: published once durable */
  uv_timer_t timer;   /* holds the reply until the cut-off second is over */
} user_op;

static int apply_user(ts_txn *t, ts_write *w) {
  user_op *op = (user_op *)w;
  const ts_config *cfg = op->d->cfg;
  /* The cut-off is the second this write applies in: every token issued before it is dead. */
  int64_t at = (int64_t)time(NULL);
  if (at > op->now) op->now = at;
  int n = ts_session_revoke_sub(t, op->sub, op->sub_len, NULL, op->now, NULL, NULL);
  if (n < 0) return n;
  op->sessions = (unsigned)n;
  char(*ids)[TS_FAMILY_ID_CHARS + 1] = malloc(MAX_FAMILIES_AT_ONCE * sizeof(*ids));
  if (!ids) return TS_ENOMEM;
  /* In rounds: each revoked family leaves fam_by_sub, so the next round lists the rest. */
  unsigned before = op->revoked;
  int nf, rc = 0;
  unsigned round_start;
  do {
    round_start = op->revoked;
    nf = ts_family_list_sub(t, op->sub, op->sub_len, ids, MAX_FAMILIES_AT_ONCE);
    if (nf < 0) rc = nf;
    for (int i = 0; i < nf && rc == 0; i++)
      rc = ts_family_revoke_announced(t, ids[i], op->now, cfg->leeway, &op->feed_last,
                                      &op->revoked);
  } while (rc == 0 && nf == MAX_FAMILIES_AT_ONCE && op->revoked > round_start);
  free(ids);
  if (rc) return rc;
  op->families = op->revoked - before;
  /* A sub that held sessions or families provably exists: its cut-off may use the whole
   * reserve; any other sub's only half of it (anyone can name any sub). */
  if (op->sessions + op->families > 0) ts_store_reserve_all(t);
  /* The cut-off outlives every token that could have been issued before it. */
  int64_t until = op->now + ts_config_longest_ttl(cfg) + cfg->leeway;
  rc = ts_cutoff_put(t, op->sub, op->sub_len, op->now, until);
  if (rc == 0) rc = ts_feed_append(t, &op->feed_last, 's', op->sub, op->sub_len, until, op->now);
  return rc;
}

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

static void done_user(ts_write *w, int status) {
  user_op *op = (user_op *)w;
  if (status == 0) ts_events_published(op->req->conn->server, op->feed_last); /* durable */
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
  op->w.apply = apply_user;
  op->w.done = done_user;
  op->req = r;
  op->d = r->conn->server->domain;
  op->now = (int64_t)time(NULL);
  ts_param_copy(&v[0], op->sub, sizeof(op->sub));
  op->sub_len = v[0].len;
  ts_writer_submit(op->d->writer, &op->w);
}

const ts_method ts_method_user_revoke = {
    .name = "user.revoke", .handler = user_revoke, TS_PARAMS(revoke_params)};
