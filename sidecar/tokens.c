/* sidecar/tokens.c: token.issue, token.verify, token.consume, session.exchange.
 *
 * Signing and verification run on the loop thread (Ed25519 sign ~25 us, verify ~67 us).
 * Consuming a single-use token is a write: the jti goes into the revocation list (until the
 * token's exp plus the leeway) inside the group commit, checked and set in the same
 * transaction, so two concurrent consumes of one token cannot both succeed. session.exchange
 * consumes the token and creates the session in that one transaction: either both happen or
 * neither. */
#include "tokens.h"

#include "dispatch.h"
#include "error.h"
#include "json.h"
#include "jws.h"
#include "keyring.h"
#include "log.h"
#include "params.h"
#include "revocations.h"
#include "rpc.h"
#include "sessions.h"
#include "writer.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const registered[] = {"iss", "sub", "aud", "exp", "nbf", "iat",
                                         "jti", "scope", "purpose", "fam"};

static ts_domain *domain_of(ts_req *r) { return r->conn->server->domain; }

int ts_token_sign(ts_domain *d, const ts_token_spec *s, char **token,
                  char jti[TS_JTI_CHARS + 1], int64_t *exp) {
  if (s->jti) {
    snprintf(jti, TS_JTI_CHARS + 1, "%s", s->jti);
  } else {
    uint8_t raw[16];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(jti, TS_JTI_CHARS + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  }
  *exp = s->now + s->ttl;
  json_t *c = s->extra ? json_deep_copy(s->extra) : json_object();
  if (!c) return TS_ENOMEM;
  int bad = json_object_set_new(c, "iss", json_string(d->cfg->issuer)) ||
            json_object_set_new(c, "sub", json_stringn(s->sub, s->sub_len)) ||
            json_object_set_new(c, "iat", json_integer(s->now)) ||
            json_object_set_new(c, "nbf", json_integer(s->now)) ||
            json_object_set_new(c, "exp", json_integer(*exp)) ||
            json_object_set_new(c, "jti", json_string(jti)) ||
            (s->aud && json_object_set(c, "aud", s->aud)) ||
            (s->scope && json_object_set_new(c, "scope", json_string(s->scope))) ||
            (s->purpose && json_object_set_new(c, "purpose", json_string(s->purpose))) ||
            (s->fam && json_object_set_new(c, "fam", json_string(s->fam)));
  int rc = bad ? TS_ENOMEM : 0;
  if (!rc) {
    const ts_key *k = s->kid ? ts_keyring_find(d->keys.ring, s->kid) : NULL;
    if (!k || !k->has_sk) k = ts_keyring_active(d->keys.ring);
    rc = ts_jws_sign(k->sk, k->kid, s->typ, c, token);
  }
  json_decref(c);
  return rc;
}

int ts_token_check(ts_domain *d, const char *tok, size_t len, const char *typ, const char *aud,
                   int64_t now, json_t **claims, char kid[129]) {
  *claims = NULL;
  if (len > TS_JWS_MAX_TOKEN) return TS_EUNAUTHENTICATED;
  int rc = ts_jws_verify(tok, len, ts_keyring_lookup, d->keys.ring, typ, claims, kid);
  if (rc) return TS_EUNAUTHENTICATED;
  const char *want_aud = aud ? aud : d->cfg->audience; /* "" : no audience expected */
  if (!want_aud[0]) want_aud = NULL;
  ts_claim_rules rules = {now, d->cfg->leeway, d->cfg->issuer, want_aud};
  rc = ts_jws_check_claims(*claims, &rules);
  if (rc == 0 && (!json_is_string(json_object_get(*claims, "sub")) ||
                  !json_is_string(json_object_get(*claims, "jti"))))
    rc = TS_EUNAUTHENTICATED;
  if (rc) {
    json_decref(*claims);
    *claims = NULL;
    return rc == TS_EEXPIRED ? TS_EEXPIRED : TS_EUNAUTHENTICATED;
  }
  return 0;
}

int ts_token_check_ours(ts_domain *d, const char *tok, size_t len, const char *typ, int64_t now,
                        json_t **claims) {
  char kid[129];
  *claims = NULL;
  if (len > TS_JWS_MAX_TOKEN ||
      ts_jws_verify(tok, len, ts_keyring_lookup, d->keys.ring, typ, claims, kid) != 0)
    return TS_EUNAUTHENTICATED;
  const json_t *aud = json_object_get(*claims, "aud");
  if (json_is_array(aud)) aud = json_array_get(aud, 0);
  ts_claim_rules rules = {now, d->cfg->leeway, d->cfg->issuer, json_string_value(aud)};
  int rc = ts_jws_check_claims(*claims, &rules);
  if (rc) {
    json_decref(*claims);
    *claims = NULL;
  }
  return rc == 0 ? 0 : rc == TS_EEXPIRED ? TS_EEXPIRED : TS_EUNAUTHENTICATED;
}

int ts_token_revocation_check(ts_txn *t, const json_t *claims, int64_t now) {
  const char *jti = json_string_value(json_object_get(claims, "jti"));
  const char *fam = json_string_value(json_object_get(claims, "fam"));
  const json_t *sub = json_object_get(claims, "sub");
  int rc = jti ? ts_revoked_get(t, 'j', jti, strlen(jti), now) : TS_ENOTFOUND;
  if (rc == TS_ENOTFOUND && fam) rc = ts_revoked_get(t, 'f', fam, strlen(fam), now);
  if (rc == TS_ENOTFOUND && json_is_string(sub)) {
    int64_t before;
    rc = ts_cutoff_get(t, json_string_value(sub), json_string_length(sub), now, &before);
    if (rc == 0 && json_integer_value(json_object_get(claims, "iat")) > before) rc = TS_ENOTFOUND;
  }
  if (rc == 0) return TS_EREVOKED;
  return rc == TS_ENOTFOUND ? 0 : rc;
}

/* ---- token.issue ---------------------------------------------------------------------- */

/* aud: a string of 1..256 bytes of valid UTF-8 without NUL, or a non-empty array of up to 16
 * of them. Checked here, before any conversion: a value that cannot become JSON must be
 * refused, never dropped (a token without its aud is accepted by more audiences). */
static bool aud_valid(const msgpack_object *o) {
  if (o->type == MSGPACK_OBJECT_STR)
    return o->via.str.size > 0 && o->via.str.size <= 256 && ts_param_str_clean(o);
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0 || o->via.array.size > 16)
    return false;
  for (uint32_t i = 0; i < o->via.array.size; i++)
    if (!aud_valid(&o->via.array.ptr[i]) || o->via.array.ptr[i].type != MSGPACK_OBJECT_STR)
      return false;
  return true;
}

/* The caller's claims as JSON, refusing registered names. Returns NULL after replying. */
static json_t *extra_claims(ts_req *r, const ts_param_value *v) {
  json_t *c = ts_mp_to_json(v->obj);
  if (!c) {
    ts_req_fail(r, TS_EBAD_REQUEST, "claims must hold only JSON values");
    return NULL;
  }
  for (size_t i = 0; i < sizeof(registered) / sizeof(registered[0]); i++) {
    if (json_object_get(c, registered[i])) {
      json_decref(c);
      ts_req_failf(r, TS_EBAD_REQUEST, "claims may not set the registered claim %s", registered[i]);
      return NULL;
    }
  }
  return c;
}

/* Parses aud/scope/claims shared by token.issue and token.pair into spec. false: replied. */
bool ts_token_parse_common(ts_req *r, const ts_param_value *aud, const ts_param_value *scope,
                           const ts_param_value *claims, ts_token_spec *spec, char *scope_buf,
                           size_t scope_cap) {
  if (aud->present) {
    if (!aud_valid(aud->obj)) {
      ts_req_fail(r, TS_EBAD_REQUEST,
                  "aud must be a string or an array of 1..16 strings (1..256 bytes of UTF-8)");
      return false;
    }
    spec->aud = ts_mp_to_json(aud->obj);
    if (!spec->aud) { /* allocation failure: never go on without the audience */
      ts_req_fail(r, TS_ENOMEM, NULL);
      return false;
    }
  }
  if (scope->present) {
    ts_param_copy(scope, scope_buf, scope_cap);
    spec->scope = scope_buf;
  }
  if (claims->present && !(spec->extra = extra_claims(r, claims))) {
    json_decref(spec->aud);
    return false;
  }
  return true;
}

static void pack_token_reply(ts_req *r, const char *token, const char *jti, int64_t exp,
                             int64_t now) {
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 4);
  ts_pack_cstr(pk, "token");
  ts_pack_cstr(pk, token);
  ts_pack_cstr(pk, "jti");
  ts_pack_cstr(pk, jti);
  ts_pack_cstr(pk, "expires_at");
  msgpack_pack_int64(pk, exp);
  ts_pack_cstr(pk, "expires_in");
  msgpack_pack_int64(pk, exp - now);
  ts_req_send(r);
}

void ts_token_issue(ts_req *r, const msgpack_object *params) {
  static const ts_param spec[] = {
      {"sub", TS_P_STR, true, 1, 256},      {"ttl", TS_P_DURATION, false, 0, 0},
      {"aud", TS_P_ANY, false, 0, 0},       {"scope", TS_P_STR, false, 1, 1024},
      {"claims", TS_P_MAP, false, 0, 4096}, {"purpose", TS_P_STR, false, 1, 64},
  };
  ts_param_value v[6];
  char why[160], scope[1025], purpose[65];
  if (ts_params_parse(params, spec, 6, v, why, sizeof(why)) != 0) {
    ts_req_fail(r, TS_EBAD_REQUEST, why);
    return;
  }
  ts_domain *d = domain_of(r);
  bool is_purpose = v[5].present;
  int64_t def = is_purpose ? d->cfg->purpose_ttl : d->cfg->access_ttl;
  int64_t max = is_purpose ? d->cfg->max_purpose_ttl : d->cfg->max_access_ttl;
  ts_token_spec ts = {.typ = is_purpose ? TS_TYP_PURPOSE : TS_TYP_ACCESS, .sub = v[0].str,
                      .sub_len = v[0].len, .now = (int64_t)time(NULL),
                      .ttl = v[1].present ? v[1].i64 : def};
  if (ts.ttl > max) {
    ts_req_failf(r, TS_EBAD_REQUEST, "ttl must be 1..%lld seconds", (long long)max);
    return;
  }
  if (is_purpose && v[2].present) { /* consume and exchange expect no audience */
    ts_req_fail(r, TS_EBAD_REQUEST, "a purpose token carries no aud");
    return;
  }
  if (!ts_token_parse_common(r, &v[2], &v[3], &v[4], &ts, scope, sizeof(scope))) return;
  if (is_purpose) {
    ts_param_copy(&v[5], purpose, sizeof(purpose));
    ts.purpose = purpose;
  }
  char *token = NULL, jti[TS_JTI_CHARS + 1];
  int64_t exp;
  int rc = ts_token_sign(d, &ts, &token, jti, &exp);
  json_decref(ts.aud);
  json_decref(ts.extra);
  if (rc == TS_EBAD_REQUEST) ts_req_fail(r, rc, "claims that cannot be signed (over 8 KiB, or a NUL)");
  else if (rc) ts_req_fail(r, rc, NULL);
  else pack_token_reply(r, token, jti, exp, ts.now);
  free(token);
}

/* ---- token.verify --------------------------------------------------------------------- */

/* The expected purpose, checked after the signature. */
static int purpose_matches(const json_t *claims, const ts_param_value *purpose) {
  const json_t *p = json_object_get(claims, "purpose");
  return json_is_string(p) && json_string_length(p) == purpose->len &&
         memcmp(json_string_value(p), purpose->str, purpose->len) == 0;
}

static void pack_claims_reply(ts_req *r, const json_t *claims, const char *kid) {
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, kid ? 2 : 1);
  ts_pack_cstr(pk, "claims");
  ts_json_pack(pk, claims);
  if (kid) {
    ts_pack_cstr(pk, "kid");
    ts_pack_cstr(pk, kid);
  }
  ts_req_send(r);
}

/* Verifies the token param as an access token or, with purpose, a purpose token. */
static int check_presented(ts_req *r, const ts_param_value *tok, const ts_param_value *aud,
                           const ts_param_value *purpose, json_t **claims, char kid[129]) {
  char audbuf[257];
  if (aud && aud->present) ts_param_copy(aud, audbuf, sizeof(audbuf));
  /* Purpose tokens carry no aud, whatever the default audience is. */
  const char *want = aud && aud->present ? audbuf : purpose->present ? "" : NULL;
  int rc = ts_token_check(domain_of(r), tok->str, tok->len,
                          purpose->present ? TS_TYP_PURPOSE : TS_TYP_ACCESS, want,
                          (int64_t)time(NULL), claims, kid);
  if (rc == 0 && purpose->present && !purpose_matches(*claims, purpose)) {
    json_decref(*claims);
    *claims = NULL;
    rc = TS_EUNAUTHENTICATED;
  }
  return rc;
}

void ts_token_verify(ts_req *r, const msgpack_object *params) {
  static const ts_param spec[] = {
      {"token", TS_P_CREDENTIAL, true, 0, 0}, {"aud", TS_P_STR, false, 1, 256},
      {"purpose", TS_P_STR, false, 1, 64}, {"check_revoked", TS_P_BOOL, false, 0, 0},
  };
  ts_param_value v[4];
  char why[160], kid[129];
  if (ts_params_parse(params, spec, 4, v, why, sizeof(why)) != 0) {
    ts_req_fail(r, TS_EBAD_REQUEST, why);
    return;
  }
  json_t *claims;
  int rc = check_presented(r, &v[0], &v[1], &v[2], &claims, kid);
  if (rc == 0 && (v[3].b || v[2].present)) { /* a used purpose token is revoked too */
    ts_txn *t;
    rc = ts_store_read(domain_of(r)->store, &t);
    if (rc == 0) {
      rc = ts_token_revocation_check(t, claims, (int64_t)time(NULL));
      ts_store_abort(t);
    }
    if (rc && rc != TS_EREVOKED) rc = TS_EUNAVAILABLE;
  }
  if (rc) ts_req_fail(r, rc, NULL);
  else pack_claims_reply(r, claims, kid);
  json_decref(claims);
}

/* ---- token.consume and session.exchange ------------------------------------------------- */

typedef struct consume_op {
  ts_write w;
  ts_req *req;
  json_t *claims;
  char jti[TS_JTI_CHARS + 8];
  int64_t until;
  int64_t now;
  bool exchange;
  ts_session_new session; /* exchange: the session to create */
} consume_op;

static int apply_consume(ts_txn *t, ts_write *w) {
  consume_op *op = (consume_op *)w;
  int rc = ts_token_revocation_check(t, op->claims, op->now);
  if (rc) return rc;
  ts_store_reserve_all(t); /* the token verified: its use must be recorded */
  rc = ts_revoked_put(t, 'j', op->jti, strlen(op->jti), op->until);
  if (rc == 0 && op->exchange) rc = ts_session_put_new(t, &op->session);
  return rc;
}

static void done_consume(ts_write *w, int status) {
  consume_op *op = (consume_op *)w;
  if (status) ts_req_fail(op->req, status, NULL);
  else if (op->exchange)
    ts_session_pack_issued(op->req, op->session.sid, op->session.handle, op->session.expires_at,
                           op->session.idle_expires_at);
  else pack_claims_reply(op->req, op->claims, NULL);
  json_decref(op->claims);
  ts_session_new_wipe(&op->session);
  free(op);
}

static void start_consume(ts_req *r, const msgpack_object *params, bool exchange) {
  static const ts_param spec[] = {
      {"token", TS_P_CREDENTIAL, true, 0, 0},
      {"purpose", TS_P_STR, true, 1, 64},
  };
  ts_param_value v[2];
  char why[160], kid[129];
  if (ts_params_parse(params, spec, 2, v, why, sizeof(why)) != 0) {
    ts_req_fail(r, TS_EBAD_REQUEST, why);
    return;
  }
  json_t *claims;
  int rc = check_presented(r, &v[0], NULL, &v[1], &claims, kid);
  if (rc) {
    ts_req_fail(r, rc, NULL);
    return;
  }
  ts_domain *d = domain_of(r);
  consume_op *op = calloc(1, sizeof(*op));
  if (!op) {
    json_decref(claims);
    ts_req_fail(r, TS_ENOMEM, NULL);
    return;
  }
  op->w.apply = apply_consume;
  op->w.done = done_consume;
  op->req = r;
  op->claims = claims;
  op->exchange = exchange;
  op->now = (int64_t)time(NULL);
  snprintf(op->jti, sizeof(op->jti), "%s", json_string_value(json_object_get(claims, "jti")));
  op->until = json_integer_value(json_object_get(claims, "exp")) + d->cfg->leeway;
  if (exchange) {
    const json_t *sub = json_object_get(claims, "sub");
    rc = ts_session_prepare(&op->session, json_string_value(sub), json_string_length(sub),
                            op->now, d->cfg->session_ttl, d->cfg->session_idle_ttl, NULL, NULL,
                            NULL);
    if (rc || json_string_length(sub) > 256) {
      done_consume(&op->w, rc ? rc : TS_EUNAUTHENTICATED);
      return;
    }
  }
  ts_writer_submit(d->writer, &op->w);
}

void ts_token_consume(ts_req *r, const msgpack_object *params) { start_consume(r, params, false); }
void ts_session_exchange(ts_req *r, const msgpack_object *params) { start_consume(r, params, true); }
