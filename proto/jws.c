/* proto/jws.c: compact JWS with Ed25519, and JWT claim checks. See jws.h.
 *
 * Design. A token is three base64url segments: header, payload, signature. Verification
 * works from the outside in and trusts nothing it has not checked yet:
 *   1. the length (<= 8 KiB) before anything is parsed or allocated;
 *   2. the shape: exactly two dots, each segment canonical base64url (libsodium decodes it;
 *      we re-encode the result and compare, so there is exactly one accepted spelling of
 *      every token: padding, '+', '/', whitespace and stray trailing bits all fail);
 *   3. the header (jansson, duplicate members refused, UTF-8 checked by jansson's lexer):
 *      alg from a fixed set, the expected typ, a sane kid, and none of the members that carry
 *      or point at a key (jku, x5u, jwk, x5c) or demand extensions (crit);
 *   4. the signature, with the key found by kid; libsodium refuses S >= L, small-order
 *      public keys and non-canonical R;
 *   5. only then the payload JSON, which must be an object.
 * Every failure is the same TS_EUNAUTHENTICATED: the caller learns nothing about which step
 * refused. Claim checks (exp, nbf, iat, iss, aud) are a separate function because token.revoke
 * must read tokens whose time has passed.
 *
 * Time: a token is valid while nbf - leeway <= now < exp + leeway (RFC 7519 4.1.4: "on or
 * after" exp it is refused) and iat <= now + leeway. The daemon and libtessera's local
 * verifier both call ts_jws_check_claims, so they agree to the second.
 *
 * Signing builds the header with jansson (member order alg, typ, kid; jansson keeps insertion
 * order) and serializes header and claims with JSON_COMPACT. ts_jws_sign_payload writes the
 * same header bytes by hand (ts_jws_json_str escapes as jansson does) for callers that
 * serialize their claims themselves, so the token daemon's hot path makes no JSON round trip.
 * Nothing here holds secret bytes except the caller's sk, which is only read. */
#include "jws.h"

#include "error.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

/* ------------------------------------------------------------------ base64url */

size_t ts_jws_b64_len(size_t bin_len) {
  return sodium_base64_encoded_len(bin_len, B64_VARIANT) - 1;
}

int ts_jws_b64_encode_to(char *out, const void *bin, size_t len) {
  sodium_bin2base64(out, ts_jws_b64_len(len) + 1, bin, len, B64_VARIANT);
  return 0;
}

int ts_jws_b64_encode(const void *bin, size_t len, char **out) {
  *out = NULL;
  if (len > SIZE_MAX / 2) return TS_ENOMEM;
  char *s = malloc(ts_jws_b64_len(len) + 1);
  if (!s) return TS_ENOMEM;
  ts_jws_b64_encode_to(s, bin, len);
  *out = s;
  return 0;
}

/* 1 when b64 (len chars) is exactly the encoding of bin (n bytes). Re-encodes 48 bytes
 * (64 characters, no partial group) at a time, so no allocation is needed. */
static int is_canonical(const char *b64, size_t len, const uint8_t *bin, size_t n) {
  char chunk[65];
  size_t pos = 0;
  int ok = 1;
  for (size_t off = 0; ok && off < n; off += 48) {
    size_t k = n - off < 48 ? n - off : 48;
    sodium_bin2base64(chunk, sizeof(chunk), bin + off, k, B64_VARIANT);
    size_t clen = strlen(chunk);
    ok = clen <= len - pos && memcmp(chunk, b64 + pos, clen) == 0;
    pos += clen;
  }
  ok = ok && pos == len;
  sodium_memzero(chunk, sizeof(chunk));
  return ok;
}

int ts_jws_b64_decode(const char *b64, size_t len, uint8_t *bin, size_t cap, size_t *bin_len) {
  size_t n = 0;
  *bin_len = 0;
  if (len % 4 == 1) goto fail;
  if (sodium_base642bin(bin, cap, b64, len, NULL, &n, NULL, B64_VARIANT) != 0) goto fail;
  if (!is_canonical(b64, len, bin, n)) goto fail;
  *bin_len = n;
  return 0;
fail:
  if (cap > 0) sodium_memzero(bin, cap);
  return TS_EBAD_REQUEST;
}

/* ------------------------------------------------------------------ shared checks */

/* A kid we issue and accept: 1..TS_JWS_KID_MAX characters, no NUL, no control characters,
 * nothing path-like (a kid may end up in a file name or a URL somewhere downstream). */
static int kid_ok(const char *kid, size_t len) {
  if (len == 0 || len > TS_JWS_KID_MAX || strlen(kid) != len) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)kid[i];
    if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') return 0;
  }
  return strstr(kid, "..") == NULL;
}

/* A typ we emit: 1..64 printable ASCII characters. */
static int typ_ok(const char *typ) {
  size_t len = strlen(typ);
  if (len == 0 || len > 64) return 0;
  for (size_t i = 0; i < len; i++)
    if (typ[i] < 0x20 || typ[i] > 0x7e) return 0;
  return 1;
}

/* 1 when v is a JSON string equal to s (lengths included: no NUL games). */
static int str_eq(const json_t *v, const char *s) {
  if (!json_is_string(v)) return 0;
  size_t n = strlen(s);
  return json_string_length(v) == n && memcmp(json_string_value(v), s, n) == 0;
}

/* ------------------------------------------------------------------ signing */

int ts_jws_sign_raw(const uint8_t sk[64], const void *header, size_t header_len,
                    const void *payload, size_t payload_len, char **out_token) {
  *out_token = NULL;
  if (header_len > SIZE_MAX / 4 || payload_len > SIZE_MAX / 4) return TS_ENOMEM;
  size_t h = ts_jws_b64_len(header_len), p = ts_jws_b64_len(payload_len);
  size_t s = ts_jws_b64_len(TS_JWS_SIG_LEN);
  char *t = malloc(h + 1 + p + 1 + s + 1);
  if (!t) return TS_ENOMEM;
  ts_jws_b64_encode_to(t, header, header_len);
  t[h] = '.';
  ts_jws_b64_encode_to(t + h + 1, payload, payload_len);
  t[h + 1 + p] = '.';
  uint8_t sig[TS_JWS_SIG_LEN];
  crypto_sign_detached(sig, NULL, (const unsigned char *)t, h + 1 + p, sk);
  ts_jws_b64_encode_to(t + h + 1 + p + 1, sig, sizeof(sig));
  *out_token = t;
  return 0;
}

int ts_jws_sign(const uint8_t sk[64], const char *kid, const char *typ, const json_t *claims,
                char **out_token) {
  *out_token = NULL;
  if (!kid || !typ || !kid_ok(kid, strlen(kid)) || !typ_ok(typ)) return TS_EINTERNAL;
  if (!json_is_object(claims)) return TS_EBAD_REQUEST;
  int rc = TS_ENOMEM;
  char *h = NULL, *p = NULL;
  json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "EdDSA", "typ", typ, "kid", kid);
  if (!hdr) goto fail;
  h = json_dumps(hdr, JSON_COMPACT);
  p = json_dumps(claims, JSON_COMPACT);
  if (!h || !p) goto fail;
  size_t hl = strlen(h), pl = strlen(p);
  if (hl > TS_JWS_MAX_TOKEN || pl > TS_JWS_MAX_TOKEN ||
      ts_jws_b64_len(hl) + ts_jws_b64_len(pl) + ts_jws_b64_len(TS_JWS_SIG_LEN) + 2 >
          TS_JWS_MAX_TOKEN) {
    rc = TS_EBAD_REQUEST;
    goto fail;
  }
  /* The payload must parse as ts_jws_verify parses it: a NUL in a claim's string or name
   * (valid UTF-8, so it passes every check before us) is written as \u0000, which jansson
   * refuses without JSON_ALLOW_NUL. Found by tests/fuzz/fuzz_json. */
  json_error_t jerr;
  json_t *again = json_loadb(p, pl, JSON_REJECT_DUPLICATES, &jerr);
  int parses = json_is_object(again);
  json_decref(again);
  if (!parses) {
    rc = TS_EBAD_REQUEST;
    goto fail;
  }
  rc = ts_jws_sign_raw(sk, h, hl, p, pl, out_token);
fail:
  free(p);
  free(h);
  json_decref(hdr);
  return rc;
}

size_t ts_jws_json_str(char *out, const char *s, size_t len) {
  static const char hex[] = "0123456789ABCDEF";
  char *o = out;
  *o++ = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == 0) return 0;
    if (c >= 0x20 && c != '"' && c != '\\') {
      *o++ = (char)c;
      continue;
    }
    *o++ = '\\';
    switch (c) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '\b': *o++ = 'b'; break;
      case '\f': *o++ = 'f'; break;
      case '\n': *o++ = 'n'; break;
      case '\r': *o++ = 'r'; break;
      case '\t': *o++ = 't'; break;
      default:
        memcpy(o, "u00", 3);
        o[3] = hex[c >> 4];
        o[4] = hex[c & 15];
        o += 5;
    }
  }
  *o++ = '"';
  return (size_t)(o - out);
}

int ts_jws_sign_payload(const uint8_t sk[64], const char *kid, const char *typ,
                        const char *payload, size_t payload_len, char **out_token) {
  *out_token = NULL;
  size_t kid_len = kid ? strlen(kid) : 0;
  if (!kid || !typ || !kid_ok(kid, kid_len) || !typ_ok(typ)) return TS_EINTERNAL;
  if (payload_len > TS_JWS_MAX_TOKEN) return TS_EBAD_REQUEST;
  /* {"alg":"EdDSA","typ":T,"kid":K}: kid <= 128 and typ <= 64 bytes, escaped at most 6x */
  char h[64 + 6 * 64 + 6 * TS_JWS_KID_MAX];
  static const char head[] = "{\"alg\":\"EdDSA\",\"typ\":";
  size_t n = sizeof(head) - 1, w;
  memcpy(h, head, n);
  w = ts_jws_json_str(h + n, typ, strlen(typ));
  n += w;
  memcpy(h + n, ",\"kid\":", sizeof(",\"kid\":") - 1);
  n += sizeof(",\"kid\":") - 1;
  size_t wk = ts_jws_json_str(h + n, kid, kid_len);
  n += wk;
  h[n++] = '}';
  if (!w || !wk) return TS_EINTERNAL;
  if (ts_jws_b64_len(n) + ts_jws_b64_len(payload_len) + ts_jws_b64_len(TS_JWS_SIG_LEN) + 2 >
      TS_JWS_MAX_TOKEN)
    return TS_EBAD_REQUEST;
  return ts_jws_sign_raw(sk, h, n, payload, payload_len, out_token);
}

/* ------------------------------------------------------------------ verification */

/* Decodes one base64url segment and parses it as a JSON object (duplicates refused).
 * Returns 0 with *out a new reference, or TS_EUNAUTHENTICATED / TS_ENOMEM. */
static int segment_json(const char *seg, size_t len, json_t **out) {
  *out = NULL;
  size_t cap = len / 4 * 3 + 3, n;
  uint8_t *buf = malloc(cap);
  if (!buf) return TS_ENOMEM;
  int rc = TS_EUNAUTHENTICATED;
  if (ts_jws_b64_decode(seg, len, buf, cap, &n) != 0) goto done;
  json_error_t jerr;
  json_t *v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(v)) {
    json_decref(v);
    goto done;
  }
  *out = v;
  rc = 0;
done:
  free(buf);
  return rc;
}

/* Checks the protected header; on success *kid points into hdr. */
static int check_header(const json_t *hdr, const char *typ, const char **kid) {
  static const char *const refused[] = {"jku", "x5u", "jwk", "x5c", "crit"};
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
    if (json_object_get(hdr, refused[i])) return TS_EUNAUTHENTICATED;
  const json_t *alg = json_object_get(hdr, "alg");
  if (!str_eq(alg, "EdDSA") && !str_eq(alg, "Ed25519")) return TS_EUNAUTHENTICATED;
  if (!str_eq(json_object_get(hdr, "typ"), typ)) return TS_EUNAUTHENTICATED;
  const json_t *k = json_object_get(hdr, "kid");
  if (!json_is_string(k) || !kid_ok(json_string_value(k), json_string_length(k)))
    return TS_EUNAUTHENTICATED;
  *kid = json_string_value(k);
  return 0;
}

/* Splits token into its three segments: dots[0] and dots[1] are the offsets of the dots. */
static int split3(const char *token, size_t len, size_t dots[2]) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (token[i] != '.') continue;
    if (n == 2) return TS_EUNAUTHENTICATED;
    dots[n++] = i;
  }
  return n == 2 ? 0 : TS_EUNAUTHENTICATED;
}

int ts_jws_verify(const char *token, size_t len, ts_jws_key_fn key_fn, void *key_ctx,
                  const char *typ, json_t **out_claims, char out_kid[TS_JWS_KID_MAX + 1]) {
  *out_claims = NULL;
  if (out_kid) out_kid[0] = '\0';
  if (!typ || !key_fn) return TS_EINTERNAL;
  if (!token || len > TS_JWS_MAX_TOKEN) return TS_EUNAUTHENTICATED;
  size_t dots[2];
  if (split3(token, len, dots) != 0) return TS_EUNAUTHENTICATED;

  json_t *hdr = NULL, *claims = NULL;
  const char *kid = NULL, *sig_b64 = token + dots[1] + 1;
  size_t sig_b64_len = len - dots[1] - 1, sig_len;
  uint8_t pk[32], sig[TS_JWS_SIG_LEN];
  int rc = segment_json(token, dots[0], &hdr);
  if (rc != 0) goto fail;
  rc = TS_EUNAUTHENTICATED;
  if (check_header(hdr, typ, &kid) != 0) goto fail;
  if (key_fn(key_ctx, kid, pk) != 0) goto fail;
  if (ts_jws_b64_decode(sig_b64, sig_b64_len, sig, sizeof(sig), &sig_len) != 0 ||
      sig_len != sizeof(sig))
    goto fail;
  if (crypto_sign_verify_detached(sig, (const unsigned char *)token, dots[1], pk) != 0)
    goto fail;
  rc = segment_json(token + dots[0] + 1, dots[1] - dots[0] - 1, &claims);
  if (rc != 0) goto fail;
  if (out_kid) memcpy(out_kid, kid, strlen(kid) + 1);
  json_decref(hdr);
  *out_claims = claims;
  return 0;
fail:
  json_decref(hdr);
  return rc;
}

/* ------------------------------------------------------------------ claims */

/* Reads an optional integer claim. Returns 0 (with *present), or TS_EUNAUTHENTICATED when the
 * member exists but is not an integer. */
static int int_claim(const json_t *claims, const char *name, int64_t *v, int *present) {
  const json_t *j = json_object_get(claims, name);
  *present = j != NULL;
  *v = 0;
  if (!j) return 0;
  if (!json_is_integer(j)) return TS_EUNAUTHENTICATED;
  *v = (int64_t)json_integer_value(j);
  return 0;
}

static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

/* aud: absent when none is expected; else the expected string, or an array of strings that
 * holds it. */
static int aud_ok(const json_t *aud, const char *want) {
  if (!want) return aud == NULL;
  if (json_is_string(aud)) return str_eq(aud, want);
  if (!json_is_array(aud)) return 0;
  size_t i;
  const json_t *v;
  int found = 0;
  json_array_foreach(aud, i, v) {
    if (!json_is_string(v)) return 0;
    found |= str_eq(v, want);
  }
  return found;
}

int ts_jws_check_claims(const json_t *claims, const ts_claim_rules *rules) {
  if (!json_is_object(claims) || !rules) return TS_EUNAUTHENTICATED;
  int64_t exp, nbf, iat;
  int has_exp, has_nbf, has_iat;
  if (int_claim(claims, "exp", &exp, &has_exp) != 0 || !has_exp) return TS_EUNAUTHENTICATED;
  if (int_claim(claims, "nbf", &nbf, &has_nbf) != 0) return TS_EUNAUTHENTICATED;
  if (int_claim(claims, "iat", &iat, &has_iat) != 0) return TS_EUNAUTHENTICATED;
  if (rules->iss && !str_eq(json_object_get(claims, "iss"), rules->iss))
    return TS_EUNAUTHENTICATED;
  if (!aud_ok(json_object_get(claims, "aud"), rules->aud)) return TS_EUNAUTHENTICATED;
  int64_t leeway = rules->leeway > 0 ? rules->leeway : 0;
  /* RFC 7519 4.1.4: exp is the first second the token is refused (plus the leeway). */
  if (rules->now >= sat_add(exp, leeway)) return TS_EEXPIRED;
  if (has_nbf && rules->now < sat_add(nbf, -leeway)) return TS_EEXPIRED;
  /* A token issued in the future is not valid yet either (a skewed or lying issuer). */
  if (has_iat && iat > sat_add(rules->now, leeway)) return TS_EEXPIRED;
  return 0;
}
