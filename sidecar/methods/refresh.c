/* sidecar/methods/refresh.c: token.pair, token.refresh and token.revoke: refresh-token
 * families with rotation and reuse detection (RFC 9700 4.14) and token revocation (RFC 7009).
 *
 * Rotation is a check-and-swap inside one writer transaction: the presented refresh jti is
 * compared with the family's `current`; if equal, new jtis become current and the presented
 * one becomes `previous`. Because the writer applies operations one at a time, two concurrent
 * refreshes of one token cannot both rotate: the second finds its jti in `previous` and, within
 * --refresh-grace of the rotation, gets the same successor (signed again from the stored jtis,
 * times and kid: Ed25519 signatures are deterministic, so the pair is byte-identical). Any
 * older jti, or `previous` after the grace window, is reuse: the family is revoked in that same
 * transaction and the answer is `reused`; the newest token of the family then answers
 * `revoked`. Signing happens on the loop thread after the commit (the keyring is the loop
 * thread's); the writer only decides.
 *
 * The families and the revocation list are tokens/families.c and tokens/revocations.c;
 * user.revoke, which revokes every family of a sub, is methods/users.c. */
#include "method.h"

#include "domain.h"
#include "error.h"
#include "events.h"
#include "families.h"
#include "feed.h"
#include "json.h"
#include "keyring.h"
#include "log.h"
#include "revocations.h"
#include "rpc.h"
#include "tokens.h"
#include "writer.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum op_kind { OP_PAIR, OP_REFRESH, OP_REVOKE_FAMILY, OP_REVOKE_JTI };

typedef struct refresh_op {
  ts_write w;
  enum op_kind kind;
  ts_req *req;
  ts_domain *d;
  int64_t now;
  char fam[TS_FAMILY_ID_CHARS + 8];
  char jti[TS_JTI_CHARS + 8];   /* presented refresh jti, or the jti to denylist */
  int64_t until;                /* OP_REVOKE_*: keep the entry until (before the leeway) */
  bool proven;                  /* OP_REVOKE_JTI: the jti came from a token that verified */
  json_t *rec;                  /* the family record: in for OP_PAIR, out for OP_REFRESH */
  int64_t iat;                  /* OP_REFRESH: the presented token's iat (for cut-offs) */
  char kid[TS_KID_LEN + 1];     /* OP_REFRESH: the active kid, signs the successor */
  /* results */
  unsigned revoked;
  uint64_t feed_last;           /* the last feed seq it wrote: published once durable */
} refresh_op;

static void random_id(char out[TS_JTI_CHARS + 1]) {
  uint8_t raw[16];
  randombytes_buf(raw, sizeof(raw));
  sodium_bin2base64(out, TS_JTI_CHARS + 1, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static refresh_op *op_new(ts_req *r, enum op_kind kind, int (*apply)(ts_txn *, ts_write *),
                          void (*done)(ts_write *, int)) {
  refresh_op *op = calloc(1, sizeof(*op));
  if (!op) {
    ts_req_fail(r, TS_ENOMEM, NULL);
    return NULL;
  }
  op->w.apply = apply;
  op->w.done = done;
  op->kind = kind;
  op->req = r;
  op->d = r->conn->server->domain;
  op->now = (int64_t)time(NULL);
  return op;
}

static void op_free(refresh_op *op) {
  json_decref(op->rec);
  free(op);
}

/* ---- signing a pair from a family record (loop thread) ---------------------------------- */

static int sign_one(ts_domain *d, const json_t *rec, const char *fam, bool refresh, char **tok,
                    int64_t *exp) {
  int64_t at = json_integer_value(json_object_get(rec, "rotated_at"));
  const json_t *sub = json_object_get(rec, "sub");
  /* The refresh token expires with its family record (which the max lifetime may cap). */
  int64_t ttl = refresh ? json_integer_value(json_object_get(rec, "exp")) - at
                        : json_integer_value(json_object_get(rec, "access_ttl"));
  ts_token_spec s = {
      .typ = refresh ? TS_TYP_REFRESH : TS_TYP_ACCESS,
      .sub = json_string_value(sub), .sub_len = json_string_length(sub), .now = at,
      .ttl = ttl,
      .aud = refresh ? NULL : json_object_get(rec, "aud"),
      .scope = json_string_value(json_object_get(rec, "scope")),
      .fam = fam,
      .extra = refresh ? NULL : json_object_get(rec, "claims"),
      .jti = json_string_value(json_object_get(rec, refresh ? "current" : "access")),
      .kid = json_string_value(json_object_get(rec, "kid"))};
  char jti[TS_JTI_CHARS + 1];
  return ts_token_sign(d, &s, tok, jti, exp);
}

static void reply_pair(ts_req *r, const json_t *rec, const char *fam) {
  ts_domain *d = r->conn->server->domain;
  char *at = NULL, *rt = NULL;
  int64_t aexp, rexp, now = (int64_t)time(NULL);
  int rc = sign_one(d, rec, fam, false, &at, &aexp);
  if (!rc) rc = sign_one(d, rec, fam, true, &rt, &rexp);
  if (rc) {
    ts_req_fail(r, rc, NULL);
  } else {
    msgpack_packer *pk = ts_req_result(r);
    msgpack_pack_map(pk, 7);
    ts_pack_cstr(pk, "access_token");
    ts_pack_cstr(pk, at);
    ts_pack_cstr(pk, "refresh_token");
    ts_pack_cstr(pk, rt);
    ts_pack_cstr(pk, "family");
    ts_pack_cstr(pk, fam);
    ts_pack_cstr(pk, "access_expires_at");
    msgpack_pack_int64(pk, aexp);
    ts_pack_cstr(pk, "access_expires_in");
    msgpack_pack_int64(pk, aexp - now);
    ts_pack_cstr(pk, "refresh_expires_at");
    msgpack_pack_int64(pk, rexp);
    ts_pack_cstr(pk, "refresh_expires_in");
    msgpack_pack_int64(pk, rexp - now);
    ts_req_send(r);
  }
  if (at) sodium_memzero(at, strlen(at));
  if (rt) sodium_memzero(rt, strlen(rt));
  free(at);
  free(rt);
}

/* ---- token.pair ------------------------------------------------------------------------ */

static int apply_pair(ts_txn *t, ts_write *w) {
  refresh_op *op = (refresh_op *)w;
  return ts_family_put(t, op->fam, op->rec, -1, op->d->cfg->leeway);
}

static void done_pair(ts_write *w, int status) {
  refresh_op *op = (refresh_op *)w;
  if (status) ts_req_fail(op->req, status, NULL);
  else reply_pair(op->req, op->rec, op->fam);
  op_free(op);
}

static const ts_param pair_params[] = {
    {"sub", TS_P_STR, true, 1, 256},          {"aud", TS_P_ANY, false, 0, 0},
    {"scope", TS_P_STR, false, 1, 1024},      {"claims", TS_P_MAP, false, 0, 4096},
    {"access_ttl", TS_P_DURATION, false, 0, 0}, {"refresh_ttl", TS_P_DURATION, false, 0, 0},
};

static void token_pair(ts_req *r, const ts_param_value *v) {
  char scope[1025];
  const ts_config *cfg = ((ts_domain *)r->conn->server->domain)->cfg;
  int64_t att = v[4].present ? v[4].i64 : cfg->access_ttl;
  int64_t rtt = v[5].present ? v[5].i64 : cfg->refresh_ttl;
  if (att > cfg->max_access_ttl || rtt > cfg->max_refresh_ttl) {
    ts_req_failf(r, TS_EBAD_REQUEST, "access_ttl must be 1..%lld, refresh_ttl 1..%lld",
                 (long long)cfg->max_access_ttl, (long long)cfg->max_refresh_ttl);
    return;
  }
  ts_token_spec ts = {0};
  if (!ts_token_parse_common(r, &v[1], &v[2], &v[3], &ts, scope, sizeof(scope))) return;
  refresh_op *op = op_new(r, OP_PAIR, apply_pair, done_pair);
  if (!op) {
    json_decref(ts.aud);
    json_decref(ts.extra);
    return;
  }
  char current[TS_JTI_CHARS + 1], access[TS_JTI_CHARS + 1];
  random_id(op->fam);
  random_id(current);
  random_id(access);
  int64_t rexp = op->now + (rtt < cfg->refresh_max_lifetime ? rtt : cfg->refresh_max_lifetime);
  op->rec = json_pack("{s:s%, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "sub",
                      v[0].str, v[0].len, "access_ttl", (json_int_t)att, "refresh_ttl",
                      (json_int_t)rtt, "kid", ts_keyring_active(op->d->keys.ring)->kid, "current",
                      current, "access", access, "previous", "", "rotated_at",
                      (json_int_t)op->now, "exp", (json_int_t)rexp, "generation", (json_int_t)1,
                      "created_at", (json_int_t)op->now);
  if (op->rec && ts.aud) json_object_set_new(op->rec, "aud", ts.aud), ts.aud = NULL;
  if (op->rec && ts.scope) json_object_set_new(op->rec, "scope", json_string(ts.scope));
  if (op->rec && ts.extra) json_object_set_new(op->rec, "claims", ts.extra), ts.extra = NULL;
  json_decref(ts.aud);
  json_decref(ts.extra);
  if (!op->rec) {
    op_free(op);
    ts_req_fail(r, TS_ENOMEM, NULL);
    return;
  }
  ts_writer_submit(op->d->writer, &op->w);
}

/* ---- token.refresh --------------------------------------------------------------------- */

static int apply_refresh(ts_txn *t, ts_write *w) {
  refresh_op *op = (refresh_op *)w;
  const ts_config *cfg = op->d->cfg;
  json_t *rec;
  int rc = ts_family_get(t, op->fam, &rec);
  if (rc == TS_ENOTFOUND) return TS_EREVOKED; /* revoked, or gone with its exp */
  if (rc) return rc;
  int64_t before;
  const json_t *sub = json_object_get(rec, "sub");
  if (ts_cutoff_get(t, json_string_value(sub), json_string_length(sub), op->now, &before) == 0 &&
      op->iat <= before) {
    json_decref(rec);
    return TS_EREVOKED;
  }
  /* The jti denylist too: token.revoke {jti, exp} names a refresh token's jti as well. */
  rc = ts_revoked_get(t, 'j', op->jti, strlen(op->jti), op->now);
  if (rc != TS_ENOTFOUND) {
    json_decref(rec);
    return rc == 0 ? TS_EREVOKED : rc;
  }
  const char *current = json_string_value(json_object_get(rec, "current"));
  const char *previous = json_string_value(json_object_get(rec, "previous"));
  int64_t rotated_at = json_integer_value(json_object_get(rec, "rotated_at"));
  if (current && strcmp(op->jti, current) == 0) { /* rotate */
    int64_t old_exp = json_integer_value(json_object_get(rec, "exp"));
    /* The family's absolute end. A record written before created_at existed counts from its
     * last rotation (the oldest time it holds), and keeps that from now on. */
    const json_t *created = json_object_get(rec, "created_at");
    int64_t born = json_is_integer(created) ? json_integer_value(created) : rotated_at;
    int64_t end = born + cfg->refresh_max_lifetime;
    if (op->now >= end) {
      json_decref(rec);
      return TS_EEXPIRED; /* nothing written; the sweeper drops the family at its exp */
    }
    char next[TS_JTI_CHARS + 1], access[TS_JTI_CHARS + 1];
    random_id(next);
    random_id(access);
    int64_t rtt = json_integer_value(json_object_get(rec, "refresh_ttl"));
    if (op->now + rtt > end) rtt = end - op->now; /* never past the family's end */
    if (!created) json_object_set_new(rec, "created_at", json_integer(born));
    json_object_set_new(rec, "previous", json_string(current));
    json_object_set_new(rec, "current", json_string(next));
    json_object_set_new(rec, "access", json_string(access));
    json_object_set_new(rec, "rotated_at", json_integer(op->now));
    json_object_set_new(rec, "exp", json_integer(op->now + rtt));
    json_object_set_new(rec, "kid", json_string(op->kid));
    json_object_set_new(rec, "generation",
                        json_integer(json_integer_value(json_object_get(rec, "generation")) + 1));
    rc = ts_family_put(t, op->fam, rec, old_exp, cfg->leeway);
  } else if (previous && strcmp(op->jti, previous) == 0 && op->now - rotated_at <= cfg->refresh_grace) {
    rc = 0; /* a concurrent retry: the same successor */
  } else {
    ts_log(TS_LOG_WARN, "refresh token reused; its family is revoked", "{s:s, s:s%, s:s}",
           "family", op->fam, "sub", json_string_value(sub), json_string_length(sub), "jti",
           op->jti);
    rc = ts_family_revoke_announced(t, op->fam, json_integer_value(json_object_get(rec, "exp")),
                                    cfg->leeway, &op->feed_last, &op->revoked);
    json_decref(rec);
    return rc ? rc : TS_EREUSED;
  }
  if (rc) {
    json_decref(rec);
    return rc;
  }
  op->rec = rec;
  return 0;
}

/* Announces the revocations once they are durable: only when the write committed (status 0, or
 * TS_EREUSED, whose family revocation commits with it). A failed write (TS_EUNAVAILABLE) was
 * rolled back, so the events its apply collected before failing never happened. */
static void publish(refresh_op *op, int status) {
  if (status == 0 || status == TS_EREUSED)
    ts_events_published(op->req->conn->server, op->feed_last);
}

static void done_refresh(ts_write *w, int status) {
  refresh_op *op = (refresh_op *)w;
  publish(op, status);
  if (status) ts_req_fail(op->req, status, NULL);
  else reply_pair(op->req, op->rec, op->fam);
  op_free(op);
}

static const ts_param refresh_params[] = {{"refresh_token", TS_P_CREDENTIAL, true, 0, 0}};

static void token_refresh(ts_req *r, const ts_param_value *v) {
  char kid[129];
  ts_domain *d = r->conn->server->domain;
  json_t *claims;
  int64_t now = (int64_t)time(NULL);
  /* A refresh token carries no aud: expect none whatever the default audience is. */
  int rc = ts_token_check(d, v[0].str, v[0].len, TS_TYP_REFRESH, "", now, &claims, kid);
  const char *fam = rc ? NULL : json_string_value(json_object_get(claims, "fam"));
  if (!rc && (!fam || strlen(fam) != TS_FAMILY_ID_CHARS)) rc = TS_EUNAUTHENTICATED;
  if (rc) {
    json_decref(claims);
    ts_req_fail(r, rc, NULL);
    return;
  }
  refresh_op *op = op_new(r, OP_REFRESH, apply_refresh, done_refresh);
  if (!op) {
    json_decref(claims);
    return;
  }
  snprintf(op->fam, sizeof(op->fam), "%s", fam);
  snprintf(op->jti, sizeof(op->jti), "%s", json_string_value(json_object_get(claims, "jti")));
  op->iat = json_integer_value(json_object_get(claims, "iat"));
  snprintf(op->kid, sizeof(op->kid), "%s", ts_keyring_active(d->keys.ring)->kid);
  json_decref(claims);
  ts_writer_submit(d->writer, &op->w);
}

/* ---- token.revoke ---------------------------------------------------------------------- */

static int apply_revoke(ts_txn *t, ts_write *w) {
  refresh_op *op = (refresh_op *)w;
  if (op->kind == OP_REVOKE_FAMILY)
    return ts_family_revoke_announced(t, op->fam, op->until, op->d->cfg->leeway, &op->feed_last,
                                      &op->revoked);
  if (op->proven) ts_store_reserve_all(t);
  int64_t until = op->until + op->d->cfg->leeway;
  int rc = ts_revoked_get(t, 'j', op->jti, strlen(op->jti), op->now);
  if (rc == 0) return 0; /* already revoked */
  rc = ts_revoked_put(t, 'j', op->jti, strlen(op->jti), until);
  if (rc == 0) {
    op->revoked = 1;
    rc = ts_feed_append(t, &op->feed_last, 'j', op->jti, strlen(op->jti), until, 0);
  }
  return rc;
}

static void done_revoke(ts_write *w, int status) {
  refresh_op *op = (refresh_op *)w;
  publish(op, status);
  ts_req_reply_count(op->req, status, "revoked", op->revoked);
  op_free(op);
}

/* {token}: a refresh token revokes its family, an access token its jti; anything that does
 * not verify (bad signature, other issuer, expired) revokes nothing and answers 0 (RFC 7009). */
static bool target_of_token(ts_domain *d, const ts_param_value *tok, refresh_op *op) {
  json_t *claims = NULL;
  int64_t now = (int64_t)time(NULL);
  bool refresh = ts_token_check_ours(d, tok->str, tok->len, TS_TYP_REFRESH, now, &claims) == 0;
  if (!refresh && ts_token_check_ours(d, tok->str, tok->len, TS_TYP_ACCESS, now, &claims) != 0)
    return false;
  const char *fam = json_string_value(json_object_get(claims, "fam"));
  const char *jti = json_string_value(json_object_get(claims, "jti"));
  op->until = json_integer_value(json_object_get(claims, "exp"));
  bool ok = true;
  if (refresh && fam && strlen(fam) == TS_FAMILY_ID_CHARS) {
    op->kind = OP_REVOKE_FAMILY;
    snprintf(op->fam, sizeof(op->fam), "%s", fam);
  } else if (!refresh && jti && strlen(jti) <= TS_JTI_CHARS + 2) {
    op->kind = OP_REVOKE_JTI;
    op->proven = true;
    snprintf(op->jti, sizeof(op->jti), "%s", jti);
  } else {
    ok = false;
  }
  json_decref(claims);
  return ok;
}

static const ts_param revoke_params[] = {
    {"token", TS_P_CREDENTIAL, false, 0, 0}, {"family", TS_P_STR, false, 1, 64},
    {"jti", TS_P_STR, false, 1, 64},      {"exp", TS_P_INT, false, 0, 0},
};

static const char *revoke_check(const ts_param_value *v) {
  int given = v[0].present + v[1].present + v[2].present;
  if (given != 1 || v[2].present != v[3].present)
    return "give one of {token}, {family} or {jti, exp}";
  return NULL;
}

static void token_revoke(ts_req *r, const ts_param_value *v) {
  ts_domain *d = r->conn->server->domain;
  refresh_op *op = op_new(r, OP_REVOKE_JTI, apply_revoke, done_revoke);
  if (!op) return;
  int64_t longest = ts_config_longest_ttl(d->cfg);
  bool ok = true;
  if (v[0].present) {
    ok = v[0].len <= 8192 && target_of_token(d, &v[0], op);
  } else if (v[1].present) {
    op->kind = OP_REVOKE_FAMILY;
    ok = ts_param_copy(&v[1], op->fam, sizeof(op->fam));
    op->until = op->now; /* the stored family's exp extends it */
  } else {
    ok = ts_param_copy(&v[2], op->jti, sizeof(op->jti));
    /* An exp beyond any token's life (up to INT64_MAX) is capped to now + the longest
     * lifetime: no token of ours lives longer. An exp whose token is already refused
     * (exp + leeway <= now) needs no entry. Compared on the capped value: no overflow. */
    op->until = v[3].i64 < op->now + longest ? v[3].i64 : op->now + longest;
    ok = ok && op->until > op->now - d->cfg->leeway;
  }
  if (!ok) {
    op_free(op);
    ts_req_reply_count(r, 0, "revoked", 0);
    return;
  }
  ts_writer_submit(d->writer, &op->w);
}

const ts_method ts_method_token_pair = {
    .name = "token.pair", .handler = token_pair, TS_PARAMS(pair_params)};
const ts_method ts_method_token_refresh = {
    .name = "token.refresh", .handler = token_refresh, TS_PARAMS(refresh_params)};
const ts_method ts_method_token_revoke = {
    .name = "token.revoke",
    .handler = token_revoke,
    TS_PARAMS(revoke_params),
    .check = revoke_check};
