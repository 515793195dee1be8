/* sidecar/store/redis/ops_tokens.c: refresh families, the revocation list, user cut-offs and
 * single-use consumption on Redis (backend.h), each one FCALL of tessera.lua.
 *
 * A family record is a Redis HASH whose values are the JSON of the record's fields, so the
 * refresh decision (tessera.lua ts_family_refresh, the same rules as the LMDB backend:
 * rotation, grace, reuse) rewrites only the scalar fields it owns and the caller's aud, scope
 * and claims come back byte-exact. Every write that announces a revocation returns the stream
 * id of its feed entry, handed to on_published at once (the feed reader sees it too).
 * revocation_check is one MGET of the jti, family and cut-off keys, decided here with now. */
#include "redis.h"

#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct top {
  rb *b;
  union {
    ts_done_fn done;
    ts_count_fn count;
    ts_family_fn family;
    ts_user_fn user;
  } fn;
  void *ctx;
  int64_t now, iat;
  bool has[3];
  char fam[TS_FAMILY_ID_CHARS + 8]; /* family ops: named in the record handed back */
} top;

static top *top_new(rb *b, void *ctx) {
  top *o = calloc(1, sizeof(*o));
  if (o) o->b = b, o->ctx = ctx;
  return o;
}

static void fcall(rb_args *a, const char *name, int numkeys) {
  rb_args_init(a);
  rb_arg_str(a, "FCALL");
  rb_arg_str(a, name);
  rb_arg_int(a, numkeys);
}

static void feed_keys(rb_args *a) {
  rb_arg_str(a, RB_KEY_FEED);
  rb_arg_str(a, RB_KEY_LAST);
  rb_arg_str(a, RB_KEY_TRIMMED);
}

/* ---- families ------------------------------------------------------------------------------- */

/* The record from a flat [field, JSON, ...] array; NULL if it is not one. */
static json_t *family_from(const redisReply *flat) {
  if (!flat || flat->type != REDIS_REPLY_ARRAY || flat->elements % 2) return NULL;
  json_t *rec = json_object();
  for (size_t i = 0; rec && i + 1 < flat->elements; i += 2) {
    const redisReply *k = flat->element[i], *v = flat->element[i + 1];
    json_t *val = k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING
                      ? json_loadb(v->str, v->len, JSON_DECODE_ANY, NULL)
                      : NULL;
    char name[64];
    if (!val || k->len >= sizeof(name)) {
      json_decref(val);
      json_decref(rec);
      return NULL;
    }
    memcpy(name, k->str, k->len + 1);
    json_object_set_new(rec, name, val);
  }
  return rec;
}

static void on_family(void *ctx, redisReply *r) {
  top *o = ctx;
  int rc = rb_fcall_status(r);
  json_t *rec = NULL;
  if (rc == 0 && (r->elements < 2 || !(rec = family_from(r->element[1])))) rc = TS_EUNAVAILABLE;
  if (rc == TS_EREUSED && r->elements >= 3) rb_published(o->b, r->element[2]);
  if (rec) json_object_set_new(rec, "id", json_string(o->fam)); /* backend.h: rec names it */
  o->fn.family(o->ctx, rc, rec);
  json_decref(rec);
  free(o);
}

typedef struct create_op {
  top t;
  json_t *rec;
  void *user_ctx;
} create_op;

static void on_created(void *ctx, redisReply *r) {
  create_op *o = ctx;
  int rc = rb_fcall_status(r);
  o->t.fn.family(o->user_ctx, rc, rc ? NULL : o->rec);
  json_decref(o->rec);
  free(o);
}

static void family_create(ts_backend *base, const char *fam, const json_t *rec, int64_t leeway,
                          ts_family_fn done, void *ctx) {
  rb *b = (rb *)base;
  create_op *o = calloc(1, sizeof(*o));
  const json_t *sub = json_object_get(rec, "sub");
  if (!o || !json_is_string(sub)) {
    free(o);
    done(ctx, o ? TS_EINTERNAL : TS_ENOMEM, NULL);
    return;
  }
  o->t.b = b;
  o->t.fn.family = done;
  o->user_ctx = ctx;
  o->rec = json_deep_copy(rec);
  if (o->rec) json_object_set_new(o->rec, "id", json_string(fam));
  rb_args a;
  fcall(&a, "ts_family_create", 2);
  char k[RB_KEY_MAX];
  rb_arg_copy(&a, k, rb_key_family(k, fam));
  rb_arg_copy(&a, k, rb_key_user(k, json_string_value(sub), json_string_length(sub), "f"));
  rb_arg_copy(&a, fam, strlen(fam));
  rb_arg_int(&a, leeway);
  rb_arg_int(&a, (int64_t)time(NULL)); /* for the gauges only */
  char *vals[32];
  int nv = 0;
  const char *name;
  const json_t *v;
  json_object_foreach((json_t *)rec, name, v) {
    if (nv == 32) break;
    if (strcmp(name, "id") == 0) continue; /* the key names it */
    vals[nv] = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!vals[nv]) break;
    rb_arg(&a, name, strlen(name));
    rb_arg(&a, vals[nv], strlen(vals[nv]));
    nv++;
  }
  if (nv != (int)json_object_size(rec) - (json_object_get(rec, "id") ? 1 : 0) || !o->rec)
    a.overflow = true;
  rb_send(b, &a, on_created, o);
  for (int i = 0; i < nv; i++) free(vals[i]);
}

static void family_refresh(ts_backend *base, const ts_refresh_in *in, ts_family_fn done,
                           void *ctx) {
  rb *b = (rb *)base;
  top *o = top_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM, NULL);
    return;
  }
  o->fn.family = done;
  snprintf(o->fam, sizeof(o->fam), "%s", in->fam);
  rb_args a;
  fcall(&a, "ts_family_refresh", 8);
  char k[RB_KEY_MAX];
  rb_arg_copy(&a, k, rb_key_family(k, in->fam));
  rb_arg_copy(&a, k, rb_key_listed(k, 'j', in->jti, strlen(in->jti)));
  rb_arg_copy(&a, k, rb_key_listed(k, 'f', in->fam, strlen(in->fam)));
  rb_arg_copy(&a, k, rb_key_cutoff(k, in->sub, in->sub_len));
  rb_arg_copy(&a, k, rb_key_user(k, in->sub, in->sub_len, "f"));
  feed_keys(&a);
  rb_arg_str(&a, in->fam);
  rb_arg_str(&a, in->jti);
  rb_arg_int(&a, in->now);
  rb_arg_int(&a, in->iat);
  rb_arg_str(&a, in->kid);
  rb_arg_str(&a, in->next_jti);
  rb_arg_str(&a, in->next_access);
  rb_arg_int(&a, in->grace);
  rb_arg_int(&a, in->max_lifetime);
  rb_arg_int(&a, in->leeway);
  rb_arg_minid(&a, b);
  rb_send(b, &a, on_family, o);
}

/* {0, n, stream id}: n revoked, announced at the stream id when n > 0. */
static void on_announced_count(void *ctx, redisReply *r) {
  top *o = ctx;
  int rc = rb_fcall_status(r);
  unsigned n = 0;
  if (rc == 0 && (r->elements < 3 || r->element[1]->type != REDIS_REPLY_INTEGER))
    rc = TS_EUNAVAILABLE;
  if (rc == 0) {
    n = (unsigned)r->element[1]->integer;
    if (n) rb_published(o->b, r->element[2]);
  }
  o->fn.count(o->ctx, rc, n);
  free(o);
}

static void family_revoke(ts_backend *base, const char *fam, int64_t until, int64_t leeway,
                          ts_count_fn done, void *ctx) {
  rb *b = (rb *)base;
  top *o = top_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM, 0);
    return;
  }
  o->fn.count = done;
  rb_args a;
  fcall(&a, "ts_family_revoke", 5);
  char k[RB_KEY_MAX];
  rb_arg_copy(&a, k, rb_key_family(k, fam));
  rb_arg_copy(&a, k, rb_key_listed(k, 'f', fam, strlen(fam)));
  feed_keys(&a);
  rb_arg_str(&a, fam);
  rb_arg_int(&a, until);
  rb_arg_int(&a, leeway);
  rb_arg_minid(&a, b);
  rb_arg_int(&a, (int64_t)time(NULL)); /* for the gauges only */
  rb_send(b, &a, on_announced_count, o);
}

/* ---- the revocation list -------------------------------------------------------------------- */

static void revoke_jti(ts_backend *base, const char *jti, int64_t until, bool proven,
                       ts_count_fn done, void *ctx) {
  rb *b = (rb *)base;
  (void)proven; /* Redis has no reserve: maxmemory-policy noeviction answers OOM, unavailable */
  top *o = top_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM, 0);
    return;
  }
  o->fn.count = done;
  rb_args a;
  fcall(&a, "ts_revoke_jti", 4);
  char k[RB_KEY_MAX];
  rb_arg_copy(&a, k, rb_key_listed(k, 'j', jti, strlen(jti)));
  feed_keys(&a);
  rb_arg_str(&a, jti);
  rb_arg_int(&a, until);
  rb_arg_minid(&a, b);
  rb_arg_int(&a, (int64_t)time(NULL)); /* for the gauges only */
  rb_send(b, &a, on_announced_count, o);
}

static void on_user(void *ctx, redisReply *r) {
  top *o = ctx;
  rb_cache_flush(o->b); /* the user's sessions: not left to the invalidation messages */
  int rc = rb_fcall_status(r);
  if (rc == 0 && (r->elements < 5 || r->element[1]->type != REDIS_REPLY_INTEGER ||
                  r->element[2]->type != REDIS_REPLY_INTEGER ||
                  r->element[3]->type != REDIS_REPLY_STRING))
    rc = TS_EUNAVAILABLE;
  if (rc) {
    o->fn.user(o->ctx, rc, 0, 0, 0);
  } else {
    rb_published(o->b, r->element[4]);
    o->fn.user(o->ctx, 0, (unsigned)r->element[1]->integer, (unsigned)r->element[2]->integer,
               strtoll(r->element[3]->str, NULL, 10));
  }
  free(o);
}

static void user_revoke(ts_backend *base, const char *sub, size_t sub_len, int64_t now,
                        int64_t longest, int64_t leeway, ts_user_fn done, void *ctx) {
  rb *b = (rb *)base;
  top *o = top_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM, 0, 0, 0);
    return;
  }
  o->fn.user = done;
  /* The cut-off is the second the write is sent in (the caller holds its reply until that
   * second is over), never before the caller's now. */
  int64_t at = (int64_t)time(NULL);
  if (at < now) at = now;
  rb_args a;
  fcall(&a, "ts_user_revoke", 7);
  char k[RB_KEY_MAX];
  rb_arg_copy(&a, k, rb_key_user(k, sub, sub_len, "sl"));
  rb_arg_copy(&a, k, rb_key_user(k, sub, sub_len, "sx"));
  rb_arg_copy(&a, k, rb_key_user(k, sub, sub_len, "f"));
  rb_arg_copy(&a, k, rb_key_cutoff(k, sub, sub_len));
  feed_keys(&a);
  rb_arg(&a, sub, sub_len);
  rb_arg_int(&a, at);
  rb_arg_int(&a, longest);
  rb_arg_int(&a, leeway);
  rb_arg_minid(&a, b);
  rb_send(b, &a, on_user, o);
}

/* ---- checks --------------------------------------------------------------------------------- */

static int decide(const top *o, const redisReply *r) {
  if (!r || r->type != REDIS_REPLY_ARRAY) return TS_EUNAVAILABLE;
  size_t i = 0;
  for (int w = 0; w < 3; w++) {
    if (!o->has[w]) continue;
    if (i >= r->elements) return TS_EUNAVAILABLE;
    const redisReply *e = r->element[i++];
    if (e->type != REDIS_REPLY_STRING) continue; /* nil: not listed */
    if (w < 2) {
      if (strtoll(e->str, NULL, 10) >= o->now) return TS_EREVOKED;
    } else {
      char *end;
      long long before = strtoll(e->str, &end, 10);
      long long until = strtoll(end, NULL, 10);
      if (until >= o->now && o->iat <= before) return TS_EREVOKED;
    }
  }
  return 0;
}

static void on_check(void *ctx, redisReply *r) {
  top *o = ctx;
  o->fn.done(o->ctx, decide(o, r));
  free(o);
}

static void revocation_check(ts_backend *base, const ts_claims_ref *c, int64_t now,
                             ts_done_fn done, void *ctx) {
  rb *b = (rb *)base;
  top *o = top_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM);
    return;
  }
  o->fn.done = done;
  o->now = now;
  o->iat = c->iat;
  rb_args a;
  rb_args_init(&a);
  rb_arg_str(&a, "MGET");
  char k[RB_KEY_MAX];
  if ((o->has[0] = c->jti != NULL)) rb_arg_copy(&a, k, rb_key_listed(k, 'j', c->jti, strlen(c->jti)));
  if ((o->has[1] = c->fam != NULL)) rb_arg_copy(&a, k, rb_key_listed(k, 'f', c->fam, strlen(c->fam)));
  if ((o->has[2] = c->sub != NULL)) rb_arg_copy(&a, k, rb_key_cutoff(k, c->sub, c->sub_len));
  if (a.n == 1) { /* nothing to look up */
    free(o);
    done(ctx, 0);
    return;
  }
  rb_command(&b->cmd, on_check, o, a.n, a.v, a.l, 0);
}

static void on_consume(void *ctx, redisReply *r) {
  top *o = ctx;
  o->fn.done(o->ctx, rb_fcall_status(r));
  free(o);
}

static void consume(ts_backend *base, const ts_claims_ref *c, int64_t until, int64_t now,
                    const ts_session_new *session, ts_done_fn done, void *ctx) {
  rb *b = (rb *)base;
  if (!c->jti) {
    done(ctx, TS_EINTERNAL); /* every token of ours has a jti */
    return;
  }
  top *o = top_new(b, ctx);
  if (!o) {
    done(ctx, TS_ENOMEM);
    return;
  }
  o->fn.done = done;
  rb_args a;
  fcall(&a, "ts_consume", session ? 7 : 3);
  char k[RB_KEY_MAX];
  rb_arg_copy(&a, k, rb_key_listed(k, 'j', c->jti, strlen(c->jti)));
  if (c->fam) rb_arg_copy(&a, k, rb_key_listed(k, 'f', c->fam, strlen(c->fam)));
  else rb_arg_str(&a, "");
  if (c->sub) rb_arg_copy(&a, k, rb_key_cutoff(k, c->sub, c->sub_len));
  else rb_arg_str(&a, "");
  char hashhex[2 * TS_HASH_BYTES + 1] = "";
  uint8_t *packed = NULL;
  size_t plen = 0;
  if (session) {
    int rc = rb_session_args(&a, session, hashhex, &packed, &plen);
    if (rc) {
      free(o);
      done(ctx, rc);
      return;
    }
  }
  rb_arg_int(&a, now);
  rb_arg_int(&a, c->iat);
  rb_arg_int(&a, until);
  rb_arg(&a, hashhex, strlen(hashhex));
  rb_arg(&a, packed ? (const char *)packed : "", plen);
  rb_send(b, &a, on_consume, o);
  free(packed);
}

void rb_token_ops(ts_backend_ops *o) {
  o->family_create = family_create;
  o->family_refresh = family_refresh;
  o->family_revoke = family_revoke;
  o->revoke_jti = revoke_jti;
  o->user_revoke = user_revoke;
  o->revocation_check = revocation_check;
  o->consume = consume;
}
