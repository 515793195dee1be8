/* proto/jws.h: compact JWS (RFC 7515) with Ed25519 (RFC 8037), and the JWT claim checks
 * (RFC 7519) the tokens of PROTOCOL.md need.
 *
 * Pure functions: no I/O, no globals, no libuv. Keys come in as fixed-size libsodium arrays;
 * the verifier finds the public key of a kid through a callback (the keyring provides one).
 * Verification is strict (SECURITY.md, "Tokens"): one alg family, an exact typ, no key or URL
 * carried in the header, canonical base64url, no duplicate JSON members, 8 KiB at most. Every
 * reason to refuse a token maps to TS_EUNAUTHENTICATED; time checks give TS_EEXPIRED.
 * Call sodium_init() once before using this module. */
#ifndef TS_PROTO_JWS_H
#define TS_PROTO_JWS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define TS_JWS_MAX_TOKEN 8192 /* bytes; longer tokens are refused before any parsing */
#define TS_JWS_KID_MAX 128    /* bytes of a kid we accept */
#define TS_JWS_SIG_LEN 64

/* ---- base64url (RFC 4648 section 5, no padding), canonical only ---- */

/* Characters ts_jws_b64_encode writes for bin_len bytes (NUL not counted). */
size_t ts_jws_b64_len(size_t bin_len);

/* Encodes len bytes into out, which must hold ts_jws_b64_len(len) + 1 bytes (NUL-terminated).
 * Returns 0. */
int ts_jws_b64_encode_to(char *out, const void *bin, size_t len);

/* Encodes len bytes into a new NUL-terminated string (caller frees with free()).
 * Returns 0 or TS_ENOMEM (then *out is NULL). */
int ts_jws_b64_encode(const void *bin, size_t len, char **out);

/* Decodes the len characters at b64 into bin (capacity cap) and sets *bin_len. Only the
 * canonical encoding passes: no padding, no '+', '/', whitespace or other characters, no
 * non-zero trailing bits, no length of 1 mod 4. Returns 0, or TS_EBAD_REQUEST (bad input or
 * more than cap bytes); on error bin holds nothing useful and has been wiped. */
int ts_jws_b64_decode(const char *b64, size_t len, uint8_t *bin, size_t cap, size_t *bin_len);

/* ---- signing ---- */

/* Signs header and payload as given (their exact bytes, base64url-encoded by this function):
 * *out_token = b64(header) "." b64(payload) "." b64(Ed25519 signature), a new NUL-terminated
 * string the caller frees with free(). Used for the RFC 8037 A.4 known answer; tokens are made
 * with ts_jws_sign. Returns 0 or TS_ENOMEM (then *out_token is NULL). */
int ts_jws_sign_raw(const uint8_t sk[64], const void *header, size_t header_len,
                    const void *payload, size_t payload_len, char **out_token);

/* Signs claims (a JSON object, serialized compactly in its member order) under the header
 * {"alg":"EdDSA","typ":typ,"kid":kid} (that member order, no whitespace).
 * Returns 0 with *out_token a new string (free()), or
 *   TS_EBAD_REQUEST  claims is not an object, the token would exceed TS_JWS_MAX_TOKEN, or
 *                    a string or member name holds a NUL (ts_jws_verify refuses \u0000)
 *                    (a token we could not verify ourselves is never issued),
 *   TS_EINTERNAL     kid/typ unusable (kid not as ts_jws_verify accepts it),
 *   TS_ENOMEM;
 * on error *out_token is NULL. */
int ts_jws_sign(const uint8_t sk[64], const char *kid, const char *typ, const json_t *claims,
                char **out_token);

/* Signs a payload the caller serialized itself (issue 11: no JSON round trip on the hot
 * path) under the same header as ts_jws_sign, written without jansson. The caller vouches that
 * payload is a compact JSON object ts_jws_verify accepts (valid UTF-8, no \u0000, no duplicate
 * member); sidecar/tokens/tokens.c writes it member by member. Same returns as ts_jws_sign. */
int ts_jws_sign_payload(const uint8_t sk[64], const char *kid, const char *typ,
                        const char *payload, size_t payload_len, char **out_token);

/* Appends the JSON string for s (len bytes of valid UTF-8) to out (room: 6 * len + 2 bytes),
 * escaped exactly as jansson's json_dumps does by default. Returns the bytes written, or 0
 * when s holds a NUL (ts_jws_verify refuses \u0000). */
size_t ts_jws_json_str(char *out, const char *s, size_t len);

/* ---- verification ---- */

/* Key lookup for ts_jws_verify: copies the Ed25519 public key of kid (a NUL-terminated string
 * of 1..TS_JWS_KID_MAX bytes) into pk and returns 0, or returns a negative TS_E* code
 * when the kid is unknown. */
typedef int (*ts_jws_key_fn)(void *ctx, const char *kid, uint8_t pk[32]);

/* Parses and verifies a compact JWS of len bytes (token needs no NUL terminator).
 * typ is the expected "typ" header (non-NULL; compared exactly). Checks, in order: length
 * <= TS_JWS_MAX_TOKEN; exactly three segments of canonical base64url; the header is a JSON
 * object in valid UTF-8 without duplicate members; alg is exactly "EdDSA" or "Ed25519"; typ
 * matches; kid is a string of 1..TS_JWS_KID_MAX bytes without control characters, '/',
 * '\\' or "..", and key_fn knows it; no jku, x5u, jwk, x5c or crit member; the signature is
 * 64 bytes and valid (libsodium 1.0.18 also refuses S >= L, a small-order R and a
 * non-canonical or small-order public key); the payload is a JSON object without duplicate
 * members. Time and audience are NOT checked here: call ts_jws_check_claims on the result.
 * Returns 0 with *out_claims a new reference (the caller owns it) and, when out_kid is not
 * NULL, the kid copied into out_kid; or TS_EUNAUTHENTICATED for any bad token, TS_ENOMEM, or
 * TS_EINTERNAL (typ or key_fn NULL). On error *out_claims is NULL and out_kid is "". */
int ts_jws_verify(const char *token, size_t len, ts_jws_key_fn key_fn, void *key_ctx,
                  const char *typ, json_t **out_claims, char out_kid[TS_JWS_KID_MAX + 1]);

/* ---- claims (RFC 7519 section 4.1) ---- */

typedef struct ts_claim_rules {
  int64_t now;     /* wall clock, seconds since the epoch */
  int64_t leeway;  /* seconds of clock skew tolerated (>= 0) */
  const char *iss; /* expected issuer; NULL: iss is not checked */
  const char *aud; /* expected audience; NULL: a token carrying aud is refused (4.1.3) */
} ts_claim_rules;

/* Checks verified claims against rules. exp is required and must be an integer; nbf and iat,
 * when present, must be integers too. iss (when expected) must be equal; aud (a string or an
 * array of strings) must contain the expected audience, or be absent when none is expected.
 * Identity checks come first: a token that is both foreign and expired is TS_EUNAUTHENTICATED.
 * Then: now >= exp + leeway -> TS_EEXPIRED (RFC 7519 4.1.4: with leeway 0, now == exp is
 * refused); now < nbf - leeway -> TS_EEXPIRED; iat > now + leeway (issued in the future) ->
 * TS_EEXPIRED. Returns 0, TS_EUNAUTHENTICATED or TS_EEXPIRED. */
int ts_jws_check_claims(const json_t *claims, const ts_claim_rules *rules);

#endif
