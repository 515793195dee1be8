/* sidecar/sessions/session_store.h: sessions as the store holds them.
 *
 * A session lives in four tables, always changed together in one transaction:
 *   sessions[hash(sid)] = record      handles[handle] = hash(sid)
 *   by_sub[sub] += handle             expiry[be64 idle_expires_at | 's' | hash(sid)]
 * Only hash(sid) (BLAKE2b-256 of the 32 random bytes) is stored, never the sid: a copy of the
 * data file reveals no live session id. Lookups are by the hash, so timing says nothing about
 * the sid itself.
 * Expiry: a session is alive while now < idle_expires_at = min(last_seen_at + idle_ttl,
 * expires_at). The expiry index is keyed by that same time, so the sweeper deletes exactly
 * the sessions validate already refuses (ts_session_alive is the one predicate both use).
 * Records are in the host's byte order (the data dir is local to the machine). */
#ifndef TS_SESSION_STORE_H
#define TS_SESSION_STORE_H

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define TS_SID_BYTES 32
#define TS_SID_CHARS 43      /* base64url, no padding */
#define TS_HANDLE_BYTES 16
#define TS_HANDLE_CHARS 22
#define TS_HASH_BYTES 32
#define TS_EXPIRY_KEY_MAX 272 /* be64 time | kind | key (a sub: up to 257 bytes) */

typedef struct ts_session_rec {
  int64_t created_at, expires_at, last_seen_at, idle_ttl;
  uint8_t handle[TS_HANDLE_BYTES];
  const char *sub; size_t sub_len;
  const char *ip; size_t ip_len;   /* the creating client, as the app saw it; may be empty */
  const char *ua; size_t ua_len;
  const uint8_t *data; size_t data_len; /* msgpack map, or empty */
} ts_session_rec;

int64_t ts_session_idle_expires_at(const ts_session_rec *r);
bool ts_session_alive(const ts_session_rec *r, int64_t now);

/* hash(sid). */
void ts_session_hash(const uint8_t sid[TS_SID_BYTES], uint8_t hash[TS_HASH_BYTES]);
/* Strict base64url decode of a 43-char sid; false if malformed. */
bool ts_session_sid_decode(const char *s, size_t len, uint8_t sid[TS_SID_BYTES]);
/* Strict base64url decode of a 22-char handle; false if malformed. */
bool ts_session_handle_decode(const char *s, size_t len, uint8_t handle[TS_HANDLE_BYTES]);

/* Serializes r into a new buffer (caller frees). NULL on allocation failure. */
uint8_t *ts_session_encode(const ts_session_rec *r, size_t *len);
/* Parses a stored record; pointers point into buf. False if corrupt. */
bool ts_session_decode(const uint8_t *buf, size_t len, ts_session_rec *r);

/* Transaction-level operations (writer or sweeper thread, or a read txn for get). */
int ts_session_get(ts_txn *t, const uint8_t hash[TS_HASH_BYTES], ts_session_rec *r);
int ts_session_put(ts_txn *t, const uint8_t hash[TS_HASH_BYTES], const ts_session_rec *r);
/* Removes the session and its index entries. r must be the stored record. */
int ts_session_delete(ts_txn *t, const uint8_t hash[TS_HASH_BYTES], const ts_session_rec *r);
/* The hash a handle points at. */
int ts_session_by_handle(ts_txn *t, const uint8_t handle[TS_HANDLE_BYTES],
                         uint8_t hash[TS_HASH_BYTES]);
/* Sets last_seen_at = at if later (never earlier), moving the expiry entry. TS_ENOTFOUND if gone. */
int ts_session_touch(ts_txn *t, const uint8_t hash[TS_HASH_BYTES], int64_t at);

/* Deletes every session of sub except the one with handle `except` (NULL: none); calls
 * on_revoked (may be NULL) for each one that was still alive. Returns how many were alive, or
 * TS_E*. */
int ts_session_revoke_sub(ts_txn *t, const char *sub, size_t sub_len, const uint8_t *except,
                          int64_t now,
                          void (*on_revoked)(void *ctx, const uint8_t handle[TS_HANDLE_BYTES],
                                             int64_t expires_at),
                          void *ctx);

/* Expiry index keys (shared by every kind the sweeper handles). */
size_t ts_expiry_key(uint8_t out[TS_EXPIRY_KEY_MAX], int64_t at, char kind, const void *key,
                     size_t klen);
int64_t ts_expiry_key_time(const uint8_t *k);

#endif
