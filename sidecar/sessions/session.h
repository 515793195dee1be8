/* sidecar/sessions/session.h: a session, whatever store holds it.
 *
 * A session is alive while now < idle_expires_at = min(last_seen_at + idle_ttl, expires_at);
 * ts_session_alive is the one predicate every backend and the sweeper use. Only hash(sid)
 * (BLAKE2b-256 of the 32 random bytes) is ever stored, never the sid: a copy of a store
 * reveals no live session id, and lookups by the hash say nothing about the sid by timing.
 * The handle (16 bytes: the creation time in milliseconds, big-endian in 6 bytes, then 10
 * random bytes) names a session to its user (session.list, revoke by handle) without being a
 * credential. Time first, so handle order is creation order (a user's devices list oldest
 * first), and so the store's handle indexes grow at one end: a group commit of new sessions
 * writes a page or two of them instead of one scattered page per session.
 *
 * Ownership: a ts_session_rec only points (into a store's memory, a reply, or a buffer the
 * caller owns); a ts_session_new owns its encoded record and its secret sid until
 * ts_session_new_wipe. */
#ifndef TS_SESSION_H
#define TS_SESSION_H

#include "params.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_SID_BYTES 32
#define TS_SID_CHARS 43      /* base64url, no padding */
#define TS_HANDLE_BYTES 16
#define TS_HANDLE_CHARS 22
#define TS_HASH_BYTES 32
#define TS_SUB_MAX 256

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

/* The record's byte form (host byte order). ts_session_encode returns a new buffer (caller
 * frees), NULL on allocation failure; ts_session_decode points r into buf, false if corrupt. */
uint8_t *ts_session_encode(const ts_session_rec *r, size_t *len);
bool ts_session_decode(const uint8_t *buf, size_t len, ts_session_rec *r);

/* A new session, prepared on the loop thread and handed to a backend's session_create. */
typedef struct ts_session_new {
  uint8_t sid[TS_SID_BYTES]; /* secret: ts_session_new_wipe */
  uint8_t hash[TS_HASH_BYTES];
  uint8_t handle[TS_HANDLE_BYTES];
  uint8_t *rec; /* the record's byte form (owned) */
  size_t rec_len;
  int64_t expires_at, idle_expires_at;
} ts_session_new;

int ts_session_prepare(ts_session_new *n, const char *sub, size_t sub_len, int64_t now,
                       int64_t ttl, int64_t idle_ttl, const msgpack_object *data,
                       const ts_param_value *ip, const ts_param_value *ua);
void ts_session_new_wipe(ts_session_new *n);

#endif
