/* sidecar/sessions/sessions.c: what the session.* methods do (PROTOCOL.md "sessions"); their
 * rows and param handling are methods/sessions.c, the record sessions/session.h.
 *
 * Each operation calls the backend (store/backend.h) and replies from its completion: reads at
 * once or after a round trip, writes once durable. What a completion needs of the request
 * (the new sid, the client's ip and ua) is copied into a context first: the request's params
 * are only valid during the handler.
 *
 * Sliding idle expiry without a write per validate: validate queues a touch only when the
 * stored last_seen_at is older than a tenth of idle_ttl (at least a second). Touches are
 * batched by the group commit like any write and are not waited for; a touch lost in a crash
 * leaves the older last_seen_at, which can only make the session expire sooner. */
#include "sessions.h"

#include "audit.h"
#include "backend.h"
#include "domain.h"
#include "error.h"
#include "freelist.h"
#include "log.h"
#include "params.h"
#include "rpc.h"
#include "session.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static ts_domain *domain_of(ts_req *r) { return r->conn->server->domain; }
static ts_backend *backend_of(ts_req *r) { return domain_of(r)->backend; }

static void b64(char *out, size_t cap, const uint8_t *bin, size_t n) {
  sodium_bin2base64(out, cap, bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v, size_t n) {
  ts_pack_cstr(pk, k);
  ts_pack_str(pk, v, n);
}

static void pack_kv_int(msgpack_packer *pk, const char *k, int64_t v) {
  ts_pack_cstr(pk, k);
  msgpack_pack_int64(pk, v);
}

/* The reply of create, rotate and exchange. */
void ts_session_pack_issued(ts_req *r, const uint8_t sid[TS_SID_BYTES],
                            const uint8_t handle[TS_HANDLE_BYTES], int64_t expires_at,
                            int64_t idle_expires_at) {
  const ts_config *cfg = domain_of(r)->cfg;
  int64_t now = (int64_t)time(NULL);
  int64_t expires_in = expires_at > now ? expires_at - now : 0;
  char sid_s[TS_SID_CHARS + 1], handle_s[TS_HANDLE_CHARS + 1], cookie[512];
  b64(sid_s, sizeof(sid_s), sid, TS_SID_BYTES);
  b64(handle_s, sizeof(handle_s), handle, TS_HANDLE_BYTES);
  int n = snprintf(cookie, sizeof(cookie),
                   "%s=%s; Path=/; Max-Age=%lld; Secure; HttpOnly; SameSite=%s",
                   cfg->cookie_name, sid_s, (long long)expires_in, cfg->cookie_samesite);
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 6);
  pack_kv_str(pk, "sid", sid_s, TS_SID_CHARS);
  pack_kv_str(pk, "handle", handle_s, TS_HANDLE_CHARS);
  pack_kv_int(pk, "expires_at", expires_at);
  pack_kv_int(pk, "expires_in", expires_in);
  pack_kv_int(pk, "idle_expires_at", idle_expires_at);
  pack_kv_str(pk, "cookie", cookie, n > 0 && (size_t)n < sizeof(cookie) ? (size_t)n : 0);
  ts_req_send(r);
  sodium_memzero(sid_s, sizeof(sid_s));
  sodium_memzero(cookie, sizeof(cookie));
}

/* ---- create and rotate: a new sid, replied once durable -------------------------------- */

typedef struct issue_ctx {
  ts_req *req;
  uint8_t sid[TS_SID_BYTES]; /* secret: wiped when done */
  uint8_t handle[TS_HANDLE_BYTES];
  int64_t expires_at, idle_expires_at;
} issue_ctx;

static void issue_free(issue_ctx *ic) {
  sodium_memzero(ic->sid, sizeof(ic->sid));
  free(ic);
}

static void on_created(void *ctx, int status) {
  issue_ctx *ic = ctx;
  if (status) ts_req_fail(ic->req, status, NULL);
  else ts_session_pack_issued(ic->req, ic->sid, ic->handle, ic->expires_at, ic->idle_expires_at);
  issue_free(ic);
}

void ts_session_start_create(ts_req *r, const char *sub, size_t sub_len, int64_t ttl,
                             int64_t idle_ttl, const msgpack_object *data, const ts_param_value *ip,
                             const ts_param_value *ua) {
  issue_ctx *ic = calloc(1, sizeof(*ic));
  ts_session_new n;
  if (!ic || ts_session_prepare(&n, sub, sub_len, (int64_t)time(NULL), ttl, idle_ttl, data, ip,
                                ua) != 0) {
    if (ic) ts_session_new_wipe(&n);
    free(ic);
    ts_req_fail(r, TS_ENOMEM, NULL);
    return;
  }
  ic->req = r;
  memcpy(ic->sid, n.sid, TS_SID_BYTES);
  memcpy(ic->handle, n.handle, TS_HANDLE_BYTES);
  ic->expires_at = n.expires_at;
  ic->idle_expires_at = n.idle_expires_at;
  backend_of(r)->ops->session_create(backend_of(r), &n, on_created, ic);
  ts_session_new_wipe(&n); /* the backend copied what it keeps */
}

static void on_rotated(void *ctx, int status, const ts_session_rec *rec) {
  issue_ctx *ic = ctx;
  if (status == TS_ENOTFOUND) {
    ts_req_fail(ic->req, TS_EUNAUTHENTICATED, NULL); /* unknown, expired or revoked */
  } else if (status) {
    ts_req_fail(ic->req, status, NULL);
  } else {
    ts_session_pack_issued(ic->req, ic->sid, rec->handle, rec->expires_at,
                           ts_session_idle_expires_at(rec));
  }
  issue_free(ic);
}

void ts_session_rotate(ts_req *r, const uint8_t hash[TS_HASH_BYTES]) {
  issue_ctx *ic = calloc(1, sizeof(*ic));
  if (!ic) {
    ts_req_fail(r, TS_ENOMEM, NULL);
    return;
  }
  ic->req = r;
  uint8_t new_hash[TS_HASH_BYTES];
  randombytes_buf(ic->sid, TS_SID_BYTES);
  ts_session_hash(ic->sid, new_hash);
  backend_of(r)->ops->session_rotate(backend_of(r), hash, new_hash, (int64_t)time(NULL),
                                     on_rotated, ic);
}

/* ---- validate -------------------------------------------------------------------------- */

/* The ip presented differs from the one bound at create: only when both are known. */
static bool ip_differs(const char *a, size_t al, const ts_param_value *b) {
  return b->present && al > 0 && (al != b->len || memcmp(a, b->str, al) != 0);
}

/* The user agent presented is not the one bound at create. A missing or empty one counts as
 * changed: otherwise --bind-policy enforce is bypassed by leaving client.ua out. The same rule
 * under report, so that report shows exactly what enforce would do. */
static bool ua_differs(const char *a, size_t al, const ts_param_value *b) {
  return al > 0 && (!b->present || al != b->len || memcmp(a, b->str, al) != 0);
}

static void pack_validated(ts_req *r, const ts_session_rec *rec, int64_t now,
                           int64_t idle_expires_at, bool ip_changed, bool ua_changed) {
  char handle_s[TS_HANDLE_CHARS + 1];
  b64(handle_s, sizeof(handle_s), rec->handle, TS_HANDLE_BYTES);
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 8);
  pack_kv_str(pk, "sub", rec->sub, rec->sub_len);
  pack_kv_str(pk, "handle", handle_s, TS_HANDLE_CHARS);
  ts_pack_cstr(pk, "data");
  if (rec->data_len) msgpack_sbuffer_write(&r->out, (const char *)rec->data, rec->data_len);
  else msgpack_pack_map(pk, 0);
  pack_kv_int(pk, "created_at", rec->created_at);
  pack_kv_int(pk, "expires_at", rec->expires_at);
  pack_kv_int(pk, "expires_in", rec->expires_at - now);
  pack_kv_int(pk, "idle_expires_at", idle_expires_at);
  ts_pack_cstr(pk, "anomalies");
  msgpack_pack_array(pk, (size_t)ip_changed + ua_changed);
  if (ip_changed) ts_pack_cstr(pk, "ip_changed");
  if (ua_changed) ts_pack_cstr(pk, "ua_changed");
  ts_req_send(r);
}

/* What validate's completion needs: the hash, the time, and copies of the client's ip/ua.
 * Taken from a free list: no heap call per validate. */
typedef struct validate_ctx {
  ts_req *req;
  uint8_t hash[TS_HASH_BYTES];
  int64_t now;
  ts_param_value ip, ua; /* str points into buf */
  char buf[64 + 1024];
} validate_ctx;

static ts_freelist validate_pool = TS_FREELIST(validate_ctx, 1024);

static validate_ctx *validate_ctx_get(void) { return ts_freelist_get(&validate_pool); }

static void validate_ctx_put(validate_ctx *vc) {
  if (vc->ip.present) sodium_memzero(vc->buf, vc->ip.len);
  if (vc->ua.present) sodium_memzero(vc->buf + 64, vc->ua.len);
  ts_freelist_put(&validate_pool, vc);
}

/* A session revoked by --bind-policy enforce inside validate: no revoke method replies for
 * it, so it is counted and audited here (public ids only). */
typedef struct drop_ctx {
  ts_req *req;
  char handle[TS_HANDLE_CHARS + 1];
  char sub[TS_SUB_MAX + 1];
} drop_ctx;

static void on_dropped(void *ctx, int status, unsigned n) {
  drop_ctx *dc = ctx;
  if (status == 0 && n > 0) {
    dc->req->conn->server->stats.revocations[TS_REVOKE_SESSION]++;
    if (ts_audit_enabled())
      ts_audit_emit("session.revoked",
                    json_pack("{s:s, s:s, s:s, s:s, s:s}", "method", "session.validate",
                              "reason", "bind_policy", "result", "ok", "handle", dc->handle,
                              "sub", dc->sub));
  }
  ts_req_fail(dc->req, TS_EUNAUTHENTICATED, NULL); /* revoked or not, it is not accepted */
  free(dc);
}

static void on_validated(void *ctx, int status, const ts_session_rec *rec) {
  validate_ctx *vc = ctx;
  ts_req *r = vc->req;
  ts_backend *b = backend_of(r);
  if (status) {
    ts_req_fail(r, status == TS_ENOTFOUND ? TS_EUNAUTHENTICATED : TS_EUNAVAILABLE, NULL);
    validate_ctx_put(vc);
    return;
  }
  bool ip_changed = ip_differs(rec->ip, rec->ip_len, &vc->ip);
  bool ua_changed = ua_differs(rec->ua, rec->ua_len, &vc->ua);
  if (ua_changed && domain_of(r)->cfg->bind_policy == TS_BIND_ENFORCE) {
    ts_log(TS_LOG_INFO, "session revoked: user agent changed (bind-policy enforce)", NULL);
    drop_ctx *dc = calloc(1, sizeof(*dc));
    if (!dc) {
      ts_req_fail(r, TS_ENOMEM, NULL);
    } else {
      dc->req = r;
      b64(dc->handle, sizeof(dc->handle), rec->handle, TS_HANDLE_BYTES);
      snprintf(dc->sub, sizeof(dc->sub), "%.*s", (int)rec->sub_len, rec->sub);
      b->ops->session_revoke(b, vc->hash, NULL, vc->now, on_dropped, dc);
    }
    validate_ctx_put(vc);
    return;
  }
  int64_t idle_expires_at = ts_session_idle_expires_at(rec);
  int64_t touch_every = rec->idle_ttl / 10 > 1 ? rec->idle_ttl / 10 : 1;
  bool touch = vc->now - rec->last_seen_at >= touch_every;
  if (touch) {
    ts_session_rec slid = *rec;
    slid.last_seen_at = vc->now;
    idle_expires_at = ts_session_idle_expires_at(&slid);
  }
  pack_validated(r, rec, vc->now, idle_expires_at, ip_changed, ua_changed);
  if (touch) b->ops->session_touch(b, vc->hash, vc->now);
  validate_ctx_put(vc);
}

static void copy_param(ts_param_value *dst, const ts_param_value *src, char *buf) {
  *dst = (ts_param_value){0};
  if (!src || !src->present) return;
  memcpy(buf, src->str, src->len);
  dst->present = true;
  dst->str = buf;
  dst->len = src->len;
}

void ts_session_validate(ts_req *r, const uint8_t hash[TS_HASH_BYTES], const ts_param_value *ip,
                         const ts_param_value *ua) {
  if ((ip && ip->present && ip->len > 64) || (ua && ua->present && ua->len > 1024)) {
    ts_req_fail(r, TS_EBAD_REQUEST, NULL); /* the param specs already cap both */
    return;
  }
  validate_ctx *vc = validate_ctx_get();
  if (!vc) {
    ts_req_fail(r, TS_ENOMEM, NULL);
    return;
  }
  vc->req = r;
  memcpy(vc->hash, hash, TS_HASH_BYTES);
  vc->now = (int64_t)time(NULL);
  copy_param(&vc->ip, ip, vc->buf);
  copy_param(&vc->ua, ua, vc->buf + 64);
  backend_of(r)->ops->session_get(backend_of(r), hash, vc->now, on_validated, vc);
}

/* ---- revoke, revoke_all ---------------------------------------------------------------- */

static void on_revoked(void *ctx, int status, unsigned n) {
  ts_req_reply_count(ctx, status, "revoked", n);
}

void ts_session_revoke(ts_req *r, const uint8_t *hash, const uint8_t *handle) {
  backend_of(r)->ops->session_revoke(backend_of(r), hash, hash ? NULL : handle,
                                     (int64_t)time(NULL), on_revoked, r);
}

void ts_session_revoke_all(ts_req *r, const char *sub, size_t sub_len, const uint8_t *except) {
  backend_of(r)->ops->session_revoke_all(backend_of(r), sub, sub_len, except, (int64_t)time(NULL),
                                         on_revoked, r);
}

/* ---- list ------------------------------------------------------------------------------- */

static void pack_listed(msgpack_packer *pk, msgpack_sbuffer *out, const ts_session_rec *rec) {
  char handle_s[TS_HANDLE_CHARS + 1];
  b64(handle_s, sizeof(handle_s), rec->handle, TS_HANDLE_BYTES);
  msgpack_pack_map(pk, 7);
  pack_kv_str(pk, "handle", handle_s, TS_HANDLE_CHARS);
  pack_kv_int(pk, "created_at", rec->created_at);
  pack_kv_int(pk, "last_seen_at", rec->last_seen_at);
  pack_kv_int(pk, "expires_at", rec->expires_at);
  pack_kv_int(pk, "idle_expires_at", ts_session_idle_expires_at(rec));
  ts_pack_cstr(pk, "data");
  if (rec->data_len) msgpack_sbuffer_write(out, (const char *)rec->data, rec->data_len);
  else msgpack_pack_map(pk, 0);
  ts_pack_cstr(pk, "client");
  msgpack_pack_map(pk, (size_t)(rec->ip_len > 0) + (rec->ua_len > 0));
  if (rec->ip_len) pack_kv_str(pk, "ip", rec->ip, rec->ip_len);
  if (rec->ua_len) pack_kv_str(pk, "ua", rec->ua, rec->ua_len);
}

/* session.list's reply: one page in handle order; `next` is the last handle the backend
 * looked at, base64url: opaque to clients. */
static void on_listed(void *ctx, int status, const ts_session_rec *recs, size_t n, bool more,
                      const uint8_t last[TS_HANDLE_BYTES]) {
  ts_req *r = ctx;
  if (status) {
    ts_req_fail(r, TS_EUNAVAILABLE, NULL);
    return;
  }
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, more ? 2 : 1);
  ts_pack_cstr(pk, "sessions");
  msgpack_pack_array(pk, n);
  for (size_t i = 0; i < n; i++) pack_listed(pk, &r->out, &recs[i]);
  if (more) {
    char next[TS_HANDLE_CHARS + 1];
    b64(next, sizeof(next), last, TS_HANDLE_BYTES);
    pack_kv_str(pk, "next", next, TS_HANDLE_CHARS);
  }
  ts_req_send(r);
}

void ts_session_list(ts_req *r, const char *sub, size_t sub_len, size_t limit,
                     const uint8_t *after) {
  backend_of(r)->ops->session_list(backend_of(r), sub, sub_len, after, limit, (int64_t)time(NULL),
                                   on_listed, r);
}
