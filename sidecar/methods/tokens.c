/* sidecar/methods/tokens.c: token.issue, token.verify, token.consume, session.exchange.
 *
 * Signing and verification run on the loop thread (tokens/tokens.c). Consuming a single-use
 * token is a write: the jti goes into the revocation list (until the token's exp plus the
 * leeway) inside the group commit, checked and set in the same transaction, so two
 * concurrent consumes of one token cannot both succeed. session.exchange consumes the token
 * and creates the session in that one transaction: either both happen or neither; its row is
 * here because it is a consume. */
#include "method.h"

#include "backend.h"
#include "domain.h"
#include "error.h"
#include "json.h"
#include "rpc.h"
#include "sessions.h"
#include "tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static ts_domain *domain_of(ts_req *r) { return r->conn->server->domain; }

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

static const ts_param issue_params[] = {
    {"sub", TS_P_STR, true, 1, 256},      {"ttl", TS_P_DURATION, false, 0, 0},
    {"aud", TS_P_ANY, false, 0, 0},       {"scope", TS_P_STR, false, 1, 1024},
    {"claims", TS_P_MAP, false, 0, 4096}, {"purpose", TS_P_STR, false, 1, 64},
};

static void token_issue(ts_req *r, const ts_param_value *v) {
  char scope[1025], purpose[65];
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

static const ts_param verify_params[] = {
    {"token", TS_P_CREDENTIAL, true, 0, 0}, {"aud", TS_P_STR, false, 1, 256},
    {"purpose", TS_P_STR, false, 1, 64}, {"check_revoked", TS_P_BOOL, false, 0, 0},
};

/* What a verify or consume completion replies with. */
typedef struct claims_ctx {
  ts_req *req;
  json_t *claims;
  char kid[129];
  bool exchange;
  ts_session_new session; /* exchange: the session to create (rec NULL otherwise) */
} claims_ctx;

static void claims_ctx_free(claims_ctx *cc) {
  json_decref(cc->claims);
  ts_session_new_wipe(&cc->session);
  free(cc);
}

/* A context owning claims, or NULL after replying no_memory (claims released). */
static claims_ctx *claims_ctx_new(ts_req *r, json_t *claims) {
  claims_ctx *cc = calloc(1, sizeof(*cc));
  if (!cc) {
    json_decref(claims);
    ts_req_fail(r, TS_ENOMEM, NULL);
    return NULL;
  }
  cc->req = r;
  cc->claims = claims;
  return cc;
}

static void on_checked(void *ctx, int status) {
  claims_ctx *cc = ctx;
  if (status && status != TS_EREVOKED) status = TS_EUNAVAILABLE;
  if (status) ts_req_fail(cc->req, status, NULL);
  else pack_claims_reply(cc->req, cc->claims, cc->kid);
  claims_ctx_free(cc);
}

static void token_verify(ts_req *r, const ts_param_value *v) {
  char kid[129];
  json_t *claims;
  int rc = check_presented(r, &v[0], &v[1], &v[2], &claims, kid);
  if (rc || !(v[3].b || v[2].present)) { /* a used purpose token is revoked too */
    if (rc) ts_req_fail(r, rc, NULL);
    else pack_claims_reply(r, claims, kid);
    json_decref(claims);
    return;
  }
  claims_ctx *cc = claims_ctx_new(r, claims);
  if (!cc) return;
  snprintf(cc->kid, sizeof(cc->kid), "%s", kid);
  ts_backend *b = domain_of(r)->backend;
  ts_claims_ref ref = ts_token_claims_ref(claims);
  b->ops->revocation_check(b, &ref, (int64_t)time(NULL), on_checked, cc);
}

/* ---- token.consume and session.exchange ------------------------------------------------- */

static void on_consumed(void *ctx, int status) {
  claims_ctx *cc = ctx;
  if (status) ts_req_fail(cc->req, status, NULL);
  else if (cc->exchange)
    ts_session_pack_issued(cc->req, cc->session.sid, cc->session.handle, cc->session.expires_at,
                           cc->session.idle_expires_at);
  else pack_claims_reply(cc->req, cc->claims, NULL);
  claims_ctx_free(cc);
}

static const ts_param consume_params[] = {
    {"token", TS_P_CREDENTIAL, true, 0, 0},
    {"purpose", TS_P_STR, true, 1, 64},
};

static void start_consume(ts_req *r, const ts_param_value *v, bool exchange) {
  char kid[129];
  json_t *claims;
  int rc = check_presented(r, &v[0], NULL, &v[1], &claims, kid);
  if (rc) {
    ts_req_fail(r, rc, NULL);
    return;
  }
  ts_domain *d = domain_of(r);
  claims_ctx *cc = claims_ctx_new(r, claims);
  if (!cc) return;
  cc->exchange = exchange;
  int64_t now = (int64_t)time(NULL);
  int64_t until = json_integer_value(json_object_get(claims, "exp")) + d->cfg->leeway;
  ts_claims_ref ref = ts_token_claims_ref(claims);
  if (exchange) {
    rc = ref.sub_len > 256 ? TS_EUNAUTHENTICATED
                           : ts_session_prepare(&cc->session, ref.sub, ref.sub_len, now,
                                                d->cfg->session_ttl, d->cfg->session_idle_ttl,
                                                NULL, NULL, NULL);
    if (rc) {
      on_consumed(cc, rc);
      return;
    }
  }
  d->backend->ops->consume(d->backend, &ref, until, now, exchange ? &cc->session : NULL,
                           on_consumed, cc);
}

static void token_consume(ts_req *r, const ts_param_value *v) { start_consume(r, v, false); }
static void session_exchange(ts_req *r, const ts_param_value *v) { start_consume(r, v, true); }

const ts_method ts_method_token_issue = {
    .name = "token.issue", .handler = token_issue, TS_PARAMS(issue_params)};
const ts_method ts_method_token_verify = {
    .name = "token.verify", .handler = token_verify, TS_PARAMS(verify_params)};
const ts_method ts_method_token_consume = {
    .name = "token.consume", .handler = token_consume, TS_PARAMS(consume_params)};
const ts_method ts_method_session_exchange = {
    .name = "session.exchange", .handler = session_exchange, TS_PARAMS(consume_params)};
