/* sidecar/store/redis/ops_sessions.c: the session operations of backend.h on Redis.
 *
 * session_get is served from the local cache when it holds the record (cache.c), else one
 * plain GET of the record key (which may fill the cache), decoded here, liveness decided with
 * the caller's now: a single small read, pipelined with everything else on the commands
 * connection. Finished operation contexts are pooled. session_touch is a fire-and-forget FCALL (the domain sends it at most
 * once per tenth of idle_ttl). Every other operation is one FCALL of tessera.lua; a missing or
 * failed reply is TS_EUNAVAILABLE, never a guess. */
#include "redis.h"

#include "error.h"
#include "freelist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIST_SCAN_EXTRA 1000 /* dead entries one session.list page may step over */

typedef struct sop {
  rb *b;
  union {
    ts_done_fn done;
    ts_session_fn session;
    ts_count_fn count;
    ts_list_fn list;
  } fn;
  void *ctx;
  int64_t now;
  size_t limit;
  uint8_t after[TS_HANDLE_BYTES];
  uint8_t hash[TS_HASH_BYTES]; /* get, rotate, revoke by sid: the session it is about */
  bool has_hash;
  uint32_t ticket;             /* get: its cache fill (0: none) */
} sop;

/* Finished operations are kept for reuse: no heap call per validate. */
static ts_freelist sop_pool = TS_FREELIST(sop, 1024);

static sop *sop_new(rb *b, void *ctx) {
  sop *o = ts_freelist_get(&sop_pool);
  if (o) memset(o, 0, sizeof(*o)), o->b = b, o->ctx = ctx;
  return o;
}

static void sop_free(sop *o) { ts_freelist_put(&sop_pool, o); }

int rb_fcall_status(const redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
      r->element[0]->type != REDIS_REPLY_INTEGER)
    return TS_EUNAVAILABLE;
  switch (r->element[0]->integer) {
  case 0: return 0;
  case 1: return TS_ENOTFOUND;
  case 2: return TS_EREVOKED;
  case 3: return TS_EEXPIRED;
  case 4: return TS_EREUSED;
  default: return TS_EUNAVAILABLE;
  }
}

/* ---- create -------------------------------------------------------------------------------- */

static void on_done(void *ctx, redisReply *r) {
  sop *o = ctx;
  o->fn.done(o->ctx, rb_fcall_status(r));
  sop_free(o);
}

/* Adds the four keys storing session n takes (s, h, sl, sx); fills hashhex and *packed (the
 * record's Redis form, caller frees) for the ARGV. */
int rb_session_args(rb_args *a, const ts_session_new *n, char hashhex[2 * TS_HASH_BYTES + 1],
                    uint8_t **packed, size_t *packed_len) {
  ts_session_rec rec;
  if (!ts_session_decode(n->rec, n->rec_len, &rec)) return TS_EINTERNAL;
  char k[RB_KEY_MAX];
  rb_arg_copy(a, k, rb_key_session(k, n->hash));
  rb_arg_copy(a, k, rb_key_handle(k, n->handle));
  rb_arg_copy(a, k, rb_key_user(k, rec.sub, rec.sub_len, "sl"));
  rb_arg_copy(a, k, rb_key_user(k, rec.sub, rec.sub_len, "sx"));
  rb_hex(hashhex, n->hash, TS_HASH_BYTES);
  *packed = rb_session_pack(&rec, packed_len);
  return *packed ? 0 : TS_ENOMEM;
}

static void session_create(ts_backend *base, const ts_session_new *n, ts_done_fn done, void *ctx) {
  rb *b = (rb *)base;
  sop *o = sop_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM);
    return;
  }
  o->fn.done = done;
  rb_args a;
  rb_args_init(&a);
  rb_arg_str(&a, "FCALL");
  rb_arg_str(&a, "ts_session_create");
  rb_arg_str(&a, "4");
  char hashhex[2 * TS_HASH_BYTES + 1];
  uint8_t *packed;
  size_t plen;
  int rc = rb_session_args(&a, n, hashhex, &packed, &plen);
  if (rc) {
    sop_free(o);
    done(ctx, rc);
    return;
  }
  rb_arg(&a, hashhex, strlen(hashhex));
  rb_arg(&a, packed, plen);
  ts_session_rec rec; /* now: the record's created_at (decoded fine by rb_session_args) */
  ts_session_decode(n->rec, n->rec_len, &rec);
  rb_arg_int(&a, rec.created_at);
  rb_send(b, &a, on_done, o);
  free(packed);
}

/* ---- get and touch -------------------------------------------------------------------------- */

static void got(sop *o, const char *buf, size_t len) {
  ts_session_rec rec;
  if (!buf || !rb_session_unpack(buf, len, &rec) || !ts_session_alive(&rec, o->now))
    o->fn.session(o->ctx, TS_ENOTFOUND, NULL);
  else o->fn.session(o->ctx, 0, &rec);
}

static void on_get(void *ctx, redisReply *r) {
  sop *o = ctx;
  if (!r) o->fn.session(o->ctx, TS_EUNAVAILABLE, NULL);
  else if (r->type != REDIS_REPLY_STRING) got(o, NULL, 0);
  else {
    rb_cache_fill(o->b, o->hash, o->ticket, r->str, r->len);
    got(o, r->str, r->len);
  }
  sop_free(o);
}

static void session_get(ts_backend *base, const uint8_t hash[TS_HASH_BYTES], int64_t now,
                        ts_session_fn done, void *ctx) {
  rb *b = (rb *)base;
  const char *cached;
  size_t cached_len;
  if (rb_cache_get(b, hash, &cached, &cached_len)) {
    sop o = {.b = b, .ctx = ctx, .now = now};
    o.fn.session = done;
    got(&o, cached, cached_len);
    return;
  }
  sop *o = sop_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM, NULL);
    return;
  }
  o->fn.session = done;
  o->now = now;
  memcpy(o->hash, hash, TS_HASH_BYTES);
  o->ticket = rb_cache_filling(b, hash);
  char k[RB_KEY_MAX];
  size_t kl = rb_key_session(k, hash);
  rb_command(&b->cmd, on_get, o, 2, (const char *[]){"GET", k}, (size_t[]){3, kl}, 0);
}

static void on_ignored(void *ctx, redisReply *r) { (void)ctx, (void)r; }

static void session_touch(ts_backend *base, const uint8_t hash[TS_HASH_BYTES], int64_t at) {
  rb *b = (rb *)base;
  rb_cache_forget(b, hash); /* its last_seen_at changes */
  rb_args a;
  rb_args_init(&a);
  rb_arg_str(&a, "FCALL");
  rb_arg_str(&a, "ts_session_touch");
  rb_arg_str(&a, "1");
  char k[RB_KEY_MAX];
  rb_arg_copy(&a, k, rb_key_session(k, hash));
  rb_arg_int(&a, at);
  char hex[2 * TS_HASH_BYTES + 1];
  rb_hex(hex, hash, TS_HASH_BYTES);
  rb_arg_copy(&a, hex, strlen(hex));
  rb_send(b, &a, on_ignored, NULL);
}

/* ---- rotate --------------------------------------------------------------------------------- */

static void on_rotate(void *ctx, redisReply *r) {
  sop *o = ctx;
  int rc = rb_fcall_status(r);
  ts_session_rec rec;
  if (rc == 0 && (r->elements < 2 || r->element[1]->type != REDIS_REPLY_STRING ||
                  !rb_session_unpack(r->element[1]->str, r->element[1]->len, &rec)))
    rc = TS_EUNAVAILABLE;
  rb_cache_forget(o->b, o->hash);
  o->fn.session(o->ctx, rc, rc ? NULL : &rec);
  sop_free(o);
}

static void session_rotate(ts_backend *base, const uint8_t hash[TS_HASH_BYTES],
                           const uint8_t new_hash[TS_HASH_BYTES], int64_t now, ts_session_fn done,
                           void *ctx) {
  rb *b = (rb *)base;
  sop *o = sop_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM, NULL);
    return;
  }
  o->fn.session = done;
  memcpy(o->hash, hash, TS_HASH_BYTES);
  rb_cache_forget(b, hash);
  rb_args a;
  rb_args_init(&a);
  rb_arg_str(&a, "FCALL");
  rb_arg_str(&a, "ts_session_rotate");
  rb_arg_str(&a, "2");
  char k[RB_KEY_MAX], hex[2 * TS_HASH_BYTES + 1];
  rb_arg_copy(&a, k, rb_key_session(k, hash));
  rb_arg_copy(&a, k, rb_key_session(k, new_hash));
  rb_hex(hex, new_hash, TS_HASH_BYTES);
  rb_arg_copy(&a, hex, strlen(hex));
  rb_arg_int(&a, now);
  rb_hex(hex, hash, TS_HASH_BYTES);
  rb_arg_copy(&a, hex, strlen(hex));
  rb_send(b, &a, on_rotate, o);
}

/* ---- revoke --------------------------------------------------------------------------------- */

static void on_count(void *ctx, redisReply *r) {
  sop *o = ctx;
  int rc = rb_fcall_status(r);
  unsigned n = 0;
  if (rc == 0 && r->elements >= 2 && r->element[1]->type == REDIS_REPLY_INTEGER)
    n = (unsigned)r->element[1]->integer;
  /* By sid: forget it. By handle, or revoke_all: the hashes are Redis's; flush rather than
   * wait for the invalidation messages (a large one may still be on its way). */
  if (o->has_hash) rb_cache_forget(o->b, o->hash);
  else rb_cache_flush(o->b);
  o->fn.count(o->ctx, rc, n);
  sop_free(o);
}

static void session_revoke(ts_backend *base, const uint8_t *hash, const uint8_t *handle,
                           int64_t now, ts_count_fn done, void *ctx) {
  rb *b = (rb *)base;
  sop *o = sop_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM, 0);
    return;
  }
  o->fn.count = done;
  rb_args a;
  rb_args_init(&a);
  rb_arg_str(&a, "FCALL");
  rb_arg_str(&a, "ts_session_revoke");
  rb_arg_str(&a, "1");
  char k[RB_KEY_MAX], hex[2 * TS_HASH_BYTES + 1] = "";
  if (hash) {
    memcpy(o->hash, hash, TS_HASH_BYTES);
    o->has_hash = true;
    rb_cache_forget(b, hash);
    rb_arg_copy(&a, k, rb_key_session(k, hash));
    rb_arg_str(&a, "hash");
    rb_hex(hex, hash, TS_HASH_BYTES);
  } else {
    rb_arg_copy(&a, k, rb_key_handle(k, handle));
    rb_arg_str(&a, "handle");
  }
  rb_arg_copy(&a, hex, strlen(hex));
  rb_arg_int(&a, now);
  rb_send(b, &a, on_count, o);
}

static void session_revoke_all(ts_backend *base, const char *sub, size_t sub_len,
                               const uint8_t *except, int64_t now, ts_count_fn done, void *ctx) {
  rb *b = (rb *)base;
  sop *o = sop_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM, 0);
    return;
  }
  o->fn.count = done;
  rb_args a;
  rb_args_init(&a);
  rb_arg_str(&a, "FCALL");
  rb_arg_str(&a, "ts_session_revoke_all");
  rb_arg_str(&a, "2");
  char k[RB_KEY_MAX], hex[2 * TS_HANDLE_BYTES + 1] = "";
  rb_arg_copy(&a, k, rb_key_user(k, sub, sub_len, "sl"));
  rb_arg_copy(&a, k, rb_key_user(k, sub, sub_len, "sx"));
  rb_arg_int(&a, now);
  if (except) rb_hex(hex, except, TS_HANDLE_BYTES);
  rb_arg_copy(&a, hex, strlen(hex));
  rb_send(b, &a, on_count, o);
}

/* ---- list ----------------------------------------------------------------------------------- */

static void on_list(void *ctx, redisReply *r) {
  sop *o = ctx;
  int rc = rb_fcall_status(r);
  if (rc == 0 && (r->elements < 3 || r->element[1]->type != REDIS_REPLY_INTEGER ||
                  r->element[2]->type != REDIS_REPLY_STRING))
    rc = TS_EUNAVAILABLE;
  size_t n = rc ? 0 : r->elements - 3;
  ts_session_rec *recs = n ? calloc(n, sizeof(*recs)) : NULL;
  if (n && !recs) rc = TS_ENOMEM;
  uint8_t last[TS_HANDLE_BYTES];
  memcpy(last, o->after, TS_HANDLE_BYTES);
  size_t got = 0;
  if (rc == 0) {
    for (size_t i = 0; i < n; i++) {
      const redisReply *e = r->element[3 + i];
      if (e->type == REDIS_REPLY_STRING && rb_session_unpack(e->str, e->len, &recs[got])) got++;
    }
    const redisReply *lh = r->element[2];
    if (lh->len == 2 * TS_HANDLE_BYTES)
      for (size_t i = 0; i < TS_HANDLE_BYTES; i++) {
        unsigned v;
        sscanf(lh->str + 2 * i, "%2x", &v);
        last[i] = (uint8_t)v;
      }
  }
  bool more = rc == 0 && r->element[1]->integer != 0;
  o->fn.list(o->ctx, rc, recs, got, more, last);
  free(recs);
  sop_free(o);
}

static void session_list(ts_backend *base, const char *sub, size_t sub_len, const uint8_t *after,
                         size_t limit, int64_t now, ts_list_fn done, void *ctx) {
  rb *b = (rb *)base;
  sop *o = sop_new(b, ctx);
  if (!o) {
    uint8_t none[TS_HANDLE_BYTES] = {0};
    done(ctx, TS_ENOMEM, NULL, 0, false, none);
    return;
  }
  o->fn.list = done;
  if (after) memcpy(o->after, after, TS_HANDLE_BYTES);
  rb_args a;
  rb_args_init(&a);
  rb_arg_str(&a, "FCALL_RO");
  rb_arg_str(&a, "ts_session_list");
  rb_arg_str(&a, "1");
  char k[RB_KEY_MAX], hex[2 * TS_HANDLE_BYTES + 1] = "";
  rb_arg_copy(&a, k, rb_key_user(k, sub, sub_len, "sl"));
  rb_arg_int(&a, now);
  if (after) rb_hex(hex, after, TS_HANDLE_BYTES);
  rb_arg_copy(&a, hex, strlen(hex));
  rb_arg_int(&a, (int64_t)limit);
  rb_arg_int(&a, LIST_SCAN_EXTRA);
  rb_send(b, &a, on_list, o);
}

void rb_session_ops(ts_backend_ops *o) {
  o->session_create = session_create;
  o->session_get = session_get;
  o->session_touch = session_touch;
  o->session_rotate = session_rotate;
  o->session_revoke = session_revoke;
  o->session_revoke_all = session_revoke_all;
  o->session_list = session_list;
}
