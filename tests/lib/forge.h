/* tests/lib/forge.h: tokens made by the tests, not by the daemon, to prove what it refuses.
 *
 * A signer holds an Ed25519 key: the daemon's own active key, read from its key directory
 * with the keyring code (as root, mode 0600 is no bar), when a test needs a token that is well
 * signed but wrong in some other way; or a stranger's, a key the daemon has never seen. Tokens
 * are signed with ts_jws_sign_raw so that the exact header and payload bytes are ours, or with
 * ts_jws_sign, as the daemon does. Then the tampering helpers: segments, base64url, signatures
 * changed byte by byte, the alg-confusion HMAC. Every helper fails the test on an error;
 * strings returned are malloc'd (free them); claims passed in are stolen. */
#ifndef TT_FORGE_H
#define TT_FORGE_H

#include "daemon.h"

#include <tessera/tessera.h>

#include "keyring.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tf_signer {
  uint8_t sk[64];
  uint8_t pk[32];
  char kid[TS_KID_LEN + 1];
} tf_signer;

/* The daemon's active signing key, read from its key directory. */
void tf_daemon_signer(const td_daemon *d, tf_signer *s);
/* A fresh key the daemon has never seen; its kid is its RFC 7638 thumbprint. */
void tf_stranger_signer(tf_signer *s);

/* A stranger's key under the kid "stranger-<i>" (not its thumbprint): the same i, the same kid. */
void tf_named_stranger(tf_signer *s, int i);

/* Tokens for tc_run_hammer (calls.h): good[i] issued by the daemon for sub "user<i>", bad[i]
 * signed by stranger i (tf_named_stranger); free() each. */
void tf_hammer_tokens(tessera_client *c, char **good, int ngood, char **bad, int nbad);

/* {"alg":"EdDSA","typ":typ,"kid":kid} as the daemon writes it (static storage). */
const char *tf_std_header(const char *typ, const char *kid);
/* Claims that pass every check (issuer tessera, sub mallory, no aud, valid for 5 minutes). */
json_t *tf_good_claims(void);
/* Claims as the daemon writes them (iss, sub, iat, nbf = iat, exp, a fresh jti). */
json_t *tf_claims(const char *sub, int64_t iat, int64_t exp);
/* Signs header and payload text exactly as given. */
char *tf_sign_text(const tf_signer *s, const char *header, const char *payload);
/* Signs claims (stolen) under header text. */
char *tf_sign_claims(const tf_signer *s, const char *header, json_t *claims);
/* Signs claims (stolen) with typ and the signer's kid the way the daemon does (ts_jws_sign). */
char *tf_sign(const tf_signer *s, const char *typ, json_t *claims);
/* An access token like the daemon's, but with claims (stolen) of our choosing. */
char *tf_forge(const tf_signer *s, json_t *claims);

/* base64url (no padding) of bin. */
char *tf_b64(const void *bin, size_t len);
/* "a.b.c". */
char *tf_join3(const char *a, const char *b, const char *c);
/* Segment i (0..2) of tok, copied. */
char *tf_segment(const char *tok, int i);
/* The JSON object of segment i (0 header, 1 payload) of tok. */
json_t *tf_segment_json(const char *tok, int i);
/* An integer claim of tok's payload. */
long long tf_claim_int(const char *tok, const char *name);
/* tok with segment i replaced by text (JSON text, base64url-encoded here). */
char *tf_replace_segment(const char *tok, int i, const char *text);
/* tok with its signature bytes changed by fn (the signature is 64 bytes; fn may change len). */
char *tf_with_signature(const char *tok, void (*fn)(uint8_t *sig, size_t *len));
void tf_flip_first_bit(uint8_t *sig, size_t *len);
void tf_flip_last_bit(uint8_t *sig, size_t *len);
void tf_drop_last_byte(uint8_t *sig, size_t *len);
void tf_add_a_byte(uint8_t *sig, size_t *len);
/* S + L (the group order) in place of S: the same signature mod L, refused as non-canonical. */
void tf_s_plus_l(uint8_t *sig, size_t *len);
/* tok with the last character of its signature made non-canonical (same bytes, stray bits). */
char *tf_noncanonical_signature(const char *tok);
/* A compact JWS with an HMAC-SHA256 "signature" keyed with key (the alg-confusion attack). */
char *tf_hs256_token(const char *header, const char *payload, const void *key, size_t keylen);
/* A well-signed token of exactly want bytes (the payload padded with a claim). */
char *tf_token_of_length(const tf_signer *s, size_t want);

/* `tessera keygen dir` (the CLI, against d); returns the kid it printed. */
void tf_keygen(const td_daemon *d, const char *dir, char kid[TS_KID_LEN + 1]);
/* dir/kid.jwk. */
void tf_key_path(const char *dir, const char *kid, char *path, size_t cap);

#endif
