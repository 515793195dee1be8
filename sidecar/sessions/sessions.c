/* sidecar/sessions/sessions.c: what the session.* methods do (PROTOCOL.md "sessions"); their
 * rows and param handling are methods/sessions.c, the records session_store.c.
 *
 * Reads (validate, list) run on the loop thread in a read transaction and never wait for the
 * writer. Writes (create, rotate, revoke, revoke_all, touch) are ts_write operations: their
 * apply runs on the writer thread inside the group commit, their reply goes out from done,
 * after the commit returned.
 *
 * Sliding idle expiry without a write per validate: validate queues a touch only when the
 * stored last_seen_at is older than a tenth of idle_ttl (at least a second). Touches are
 * batched by the group commit like any write and are not waited for; a touch lost in a crash
 * leaves the older last_seen_at, which can only make the session expire sooner. */
#include "domain.h"
#include "error.h"
#include "log.h"
#include "params.h"
#include "rpc.h"
#include "session_store.h"
#include "sessions.h"
#include "writer.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum op_kind { OP_CREATE, OP_ROTATE, OP_REVOKE, OP_REVOKE_ALL, OP_TOUCH, OP_DROP };

typedef struct session_op {
  ts_write w; /* first: the writer hands this pointer back */
  enum op_kind kind;
  ts_req *req; /* NULL for touches */
  int64_t now;
  uint8_t hash[TS_HASH_BYTES];
  uint8_t new_hash[TS_HASH_BYTES];
  uint8_t sid[TS_SID_BYTES]; /* the new sid (create, rotate); wiped when done */
  uint8_t handle[TS_HANDLE_BYTES];
  bool by_handle, has_except;
  uint8_t except[TS_HANDLE_BYTES];
  char sub[257];
  size_t sub_len;
  uint8_t *rec; /* create: the encoded record */
  size_t rec_len;
  /* results, written by the writer thread, read after the hand-back */
  int64_t expires_at, idle_expires_at;
  unsigned revoked;
} session_op;

static ts_domain *domain_of(ts_req *r) { return r->conn->server->domain; }

static void op_free(session_op *op) {
  sodium_memzero(op->sid, sizeof(op->sid));
  free(op->rec);
  free(op);
}

static void b64(char *out, size_t cap, const uint8_t *bin, size_t n) {
  sodium_bin2base64(out, cap, bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v, size_t n) {
  ts_pack_cstr(pk, k);
  msgpack_pack_str_with_body(pk, v, n);
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

/* ---- writer-thread halves ------------------------------------------------------------- */

static int apply_create(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  ts_session_rec rec;
  if (!ts_session_decode(op->rec, op->rec_len, &rec)) return TS_EINTERNAL;
  return ts_session_put(t, op->hash, &rec);
}

static int apply_rotate(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  ts_session_rec rec;
  int rc = ts_session_get(t, op->hash, &rec);
  if (rc) return rc;
  if (!ts_session_alive(&rec, op->now)) return TS_ENOTFOUND;
  size_t len;
  uint8_t *copy = ts_session_encode(&rec, &len); /* rec points into pages the delete frees */
  if (!copy) return TS_ENOMEM;
  ts_session_decode(copy, len, &rec);
  rc = ts_session_delete(t, op->hash, &rec);
  if (!rc) {
    rec.last_seen_at = op->now; /* rotation is activity */
    rc = ts_session_put(t, op->new_hash, &rec);
  }
  memcpy(op->handle, rec.handle, TS_HANDLE_BYTES);
  op->expires_at = rec.expires_at;
  op->idle_expires_at = ts_session_idle_expires_at(&rec);
  free(copy);
  return rc;
}

static int apply_revoke(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  if (op->by_handle) {
    int rc = ts_session_by_handle(t, op->handle, op->hash);
    if (rc) return rc == TS_ENOTFOUND ? 0 : rc;
  }
  ts_session_rec rec;
  int rc = ts_session_get(t, op->hash, &rec);
  if (rc) return rc == TS_ENOTFOUND ? 0 : rc;
  op->revoked = ts_session_alive(&rec, op->now) ? 1 : 0;
  memcpy(op->handle, rec.handle, TS_HANDLE_BYTES);
  return ts_session_delete(t, op->hash, &rec);
}

static int apply_revoke_all(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  int n = ts_session_revoke_sub(t, op->sub, op->sub_len, op->has_except ? op->except : NULL,
                                op->now, NULL, NULL);
  if (n < 0) return n;
  op->revoked = (unsigned)n;
  return 0;
}

static int apply_touch(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  int rc = ts_session_touch(t, op->hash, op->now);
  return rc == TS_ENOTFOUND ? 0 : rc;
}

/* ---- loop-thread halves ------------------------------------------------------------- */

static void done_create(ts_write *w, int status) {
  session_op *op = (session_op *)w;
  if (status) ts_req_fail(op->req, status, NULL);
  else ts_session_pack_issued(op->req, op->sid, op->handle, op->expires_at, op->idle_expires_at);
  op_free(op);
}

static void done_revoked_count(ts_write *w, int status) {
  session_op *op = (session_op *)w;
  ts_req_reply_count(op->req, status, "revoked", op->revoked);
  op_free(op);
}

static void done_rotate(ts_write *w, int status) {
  session_op *op = (session_op *)w;
  if (status != TS_ENOTFOUND) {
    done_create(w, status);
    return;
  }
  ts_req_fail(op->req, TS_EUNAUTHENTICATED, NULL); /* unknown, expired or revoked */
  op_free(op);
}

/* Enforced binding: the session was revoked; the answer is unauthenticated either way. */
static void done_drop(ts_write *w, int status) {
  session_op *op = (session_op *)w;
  (void)status; /* revoked or not, the session is not accepted */
  ts_req_fail(op->req, TS_EUNAUTHENTICATED, NULL);
  op_free(op);
}

static void done_touch(ts_write *w, int status) {
  (void)status; /* a lost touch only shortens the session */
  op_free((session_op *)w);
}

static session_op *op_new(ts_req *r, enum op_kind kind) {
  session_op *op = calloc(1, sizeof(*op));
  if (!op) {
    if (r) ts_req_fail(r, TS_ENOMEM, NULL);
    return NULL;
  }
  static const struct {
    int (*apply)(ts_txn *, ts_write *);
    void (*done)(ts_write *, int);
  } ops[] = {
      [OP_CREATE] = {apply_create, done_create},
      [OP_ROTATE] = {apply_rotate, done_rotate},
      [OP_REVOKE] = {apply_revoke, done_revoked_count},
      [OP_REVOKE_ALL] = {apply_revoke_all, done_revoked_count},
      [OP_TOUCH] = {apply_touch, done_touch},
      [OP_DROP] = {apply_revoke, done_drop},
  };
  op->w.apply = ops[kind].apply;
  op->w.done = ops[kind].done;
  op->kind = kind;
  op->req = r;
  op->now = (int64_t)time(NULL);
  return op;
}

static void submit(ts_domain *d, session_op *op) { ts_writer_submit(d->writer, &op->w); }

/* ---- operations (loop thread): each replies to its request ----------------------------- */

int ts_session_prepare(ts_session_new *n, const char *sub, size_t sub_len, int64_t now,
                       int64_t ttl, int64_t idle_ttl, const msgpack_object *data,
                       const ts_param_value *ip, const ts_param_value *ua) {
  memset(n, 0, sizeof(*n));
  msgpack_sbuffer data_buf;
  msgpack_sbuffer_init(&data_buf);
  if (data) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, &data_buf, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *data);
  }
  ts_session_rec rec = {
      .created_at = now, .expires_at = now + ttl, .last_seen_at = now, .idle_ttl = idle_ttl,
      .sub = sub, .sub_len = sub_len,
      .ip = ip && ip->present ? ip->str : "", .ip_len = ip && ip->present ? ip->len : 0,
      .ua = ua && ua->present ? ua->str : "", .ua_len = ua && ua->present ? ua->len : 0,
      .data = (const uint8_t *)data_buf.data, .data_len = data_buf.size};
  randombytes_buf(n->sid, TS_SID_BYTES);
  randombytes_buf(rec.handle, TS_HANDLE_BYTES);
  memcpy(n->handle, rec.handle, TS_HANDLE_BYTES);
  ts_session_hash(n->sid, n->hash);
  n->expires_at = rec.expires_at;
  n->idle_expires_at = ts_session_idle_expires_at(&rec);
  n->rec = ts_session_encode(&rec, &n->rec_len);
  msgpack_sbuffer_destroy(&data_buf);
  return n->rec ? 0 : TS_ENOMEM;
}

void ts_session_new_wipe(ts_session_new *n) {
  sodium_memzero(n->sid, sizeof(n->sid));
  free(n->rec);
  n->rec = NULL;
}

int ts_session_put_new(ts_txn *t, const ts_session_new *n) {
  ts_session_rec rec;
  if (!ts_session_decode(n->rec, n->rec_len, &rec)) return TS_EINTERNAL;
  return ts_session_put(t, n->hash, &rec);
}

void ts_session_start_create(ts_req *r, const char *sub, size_t sub_len, int64_t ttl,
                             int64_t idle_ttl, const msgpack_object *data, const ts_param_value *ip,
                             const ts_param_value *ua) {
  session_op *op = op_new(r, OP_CREATE);
  if (!op) return;
  ts_session_new n;
  if (ts_session_prepare(&n, sub, sub_len, op->now, ttl, idle_ttl, data, ip, ua) != 0) {
    ts_session_new_wipe(&n);
    ts_req_fail(r, TS_ENOMEM, NULL);
    op_free(op);
    return;
  }
  memcpy(op->sid, n.sid, TS_SID_BYTES);
  memcpy(op->hash, n.hash, TS_HASH_BYTES);
  memcpy(op->handle, n.handle, TS_HANDLE_BYTES);
  op->expires_at = n.expires_at;
  op->idle_expires_at = n.idle_expires_at;
  op->rec = n.rec; /* the op frees it */
  op->rec_len = n.rec_len;
  sodium_memzero(n.sid, sizeof(n.sid));
  submit(domain_of(r), op);
}

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

static void pack_validated(ts_req *r, const ts_session_rec *rec, int64_t idle_expires_at,
                           bool ip_changed, bool ua_changed) {
  int64_t now = (int64_t)time(NULL);
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

void ts_session_validate(ts_req *r, const uint8_t hash[TS_HASH_BYTES], const ts_param_value *ip,
                         const ts_param_value *ua) {
  ts_domain *d = domain_of(r);
  int64_t now = (int64_t)time(NULL);
  ts_txn *t;
  int rc = ts_store_read(d->store, &t);
  if (rc) {
    ts_req_fail(r, TS_EUNAVAILABLE, NULL);
    return;
  }
  ts_session_rec rec;
  rc = ts_session_get(t, hash, &rec);
  if (rc || !ts_session_alive(&rec, now)) {
    ts_store_abort(t);
    ts_req_fail(r, rc && rc != TS_ENOTFOUND ? TS_EUNAVAILABLE : TS_EUNAUTHENTICATED, NULL);
    return;
  }
  bool ip_changed = ip_differs(rec.ip, rec.ip_len, ip);
  bool ua_changed = ua_differs(rec.ua, rec.ua_len, ua);
  int64_t idle_expires_at = ts_session_idle_expires_at(&rec);
  int64_t touch_every = rec.idle_ttl / 10 > 1 ? rec.idle_ttl / 10 : 1;
  enum op_kind follow = OP_TOUCH;
  bool write = now - rec.last_seen_at >= touch_every;
  if (ua_changed && d->cfg->bind_policy == TS_BIND_ENFORCE) follow = OP_DROP, write = true;
  if (follow == OP_TOUCH) {
    if (write) {
      ts_session_rec slid = rec;
      slid.last_seen_at = now;
      idle_expires_at = ts_session_idle_expires_at(&slid);
    }
    pack_validated(r, &rec, idle_expires_at, ip_changed, ua_changed);
  }
  ts_store_abort(t);
  if (!write) return;
  session_op *op = op_new(follow == OP_DROP ? r : NULL, follow);
  if (!op) return;
  memcpy(op->hash, hash, TS_HASH_BYTES);
  if (follow == OP_DROP)
    ts_log(TS_LOG_INFO, "session revoked: user agent changed (bind-policy enforce)", NULL);
  submit(d, op);
}

void ts_session_rotate(ts_req *r, const uint8_t hash[TS_HASH_BYTES]) {
  session_op *op = op_new(r, OP_ROTATE);
  if (!op) return;
  memcpy(op->hash, hash, TS_HASH_BYTES);
  randombytes_buf(op->sid, TS_SID_BYTES);
  ts_session_hash(op->sid, op->new_hash);
  submit(domain_of(r), op);
}

void ts_session_revoke(ts_req *r, const uint8_t *hash, const uint8_t *handle) {
  session_op *op = op_new(r, OP_REVOKE);
  if (!op) return;
  if (hash) {
    memcpy(op->hash, hash, TS_HASH_BYTES);
  } else {
    memcpy(op->handle, handle, TS_HANDLE_BYTES);
    op->by_handle = true;
  }
  submit(domain_of(r), op);
}

void ts_session_revoke_all(ts_req *r, const char *sub, size_t sub_len, const uint8_t *except) {
  session_op *op = op_new(r, OP_REVOKE_ALL);
  if (!op) return;
  memcpy(op->sub, sub, sub_len);
  op->sub[sub_len] = 0;
  op->sub_len = sub_len;
  if (except) {
    memcpy(op->except, except, TS_HANDLE_BYTES);
    op->has_except = true;
  }
  submit(domain_of(r), op);
}

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

#define LIST_SCAN_EXTRA 1000 /* dead entries (not swept yet) one call may step over */

/* Where a page starts: the first handle of sub after `after` (or the first one). */
static int list_start(ts_cursor *c, const char *sub, size_t sub_len, const uint8_t *after,
                      const void **hv, size_t *hl) {
  if (!after) return ts_cursor_dup_first(c, sub, sub_len, hv, hl);
  int rc = ts_cursor_dup_seek(c, sub, sub_len, after, TS_HANDLE_BYTES, hv, hl);
  if (rc == 0 && *hl == TS_HANDLE_BYTES && memcmp(*hv, after, TS_HANDLE_BYTES) == 0)
    rc = ts_cursor_dup_next(c, hv, hl);
  return rc;
}

/* session.list: one page of sub's live sessions, in handle order (the by_sub duplicates are
 * sorted by handle, so a page resumes exactly after the last handle of the previous one).
 * `next` is that last handle, base64url: opaque to clients. The work of one call is bounded:
 * at most limit + LIST_SCAN_EXTRA entries are read; a page cut short by dead entries still
 * carries `next`. */
void ts_session_list(ts_req *r, const char *sub, size_t sub_len, size_t limit,
                     const uint8_t *after) {
  ts_domain *d = domain_of(r);
  int64_t now = (int64_t)time(NULL);
  ts_txn *t = NULL;
  ts_cursor *c = NULL;
  if (ts_store_read(d->store, &t) != 0 || ts_cursor_open(t, TS_T_BY_SUB, &c) != 0) {
    ts_store_abort(t); /* NULL when the read itself failed (e.g. every reader slot taken) */
    ts_req_fail(r, TS_EUNAVAILABLE, NULL);
    return;
  }
  /* Pack the sessions into a side buffer first: the count leads the array. */
  msgpack_sbuffer items;
  msgpack_sbuffer_init(&items);
  msgpack_packer ipk;
  msgpack_packer_init(&ipk, &items, msgpack_sbuffer_write);
  size_t count = 0, scanned = 0;
  bool more = false;
  uint8_t last[TS_HANDLE_BYTES] = {0};
  if (after) memcpy(last, after, TS_HANDLE_BYTES);
  const void *hv;
  size_t hl;
  for (int rc = list_start(c, sub, sub_len, after, &hv, &hl); rc == 0;
       rc = ts_cursor_dup_next(c, &hv, &hl)) {
    if (count == limit || scanned == limit + LIST_SCAN_EXTRA) {
      more = true; /* something follows: the next page starts after `last` */
      break;
    }
    scanned++;
    if (hl != TS_HANDLE_BYTES) continue;
    memcpy(last, hv, TS_HANDLE_BYTES);
    uint8_t hash[TS_HASH_BYTES];
    ts_session_rec rec;
    if (ts_session_by_handle(t, hv, hash) != 0 || ts_session_get(t, hash, &rec) != 0 ||
        !ts_session_alive(&rec, now))
      continue;
    pack_listed(&ipk, &items, &rec);
    count++;
  }
  ts_cursor_close(c);
  ts_store_abort(t);
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, more ? 2 : 1);
  ts_pack_cstr(pk, "sessions");
  msgpack_pack_array(pk, count);
  msgpack_sbuffer_write(&r->out, items.data, items.size);
  msgpack_sbuffer_destroy(&items);
  if (more) {
    char next[TS_HANDLE_CHARS + 1];
    b64(next, sizeof(next), last, TS_HANDLE_BYTES);
    pack_kv_str(pk, "next", next, TS_HANDLE_CHARS);
  }
  ts_req_send(r);
}
