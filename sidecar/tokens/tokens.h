/* sidecar/tokens/tokens.h: JWTs (PROTOCOL.md "tokens"): signing and checking them, shared by
 * the token methods (methods/tokens.c) and the refresh flow (methods/refresh.c). */
#ifndef TS_TOKENS_H
#define TS_TOKENS_H

#include "domain.h"
#include "params.h"
#include "server.h"
#include "backend.h"

#include <jansson.h>

#define TS_JTI_CHARS 22 /* 16 random bytes, base64url */

#define TS_TYP_ACCESS "at+jwt"
#define TS_TYP_REFRESH "rt+jwt"
#define TS_TYP_PURPOSE "pt+jwt"

/* What to put in a token besides iss/sub/iat/nbf/exp/jti. */
typedef struct ts_token_spec {
  const char *typ;
  const char *sub; size_t sub_len;
  int64_t now, ttl;
  json_t *aud;          /* string or array, or NULL (borrowed) */
  const char *scope;    /* or NULL */
  const char *purpose;  /* or NULL */
  const char *fam;      /* refresh family id, or NULL */
  json_t *extra;        /* the caller's claims object, or NULL (borrowed) */
  const char *jti;      /* NULL: a new random jti */
  const char *kid;      /* NULL: the active key; else that key (it must still be held) */
} ts_token_spec;

/* Signs with the active key (or spec->kid). With jti, kid and now given, signing is
 * deterministic (Ed25519 is): the same spec gives the same token, byte for byte. *token is malloc'd (caller frees); jti receives the new jti. */
int ts_token_sign(ts_domain *d, const ts_token_spec *s, char **token,
                  char jti[TS_JTI_CHARS + 1], int64_t *exp);

/* Verifies signature, typ and the registered claims (iss, aud, exp, nbf with the leeway).
 * aud NULL: the configured default audience; "": none expected. Returns 0 with *claims (new reference), or
 * TS_EUNAUTHENTICATED / TS_EEXPIRED. */
int ts_token_check(ts_domain *d, const char *tok, size_t len, const char *typ, const char *aud,
                   int64_t now, json_t **claims, char kid[129]);

/* Like ts_token_check but for any audience (revocation needs only "ours and alive"). */
int ts_token_check_ours(ts_domain *d, const char *tok, size_t len, const char *typ, int64_t now,
                        json_t **claims);

/* What the revocation list is asked about verified claims (jti, fam, sub and iat for the
 * sub's cut-off): the backend's revocation_check and consume take it. Points into claims. */
ts_claims_ref ts_token_claims_ref(const json_t *claims);

/* Parses the aud / scope / claims params shared by token.issue and token.pair into spec
 * (spec->aud and spec->extra become new references the caller releases). false: already
 * replied bad_request. */
bool ts_token_parse_common(ts_req *r, const ts_param_value *aud, const ts_param_value *scope,
                           const ts_param_value *claims, ts_token_spec *spec, char *scope_buf,
                           size_t scope_cap);


#endif
