/* sidecar/store/lmdb/token_ops.c: refresh families, the revocation list, single-use tokens
 * and user.revoke in the LMDB backend (backend.h documents each operation).
 *
 * Rotation is a check-and-swap inside one writer transaction: the presented refresh jti is
 * compared with the family's `current`; if equal, the caller's fresh jtis become current and
 * the presented one becomes `previous`. The writer applies operations one at a time, so two
 * concurrent refreshes of one token cannot both rotate: the second finds its jti in
 * `previous` and, within the grace, gets the unchanged record (the caller signs the same
 * successor again: Ed25519 is deterministic). Any older jti, or `previous` after the grace,
 * is reuse: the family is revoked in that same transaction.
 *
 * Every revocation that is announced goes into the feed in its own transaction (feed.h); once
 * durable, done tells the listener (lmdb_published). A failed write was rolled back, so the
 * entries its apply wrote before failing never happened and are not told. */
#include "lmdb_backend.h"

#include "error.h"
#include "families.h"
#include "feed.h"
#include "revocations.h"
#include "session_store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FAMILIES_AT_ONCE 4096

typedef struct token_op {
  ts_write w; /* first */
  lmdb_backend *lb;
  union {
    ts_done_fn done;
    ts_count_fn count;
    ts_family_fn family;
    ts_user_fn user;
  } cb;
  void *ctx;
  int64_t now, until, leeway, longest, iat, grace, max_lifetime;
  bool proven;
  char fam[TS_FAMILY_ID_CHARS + 8];
  char jti[TS_REVOKED_ID_MAX + 1];
  char kid[130];
  char next_jti[TS_REVOKED_ID_MAX + 1], next_access[TS_REVOKED_ID_MAX + 1];
  char sub[TS_SUB_MAX + 1];
  size_t sub_len;
  bool has_fam, has_jti, has_sub;
  json_t *rec;          /* family: in for create, out for refresh */
  ts_session_new session; /* consume: the session to create (exchange), rec NULL if none */
  /* results */
  unsigned revoked, sessions, families;
  lmdb_gone gone; /* user_revoke: the sessions deleted */
  uint64_t feed_last;
} token_op;

static token_op *op_new(ts_backend *b, int (*apply)(ts_txn *, ts_write *),
                        void (*done)(ts_write *, int), void *ctx, int64_t now) {
  token_op *op = calloc(1, sizeof(*op));
  if (!op) return NULL;
  op->w.apply = apply;
  op->w.done = done;
  op->lb = lmdb_of(b);
  op->ctx = ctx;
  op->now = now;
  return op;
}

static void op_free(token_op *op) {
  free(op->gone.hash);
  json_decref(op->rec);
  ts_session_new_wipe(&op->session);
  free(op);
}

static void submit(token_op *op) { ts_writer_submit(op->lb->writer, &op->w); }

static bool copy_str(char *dst, size_t cap, const char *s, size_t len) {
  if (!s || len >= cap) return false;
  memcpy(dst, s, len);
  dst[len] = 0;
  return true;
}

/* ---- family_create ---------------------------------------------------------------------- */

static int apply_create(ts_txn *t, ts_write *w) {
  token_op *op = (token_op *)w;
  return ts_family_put(t, op->fam, op->rec, -1, op->leeway);
}

static void done_family(ts_write *w, int status) {
  token_op *op = (token_op *)w;
  if (status == 0 || status == TS_EREUSED) lmdb_published(op->lb, op->feed_last);
  json_t *rec = status ? NULL : op->rec;
  if (rec) json_object_set_new(rec, "id", json_string(op->fam)); /* backend.h: rec names it */
  op->cb.family(op->ctx, status, rec);
  op_free(op); /* and op->rec with it */
}

void lmdb_family_create(ts_backend *b, const char *fam, const json_t *rec, int64_t leeway,
                        ts_family_fn done, void *ctx) {
  token_op *op = op_new(b, apply_create, done_family, ctx, 0);
  if (!op || !copy_str(op->fam, sizeof(op->fam), fam, strlen(fam)) ||
      !(op->rec = json_deep_copy(rec))) {
    if (op) op_free(op);
    done(ctx, TS_ENOMEM, NULL);
    return;
  }
  op->cb.family = done;
  op->leeway = leeway;
  submit(op);
}

/* ---- family_refresh --------------------------------------------------------------------- */

/* The successor record of a rotation, written in t. */
static int rotate(ts_txn *t, token_op *op, json_t *rec, int64_t born, int64_t end) {
  const char *current = json_string_value(json_object_get(rec, "current"));
  int64_t old_exp = json_integer_value(json_object_get(rec, "exp"));
  int64_t rtt = json_integer_value(json_object_get(rec, "refresh_ttl"));
  if (op->now + rtt > end) rtt = end - op->now; /* never past the family's end */
  if (!json_object_get(rec, "created_at")) json_object_set_new(rec, "created_at", json_integer(born));
  json_object_set_new(rec, "previous", json_string(current));
  json_object_set_new(rec, "current", json_string(op->next_jti));
  json_object_set_new(rec, "access", json_string(op->next_access));
  json_object_set_new(rec, "rotated_at", json_integer(op->now));
  json_object_set_new(rec, "exp", json_integer(op->now + rtt));
  json_object_set_new(rec, "kid", json_string(op->kid));
  json_object_set_new(rec, "generation",
                      json_integer(json_integer_value(json_object_get(rec, "generation")) + 1));
  return ts_family_put(t, op->fam, rec, old_exp, op->leeway);
}

static int apply_refresh(ts_txn *t, ts_write *w) {
  token_op *op = (token_op *)w;
  json_t *rec;
  int rc = ts_family_get(t, op->fam, &rec);
  if (rc == TS_ENOTFOUND) return TS_EREVOKED; /* revoked, or gone with its exp */
  if (rc) return rc;
  int64_t before;
  const json_t *sub = json_object_get(rec, "sub");
  if (ts_cutoff_get(t, json_string_value(sub), json_string_length(sub), op->now, &before) == 0 &&
      op->iat <= before)
    rc = TS_EREVOKED;
  /* The jti denylist too: token.revoke {jti, exp} names a refresh token's jti as well. */
  if (!rc) {
    rc = ts_revoked_get(t, 'j', op->jti, strlen(op->jti), op->now);
    rc = rc == 0 ? TS_EREVOKED : rc == TS_ENOTFOUND ? 0 : rc;
  }
  const char *current = json_string_value(json_object_get(rec, "current"));
  const char *previous = json_string_value(json_object_get(rec, "previous"));
  int64_t rotated_at = json_integer_value(json_object_get(rec, "rotated_at"));
  if (rc) {
  } else if (current && strcmp(op->jti, current) == 0) {
    /* The family's absolute end. A record written before created_at existed counts from its
     * last rotation (the oldest time it holds), and keeps that from now on. */
    const json_t *created = json_object_get(rec, "created_at");
    int64_t born = json_is_integer(created) ? json_integer_value(created) : rotated_at;
    int64_t end = born + op->max_lifetime;
    rc = op->now >= end ? TS_EEXPIRED /* nothing written; swept at its exp */
                        : rotate(t, op, rec, born, end);
  } else if (previous && strcmp(op->jti, previous) == 0 && op->now - rotated_at <= op->grace) {
    rc = 0; /* a concurrent retry: the same successor */
  } else {
    rc = ts_family_revoke_announced(t, op->fam, json_integer_value(json_object_get(rec, "exp")),
                                    op->leeway, &op->feed_last, &op->revoked);
    if (!rc) rc = TS_EREUSED;
  }
  if (rc) {
    json_decref(rec);
    return rc;
  }
  op->rec = rec;
  return 0;
}

void lmdb_family_refresh(ts_backend *b, const ts_refresh_in *in, ts_family_fn done, void *ctx) {
  token_op *op = op_new(b, apply_refresh, done_family, ctx, in->now);
  if (!op || !copy_str(op->fam, sizeof(op->fam), in->fam, strlen(in->fam)) ||
      !copy_str(op->jti, sizeof(op->jti), in->jti, strlen(in->jti)) ||
      !copy_str(op->kid, sizeof(op->kid), in->kid, strlen(in->kid)) ||
      !copy_str(op->next_jti, sizeof(op->next_jti), in->next_jti, strlen(in->next_jti)) ||
      !copy_str(op->next_access, sizeof(op->next_access), in->next_access,
                strlen(in->next_access))) {
    int err = op ? TS_EUNAUTHENTICATED : TS_ENOMEM;
    if (op) op_free(op);
    done(ctx, err, NULL);
    return;
  }
  op->cb.family = done;
  op->iat = in->iat;
  op->grace = in->grace;
  op->max_lifetime = in->max_lifetime;
  op->leeway = in->leeway;
  submit(op);
}

/* ---- family_revoke and revoke_jti ------------------------------------------------------- */

static void done_count(ts_write *w, int status) {
  token_op *op = (token_op *)w;
  if (status == 0) lmdb_published(op->lb, op->feed_last);
  op->cb.count(op->ctx, status, status ? 0 : op->revoked);
  op_free(op);
}

static int apply_family_revoke(ts_txn *t, ts_write *w) {
  token_op *op = (token_op *)w;
  return ts_family_revoke_announced(t, op->fam, op->until, op->leeway, &op->feed_last,
                                    &op->revoked);
}

void lmdb_family_revoke(ts_backend *b, const char *fam, int64_t until, int64_t leeway,
                        ts_count_fn done, void *ctx) {
  token_op *op = op_new(b, apply_family_revoke, done_count, ctx, 0);
  if (!op || !copy_str(op->fam, sizeof(op->fam), fam, strlen(fam))) {
    int err = op ? 0 : TS_ENOMEM;
    if (op) op_free(op);
    done(ctx, err, 0); /* an id too long to be a family revokes nothing */
    return;
  }
  op->cb.count = done;
  op->until = until;
  op->leeway = leeway;
  submit(op);
}

static int apply_revoke_jti(ts_txn *t, ts_write *w) {
  token_op *op = (token_op *)w;
  if (op->proven) ts_store_reserve_all(t);
  int rc = ts_revoked_get(t, 'j', op->jti, strlen(op->jti), (int64_t)time(NULL));
  if (rc == 0) return 0; /* already revoked */
  rc = ts_revoked_put(t, 'j', op->jti, strlen(op->jti), op->until);
  if (rc == 0) {
    op->revoked = 1;
    rc = ts_feed_append(t, &op->feed_last, 'j', op->jti, strlen(op->jti), op->until, 0);
  }
  return rc;
}

void lmdb_revoke_jti(ts_backend *b, const char *jti, int64_t until, bool proven,
                     ts_count_fn done, void *ctx) {
  token_op *op = op_new(b, apply_revoke_jti, done_count, ctx, 0);
  if (!op || !copy_str(op->jti, sizeof(op->jti), jti, strlen(jti))) {
    int err = op ? 0 : TS_ENOMEM;
    if (op) op_free(op);
    done(ctx, err, 0);
    return;
  }
  op->cb.count = done;
  op->until = until;
  op->proven = proven;
  submit(op);
}

/* ---- user_revoke ------------------------------------------------------------------------ */

static int apply_user(ts_txn *t, ts_write *w) {
  token_op *op = (token_op *)w;
  /* The cut-off is the second this write applies in: every token issued before it is dead. */
  int64_t at = (int64_t)time(NULL);
  if (at > op->now) op->now = at;
  int n =
      ts_session_revoke_sub(t, op->sub, op->sub_len, NULL, op->now, lmdb_gone_add, &op->gone);
  if (n < 0) return n;
  op->sessions = (unsigned)n;
  char(*ids)[TS_FAMILY_ID_CHARS + 1] = malloc(MAX_FAMILIES_AT_ONCE * sizeof(*ids));
  if (!ids) return TS_ENOMEM;
  /* In rounds: each revoked family leaves fam_by_sub, so the next round lists the rest. */
  int nf, rc = 0;
  unsigned round_start;
  do {
    round_start = op->revoked;
    nf = ts_family_list_sub(t, op->sub, op->sub_len, ids, MAX_FAMILIES_AT_ONCE);
    if (nf < 0) rc = nf;
    for (int i = 0; i < nf && rc == 0; i++)
      rc = ts_family_revoke_announced(t, ids[i], op->now, op->leeway, &op->feed_last,
                                      &op->revoked);
  } while (rc == 0 && nf == MAX_FAMILIES_AT_ONCE && op->revoked > round_start);
  free(ids);
  if (rc) return rc;
  op->families = op->revoked;
  /* A sub that held sessions or families provably exists: its cut-off may use the whole
   * reserve; any other sub's only half of it (anyone can name any sub). */
  if (op->sessions + op->families > 0) ts_store_reserve_all(t);
  /* The cut-off outlives every token that could have been issued before it. */
  int64_t until = op->now + op->longest + op->leeway;
  rc = ts_cutoff_put(t, op->sub, op->sub_len, op->now, until);
  if (rc == 0) rc = ts_feed_append(t, &op->feed_last, 's', op->sub, op->sub_len, until, op->now);
  return rc;
}

static void done_user(ts_write *w, int status) {
  token_op *op = (token_op *)w;
  lmdb_gone_forget(op->lb, &op->gone); /* the user's sessions (session_ops.c, the cache) */
  if (status == 0) lmdb_published(op->lb, op->feed_last);
  op->cb.user(op->ctx, status, op->sessions, op->families, op->now);
  op_free(op);
}

void lmdb_user_revoke(ts_backend *b, const char *sub, size_t sub_len, int64_t now,
                      int64_t longest, int64_t leeway, ts_user_fn done, void *ctx) {
  token_op *op = op_new(b, apply_user, done_user, ctx, now);
  if (!op || !copy_str(op->sub, sizeof(op->sub), sub, sub_len)) {
    if (op) op_free(op);
    done(ctx, TS_ENOMEM, 0, 0, now);
    return;
  }
  op->cb.user = done;
  op->sub_len = sub_len;
  op->longest = longest;
  op->leeway = leeway;
  submit(op);
}

/* ---- revocation_check and consume ------------------------------------------------------- */

/* 0, TS_EREVOKED, or a store error. */
static int check_claims(ts_txn *t, const char *jti, const char *fam, const char *sub,
                        size_t sub_len, int64_t iat, int64_t now) {
  int rc = jti ? ts_revoked_get(t, 'j', jti, strlen(jti), now) : TS_ENOTFOUND;
  if (rc == TS_ENOTFOUND && fam) rc = ts_revoked_get(t, 'f', fam, strlen(fam), now);
  if (rc == TS_ENOTFOUND && sub) {
    int64_t before;
    rc = ts_cutoff_get(t, sub, sub_len, now, &before);
    if (rc == 0 && iat > before) rc = TS_ENOTFOUND;
  }
  if (rc == 0) return TS_EREVOKED;
  return rc == TS_ENOTFOUND ? 0 : rc;
}

void lmdb_revocation_check(ts_backend *b, const ts_claims_ref *c, int64_t now, ts_done_fn done,
                           void *ctx) {
  ts_txn *t;
  int rc = ts_store_snapshot(lmdb_of(b)->store, &t);
  if (rc == 0) rc = check_claims(t, c->jti, c->fam, c->sub, c->sub_len, c->iat, now);
  done(ctx, rc == 0 || rc == TS_EREVOKED ? rc : TS_EUNAVAILABLE);
}

static int apply_consume(ts_txn *t, ts_write *w) {
  token_op *op = (token_op *)w;
  int rc = check_claims(t, op->has_jti ? op->jti : NULL, op->has_fam ? op->fam : NULL,
                        op->has_sub ? op->sub : NULL, op->sub_len, op->iat, op->now);
  if (rc) return rc;
  ts_store_reserve_all(t); /* the token verified: its use must be recorded */
  rc = ts_revoked_put(t, 'j', op->jti, strlen(op->jti), op->until);
  if (rc == 0 && op->session.rec) {
    ts_session_rec rec;
    rc = ts_session_decode(op->session.rec, op->session.rec_len, &rec)
             ? ts_session_put(t, op->session.hash, &rec)
             : TS_EINTERNAL;
  }
  return rc;
}

static void done_plain(ts_write *w, int status) {
  token_op *op = (token_op *)w;
  op->cb.done(op->ctx, status);
  op_free(op);
}

void lmdb_consume(ts_backend *b, const ts_claims_ref *c, int64_t until, int64_t now,
                  const ts_session_new *session, ts_done_fn done, void *ctx) {
  token_op *op = op_new(b, apply_consume, done_plain, ctx, now);
  bool ok = op && c->jti && copy_str(op->jti, sizeof(op->jti), c->jti, strlen(c->jti)) &&
            (!c->fam || copy_str(op->fam, sizeof(op->fam), c->fam, strlen(c->fam))) &&
            (!c->sub || copy_str(op->sub, sizeof(op->sub), c->sub, c->sub_len));
  if (ok && session) {
    op->session = *session;
    op->session.rec = malloc(session->rec_len);
    if (op->session.rec) memcpy(op->session.rec, session->rec, session->rec_len);
    else ok = false;
  }
  if (!ok) {
    int err = op ? TS_EUNAUTHENTICATED : TS_ENOMEM;
    if (op) op_free(op);
    done(ctx, err);
    return;
  }
  op->cb.done = done;
  op->has_jti = true;
  op->has_fam = c->fam != NULL;
  op->has_sub = c->sub != NULL;
  op->sub_len = c->sub_len;
  op->iat = c->iat;
  op->until = until;
  submit(op);
}
