/* sidecar/tokens/tokens.c: JWTs as the daemon makes and checks them (see tokens.h): signing,
 * verification with the registered claims, the revocation list's verdict, and the aud /
 * scope / claims params token.issue and token.pair share. The methods are methods/tokens.c
 * and methods/refresh.c.
 *
 * Signing and verification run on the loop thread (Ed25519 sign ~15 us, verify ~42 us); the
 * revocation check runs in whatever transaction the caller holds (a read on the loop, or the
 * writer's, where it is checked and set in one commit).
 *
 * The claims of a token without caller claims (every access, refresh and purpose token unless
 * token.issue got `claims`) are written member by member into a stack buffer, in the order and
 * with the escaping jansson's compact dump gives, so the bytes are those of the generic path
 * (which a token with caller claims still takes: a jansson object, dumped, parsed again to
 * prove it verifies). Signing stays on the loop thread (issue 11, item 2): a profile of
 * token.issue/verify at 50 x 16 puts 68% / 89% of the daemon's CPU inside libsodium, and on
 * the 2-core target the load generator holds the other core, so a worker per core beyond the
 * first adds no capacity there, only a hand-off per token; the per-turn budget (conn.c)
 * already keeps latency fair while signatures run. */
#include "tokens.h"

#include "error.h"
#include "json.h"
#include "jws.h"
#include "keyring.h"
#include "log.h"
#include "params.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const registered[] = {"iss", "sub", "aud", "exp", "nbf", "iat",
                                         "jti", "scope", "purpose", "fam"};

#define CLAIMS_FAST_MAX 4096 /* bytes of claims written by hand; longer ones take jansson */

typedef struct jw {
  char *p;
  size_t n, cap;
  bool bad; /* no room, a NUL, or invalid UTF-8: the generic path is taken */
} jw;

static void jw_raw(jw *w, const char *s, size_t n) {
  if (w->bad || n > w->cap - w->n) {
    w->bad = true;
    return;
  }
  memcpy(w->p + w->n, s, n);
  w->n += n;
}

/* ,"name": (the first member without the comma) */
static void jw_name(jw *w, const char *name) {
  char b[32];
  size_t n = strlen(name);
  b[0] = w->n > 1 ? ',' : ' ';
  b[1] = '"';
  memcpy(b + 2, name, n);
  b[2 + n] = '"';
  b[3 + n] = ':';
  if (w->n > 1) jw_raw(w, b, n + 4);
  else jw_raw(w, b + 1, n + 3);
}

static void jw_str(jw *w, const char *s, size_t n) {
  if (w->bad || 6 * n + 2 > w->cap - w->n || !ts_utf8_valid(s, n)) {
    w->bad = true;
    return;
  }
  size_t k = ts_jws_json_str(w->p + w->n, s, n);
  if (!k) w->bad = true;
  w->n += k;
}

static void jw_int(jw *w, int64_t v) {
  char b[24], *e = b + sizeof(b), *q = e;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do *--q = (char)('0' + u % 10);
  while ((u /= 10) > 0);
  if (v < 0) *--q = '-';
  jw_raw(w, q, (size_t)(e - q));
}

static void jw_json_str(jw *w, const json_t *v) {
  if (!json_is_string(v)) w->bad = true;
  else jw_str(w, json_string_value(v), json_string_length(v));
}

/* The claims of s as the generic path would dump them (iss, sub, iat, nbf, exp, jti, aud,
 * scope, purpose, fam). Returns the length, or 0 when s has caller claims or anything the
 * generic path must judge. */
static size_t claims_fast(const ts_domain *d, const ts_token_spec *s, const char *jti,
                          int64_t exp, char *out, size_t cap) {
  if (s->extra) return 0;
  jw w = {out, 0, cap, false};
  jw_raw(&w, "{", 1);
  jw_name(&w, "iss");
  jw_str(&w, d->cfg->issuer, strlen(d->cfg->issuer));
  jw_name(&w, "sub");
  jw_str(&w, s->sub, s->sub_len);
  jw_name(&w, "iat");
  jw_int(&w, s->now);
  jw_name(&w, "nbf");
  jw_int(&w, s->now);
  jw_name(&w, "exp");
  jw_int(&w, exp);
  jw_name(&w, "jti");
  jw_str(&w, jti, strlen(jti));
  if (s->aud) {
    jw_name(&w, "aud");
    if (json_is_array(s->aud)) {
      size_t i;
      const json_t *v;
      jw_raw(&w, "[", 1);
      json_array_foreach(s->aud, i, v) {
        if (i) jw_raw(&w, ",", 1);
        jw_json_str(&w, v);
      }
      jw_raw(&w, "]", 1);
    } else {
      jw_json_str(&w, s->aud);
    }
  }
  if (s->scope) {
    jw_name(&w, "scope");
    jw_str(&w, s->scope, strlen(s->scope));
  }
  if (s->purpose) {
    jw_name(&w, "purpose");
    jw_str(&w, s->purpose, strlen(s->purpose));
  }
  if (s->fam) {
    jw_name(&w, "fam");
    jw_str(&w, s->fam, strlen(s->fam));
  }
  jw_raw(&w, "}", 1);
  return w.bad ? 0 : w.n;
}

/* 16 random bytes for a jti, from a pool refilled 64 jtis at a time: one getrandom(2) per
 * token was 2-3% of token.issue's CPU. A jti names a token (it is in the token, and public); the
 * pool's bytes are used once each and wiped as they are taken. */
static void jti_random(uint8_t out[16]) {
  static _Thread_local uint8_t pool[16 * 64];
  static _Thread_local size_t left;
  if (left == 0) {
    randombytes_buf(pool, sizeof(pool));
    left = sizeof(pool);
  }
  left -= 16;
  memcpy(out, pool + left, 16);
  sodium_memzero(pool + left, 16);
}

int ts_token_sign(ts_domain *d, const ts_token_spec *s, char **token,
                  char jti[TS_JTI_CHARS + 1], int64_t *exp) {
  if (s->jti) {
    snprintf(jti, TS_JTI_CHARS + 1, "%s", s->jti);
  } else {
    uint8_t raw[16];
    jti_random(raw);
    sodium_bin2base64(jti, TS_JTI_CHARS + 1, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  }
  *exp = s->now + s->ttl;
  const ts_key *k = s->kid ? ts_keyring_find(d->keys.ring, s->kid) : NULL;
  if (!k || !k->has_sk) k = ts_keyring_active(d->keys.ring);
  char fast[CLAIMS_FAST_MAX];
  size_t fast_len = claims_fast(d, s, jti, *exp, fast, sizeof(fast));
  if (fast_len) return ts_jws_sign_payload(k->sk, k->kid, s->typ, fast, fast_len, token);
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
  if (!rc) rc = ts_jws_sign(k->sk, k->kid, s->typ, c, token);
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

ts_claims_ref ts_token_claims_ref(const json_t *claims) {
  const json_t *sub = json_object_get(claims, "sub");
  return (ts_claims_ref){
      .jti = json_string_value(json_object_get(claims, "jti")),
      .fam = json_string_value(json_object_get(claims, "fam")),
      .sub = json_string_value(sub),
      .sub_len = json_string_length(sub),
      .iat = json_integer_value(json_object_get(claims, "iat")),
  };
}

/* ---- params shared by token.issue and token.pair --------------------------------------- */

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

