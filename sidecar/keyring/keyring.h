/* sidecar/keyring/keyring.h: the Ed25519 signing keys, as JWK files in one directory (RFC 7517,
 * RFC 8037), their RFC 7638 thumbprints as kids, rotation, and the JWK Set.
 *
 * Directory layout:
 *   DIR/<name>.jwk  one key each: {"kty":"OKP","crv":"Ed25519","x":...,"d":...} (d optional:
 *                   a verify-only key). Mode 0600 or stricter, else the keyring refuses to
 *                   open (as ssh does). Keys we generate are named <kid>.jwk.
 *   DIR/keys.json   rotation state, only in a managed directory:
 *                   {"active":kid,"next":kid,"retired":[{"kid":kid,"until":epoch},...]}.
 * Hidden files (leading '.') and anything not a regular file (symlinks are followed, as in a
 * Kubernetes Secret volume) are skipped.
 *
 * Managed or not: a keyring is managed when it was opened writable and either found
 * keys.json or found the directory without keys (it then generates the active and the next
 * key). Only a managed keyring rotates; otherwise keys are taken as they are (the active key
 * is the one keys.json names, else the newest file by mtime holding a private key, ties to
 * the smallest kid) and ts_keyring_rotate answers TS_EUNAVAILABLE.
 *
 * Secrets: secret keys live in sodium_malloc'd memory (guarded, mlock'd) and are wiped on
 * free; seeds, file buffers and the d member of parsed JSON are wiped after use. Error
 * messages name files and kids, never key material. Not thread-safe: one thread owns a
 * keyring (swap in a new one for a reload). Call sodium_init() first. */
#ifndef TS_SIDECAR_KEYRING_H
#define TS_SIDECAR_KEYRING_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define TS_KEYRING_MAX 64        /* keys in one keyring (files in the directory) */
#define TS_KID_LEN 43            /* base64url of a SHA-256 thumbprint */
#define TS_JWK_TEXT_MAX 320      /* room for a private JWK as ts_keyring_jwk_export writes it */
#define TS_KEYRING_FILE_MAX 8192 /* larger .jwk or keys.json files are refused */
#define TS_KEYRING_STATE_FILE "keys.json"

typedef enum ts_key_role {
  TS_KEY_OTHER = 0, /* published, not signing, not tracked by keys.json */
  TS_KEY_ACTIVE,    /* signs new tokens */
  TS_KEY_NEXT,      /* published now; signs after the next rotation */
  TS_KEY_RETIRED,   /* published until `until`, then dropped and its file deleted */
} ts_key_role;

typedef struct ts_key {
  char kid[TS_KID_LEN + 1]; /* RFC 7638 thumbprint, base64url */
  uint8_t pk[32];
  uint8_t sk[64];   /* libsodium secret key (seed || pk); all zero when !has_sk */
  int has_sk;
  ts_key_role role;
  int64_t mtime;    /* the file's mtime (seconds); orders keys without keys.json */
  int64_t until;    /* TS_KEY_RETIRED: when it may be dropped */
  char file[256];   /* file name inside the directory; "" when not from a file */
} ts_key;

/* Fields are read-only for callers. keys[] is in publish order: active, next, then the others
 * (newest mtime first, then by kid). */
typedef struct ts_keyring {
  char dir[4096]; /* held inline: this struct lives in sodium_malloc memory, which leak
                   * checkers do not scan, so it holds no heap pointers */
  int writable; /* opened writable: may write into dir */
  int managed;  /* keys.json is ours: rotation works */
  size_t n;
  ts_key keys[TS_KEYRING_MAX];
} ts_keyring;

/* The content of keys.json; "" for an absent kid. */
typedef struct ts_keyring_state {
  char active[TS_KID_LEN + 1];
  char next[TS_KID_LEN + 1];
  size_t n_retired;
  struct {
    char kid[TS_KID_LEN + 1];
    int64_t until;
  } retired[TS_KEYRING_MAX];
} ts_keyring_state;

/* ---- single keys ---- */

/* kid = base64url(SHA-256('{"crv":"Ed25519","kty":"OKP","x":"<b64 pk>"}')) (RFC 7638).
 * Returns 0. */
int ts_keyring_thumbprint(const uint8_t pk[32], char kid[TS_KID_LEN + 1]);

/* Imports an OKP/Ed25519 JWK from len bytes of JSON text. kty, crv and x are required; d (the
 * 32-byte seed) is optional; x must be a valid public key and, with d, the one d derives.
 * Optional members: kid (must equal the thumbprint), use ("sig"), alg ("EdDSA"/"Ed25519");
 * others are ignored; duplicate members are refused. Returns 0 with *out filled (role
 * TS_KEY_OTHER, no file), or TS_ECONFIG with *why a static reason (never key material) and
 * *out wiped, or TS_ENOMEM. why may be NULL. */
int ts_keyring_jwk_import(const char *text, size_t len, ts_key *out, const char **why);

/* Writes k as compact JWK text into out (cap bytes, NUL-terminated):
 * {"kty":"OKP","crv":"Ed25519","x":..,["d":..,]"kid":..,"use":"sig","alg":"EdDSA"}, with d
 * only when with_private (then the caller wipes out with sodium_memzero after use).
 * Returns 0, or TS_EINTERNAL (cap too small, or with_private without a secret key). */
int ts_keyring_jwk_export(const ts_key *k, int with_private, char *out, size_t cap);

/* The public JWK of k as a new JSON object (caller owns): kty, crv, x, kid, use, alg.
 * Returns 0 or TS_ENOMEM (*out NULL). */
int ts_keyring_jwk_public(const ts_key *k, json_t **out);

/* Generates a key (crypto_sign_keypair) and writes it to dir/<kid>.jwk atomically with mode
 * 0600 (temp file with O_EXCL, fsync, rename, fsync of dir). Returns 0 with *out filled (role
 * TS_KEY_OTHER, file and mtime set), or TS_EIO with a message in err (errlen bytes; err may be
 * NULL) and *out wiped. */
int ts_keyring_keygen(const char *dir, ts_key *out, char *err, size_t errlen);

/* ---- rotation state (keys.json) ---- */

/* Reads dir/keys.json. Returns 0 with *found 0 (no such file; *st zeroed) or 1 (*st filled),
 * or TS_ECONFIG with a message naming the file (unreadable, not the documented shape, a kid
 * that is not 43 characters, more than TS_KEYRING_MAX retired entries). */
int ts_keyring_state_load(const char *dir, ts_keyring_state *st, int *found, char *err,
                          size_t errlen);

/* Writes dir/keys.json atomically (mode 0600, as keygen). Returns 0 or TS_EIO / TS_ENOMEM
 * with a message. */
int ts_keyring_state_save(const char *dir, const ts_keyring_state *st, char *err,
                          size_t errlen);

/* ---- the keyring ---- */

/* Loads every *.jwk of dir (see the top of this file) and settles the roles:
 *   - keys.json present: its active (must exist with a private key), next, retired; retired
 *     keys whose until is before now are dropped (and, when writable, their files deleted);
 *     writable: managed, and a missing next key is generated;
 *   - no keys.json, writable and no keys: generates the active and the next key, writes
 *     keys.json: managed;
 *   - otherwise: keys as they are, active = newest private key by mtime (ties: smallest kid).
 * Every remaining key is published. Returns 0 with *out a new keyring (ts_keyring_free), or
 * TS_ECONFIG (a key file too open, unreadable, not a JWK, a duplicate key, more than
 * TS_KEYRING_MAX keys, no private key at all, an unusable keys.json), TS_EIO (writing a new
 * key or keys.json failed), TS_ENOMEM, TS_EINTERNAL (sodium_init failed); then *out is NULL
 * and err (errlen bytes, may be NULL) holds a message naming the file. */
int ts_keyring_load(ts_keyring **out, const char *dir, int writable, int64_t now, char *err,
                    size_t errlen);

/* Wipes every key and frees kr. NULL is fine. */
void ts_keyring_free(ts_keyring *kr);

/* Rotates a managed keyring: drops retired keys whose until is before now, generates a new
 * key, then commits keys.json with: active = the old next, next = the new key, the old active
 * retired until now + max_lifetime (pass the longest token lifetime plus the leeway). In
 * memory the change happens only once keys.json is durable. Returns 0, or TS_EUNAVAILABLE
 * (not managed, or the keyring is full of retired keys), TS_EIO (nothing changed; the new
 * key file is removed again), with a message in err. */
int ts_keyring_rotate(ts_keyring *kr, int64_t now, int64_t max_lifetime, char *err,
                      size_t errlen);

/* Lookups. The pointers stay valid until the next ts_keyring_rotate or ts_keyring_free
 * (rotation reorders keys[]).
 * The key with this kid, or NULL. */
const ts_key *ts_keyring_find(const ts_keyring *kr, const char *kid);

/* The signing key (never NULL in an open keyring) and the next key (NULL when there is none,
 * as in an unmanaged directory). */
const ts_key *ts_keyring_active(const ts_keyring *kr);
const ts_key *ts_keyring_next(const ts_keyring *kr);

/* A ts_jws_key_fn over a keyring (ctx is the ts_keyring *): every published key verifies.
 * Returns 0 with pk filled, or TS_ENOTFOUND. */
int ts_keyring_lookup(void *ctx, const char *kid, uint8_t pk[32]);

/* {"keys":[public JWK, ...]} in publish order, a new object the caller owns.
 * Returns 0 or TS_ENOMEM (*out NULL). */
int ts_keyring_jwks(const ts_keyring *kr, json_t **out);

#endif
