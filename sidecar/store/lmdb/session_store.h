/* sidecar/store/lmdb/session_store.h: sessions as the store holds them.
 *
 * A session lives in four tables, always changed together in one transaction:
 *   sessions[hash(sid)] = record      handles[handle] = hash(sid)
 *   by_sub[sub] += handle             expiry[be64 idle_expires_at | 's' | hash(sid)]
 * The record is session.h's byte form (host byte order: the data dir is local to the
 * machine). The expiry index is keyed by idle_expires_at, so the sweeper deletes exactly the
 * sessions validate already refuses (ts_session_alive is the one predicate both use). */
#ifndef TS_SESSION_STORE_H
#define TS_SESSION_STORE_H

#include "session.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define TS_EXPIRY_KEY_MAX 272 /* be64 time | kind | key (a sub: up to 257 bytes) */

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
 * on_deleted (may be NULL) with the hash of each one deleted, alive or not. Returns how many
 * were alive, or TS_E*. */
int ts_session_revoke_sub(ts_txn *t, const char *sub, size_t sub_len, const uint8_t *except,
                          int64_t now,
                          void (*on_deleted)(void *ctx, const uint8_t hash[TS_HASH_BYTES]),
                          void *ctx);

/* Expiry index keys (shared by every kind the sweeper handles). */
size_t ts_expiry_key(uint8_t out[TS_EXPIRY_KEY_MAX], int64_t at, char kind, const void *key,
                     size_t klen);
int64_t ts_expiry_key_time(const uint8_t *k);

#endif
