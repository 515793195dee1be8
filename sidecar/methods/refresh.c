/* sidecar/methods/refresh.c: token.pair, token.refresh and token.revoke: refresh-token
 * families with rotation and reuse detection (RFC 9700 4.14) and token revocation (RFC 7009).
 *
 * Rotation is a check-and-swap the backend does atomically (family_refresh, store/backend.h):
 * the presented refresh jti is compared with the family's `current`; if equal, fresh jtis made
 * here become current and the presented one becomes `previous`. Two concurrent refreshes of
 * one token cannot both rotate, on one sidecar or several sharing a store: the second finds
 * its jti in `previous` and, within --refresh-grace of the rotation, gets the same record back,
 * so the same successor (signed again from the stored jtis, times and kid: Ed25519 signatures
 * are deterministic, so the pair is byte-identical). Any older jti, or `previous` after the
 * grace window, is reuse: the backend revokes the family in that same write and the answer is
 * `reused`; the newest token of the family then answers `revoked`. Signing happens here, on
 * the loop thread, after the write (the keyring is the loop thread's); the backend only
 * decides.
 *
 * user.revoke, which revokes every family of a sub, is methods/users.c. */
#include "method.h"

#include "backend.h"
#include "domain.h"
#include "error.h"
#include "json.h"
#include "keyring.h"
#include "log.h"
#include "rpc.h"
#include "tokens.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void random_id(char out[TS_JTI_CHARS + 1]) {
  uint8_t raw[16];
  randombytes_buf(raw, sizeof(raw));
  sodium_bin2base64(out, TS_JTI_CHARS + 1, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static ts_backend *backend_of(ts_req *r) { return r->conn->server->domain->backend; }

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

/* A family's reply: the pair signed from its record (the backend names it in "id"). */
static void on_family(void *ctx, int status, json_t *rec) {
  ts_req *r = ctx;
  if (status) ts_req_fail(r, status, NULL);
  else reply_pair(r, rec, json_string_value(json_object_get(rec, "id")));
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
  int64_t now = (int64_t)time(NULL);
  char fam[TS_JTI_CHARS + 1], current[TS_JTI_CHARS + 1], access[TS_JTI_CHARS + 1];
  random_id(fam);
  random_id(current);
  random_id(access);
  ts_domain *d = r->conn->server->domain;
  int64_t rexp = now + (rtt < cfg->refresh_max_lifetime ? rtt : cfg->refresh_max_lifetime);
  json_t *rec = json_pack("{s:s%, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I}",
                          "sub", v[0].str, v[0].len, "access_ttl", (json_int_t)att,
                          "refresh_ttl", (json_int_t)rtt, "kid",
                          ts_keyring_active(d->keys.ring)->kid, "current", current, "access",
                          access, "previous", "", "rotated_at", (json_int_t)now, "exp",
                          (json_int_t)rexp, "generation", (json_int_t)1, "created_at",
                          (json_int_t)now);
  if (rec && ts.aud) json_object_set_new(rec, "aud", ts.aud), ts.aud = NULL;
  if (rec && ts.scope) json_object_set_new(rec, "scope", json_string(ts.scope));
  if (rec && ts.extra) json_object_set_new(rec, "claims", ts.extra), ts.extra = NULL;
  json_decref(ts.aud);
  json_decref(ts.extra);
  if (!rec) {
    ts_req_fail(r, TS_ENOMEM, NULL);
    return;
  }
  backend_of(r)->ops->family_create(backend_of(r), fam, rec, cfg->leeway, on_family, r);
  json_decref(rec);
}

/* ---- token.refresh --------------------------------------------------------------------- */

/* What a refresh's completion logs when the token was reused (ids, never the token). */
typedef struct refresh_ctx {
  ts_req *req;
  char fam[TS_FAMILY_ID_CHARS + 1];
  char jti[TS_JTI_CHARS + 1];
  char sub[257];
} refresh_ctx;

static void on_refreshed(void *ctx, int status, json_t *rec) {
  refresh_ctx *rc = ctx;
  if (status == TS_EREUSED)
    ts_log(TS_LOG_WARN, "refresh token reused; its family is revoked", "{s:s, s:s, s:s}",
           "family", rc->fam, "sub", rc->sub, "jti", rc->jti);
  on_family(rc->req, status, rec);
  free(rc);
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
  const json_t *sub = json_object_get(claims, "sub");
  char next[TS_JTI_CHARS + 1], access[TS_JTI_CHARS + 1];
  random_id(next);
  random_id(access);
  ts_refresh_in in = {
      .fam = fam,
      .jti = json_string_value(json_object_get(claims, "jti")),
      .sub = json_string_value(sub),
      .sub_len = json_string_length(sub),
      .iat = json_integer_value(json_object_get(claims, "iat")),
      .now = now,
      .kid = ts_keyring_active(d->keys.ring)->kid,
      .next_jti = next,
      .next_access = access,
      .grace = d->cfg->refresh_grace,
      .max_lifetime = d->cfg->refresh_max_lifetime,
      .leeway = d->cfg->leeway,
  };
  refresh_ctx *ctx = in.jti && in.sub ? calloc(1, sizeof(*ctx)) : NULL;
  if (!ctx) {
    json_decref(claims);
    ts_req_fail(r, in.jti && in.sub ? TS_ENOMEM : TS_EUNAUTHENTICATED, NULL);
    return;
  }
  ctx->req = r;
  snprintf(ctx->fam, sizeof(ctx->fam), "%s", fam);
  snprintf(ctx->jti, sizeof(ctx->jti), "%s", in.jti);
  snprintf(ctx->sub, sizeof(ctx->sub), "%s", in.sub);
  backend_of(r)->ops->family_refresh(backend_of(r), &in, on_refreshed, ctx);
  json_decref(claims);
}

/* ---- token.revoke ---------------------------------------------------------------------- */

static void on_revoked(void *ctx, int status, unsigned n) {
  ts_req_reply_count(ctx, status, "revoked", n);
}

/* What token.revoke names: a family, or a jti (until: the exp, before the leeway). */
typedef struct revoke_target {
  bool family, proven;
  char id[TS_JTI_CHARS + 8];
  int64_t until;
} revoke_target;

/* {token}: a refresh token revokes its family, an access token its jti; anything that does
 * not verify (bad signature, other issuer, expired) revokes nothing and answers 0 (RFC 7009). */
static bool target_of_token(ts_domain *d, const ts_param_value *tok, revoke_target *op) {
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
    op->family = true;
    snprintf(op->id, sizeof(op->id), "%s", fam);
  } else if (!refresh && jti && strlen(jti) <= TS_JTI_CHARS + 2) {
    op->proven = true;
    snprintf(op->id, sizeof(op->id), "%s", jti);
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
  ts_backend *b = d->backend;
  revoke_target op = {0};
  int64_t now = (int64_t)time(NULL), longest = ts_config_longest_ttl(d->cfg);
  bool ok = true;
  if (v[0].present) {
    ok = v[0].len <= 8192 && target_of_token(d, &v[0], &op);
  } else if (v[1].present) {
    op.family = true;
    ok = ts_param_copy(&v[1], op.id, sizeof(op.id));
    op.until = now; /* the stored family's exp extends it */
  } else {
    ok = ts_param_copy(&v[2], op.id, sizeof(op.id));
    /* An exp beyond any token's life (up to INT64_MAX) is capped to now + the longest
     * lifetime: no token of ours lives longer. An exp whose token is already refused
     * (exp + leeway <= now) needs no entry. Compared on the capped value: no overflow. */
    op.until = v[3].i64 < now + longest ? v[3].i64 : now + longest;
    ok = ok && op.until > now - d->cfg->leeway;
  }
  if (!ok)
    ts_req_reply_count(r, 0, "revoked", 0);
  else if (op.family)
    b->ops->family_revoke(b, op.id, op.until, d->cfg->leeway, on_revoked, r);
  else
    b->ops->revoke_jti(b, op.id, op.until + d->cfg->leeway, op.proven, on_revoked, r);
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
