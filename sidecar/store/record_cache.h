/* sidecar/store/record_cache.h: a table of session records in memory, keyed by the session
 * hash, shared by the backends' session caches (lmdb/session_ops.c, redis/cache.c).
 *
 * Direct-mapped: a session's slot is picked by the first 8 bytes of its hash (uniformly
 * random), so a lookup touches one slot and a new record evicts the one in its slot. Each slot
 * (56 bytes) holds a malloc'd copy of the record's bytes as the store holds them, at most
 * TS_RCACHE_RECORD_MAX (a record with more data or a longer user agent is not cached), so the
 * table's memory is bounded by slots x (56 + TS_RCACHE_RECORD_MAX); a copy is wiped when it
 * leaves. Missing sessions are never cached (made-up sids cannot evict live ones).
 * What keeps a cache coherent is its backend's job: it forgets a record before it answers any
 * write that changes or removes it, and flushes when it cannot name the records a write
 * touched. A fill may be ticketed: ts_rcache_filling reserves the slot, and a forget or flush
 * before ts_rcache_fill voids the ticket, so a read that raced a write is not kept.
 *
 * Ownership: the caller owns the table (ts_rcache_open / ts_rcache_close); a record returned
 * by ts_rcache_get stays valid until the next call on the table (a fill or forget of any
 * session may reuse its slot). Loop thread only. */
#ifndef TS_RECORD_CACHE_H
#define TS_RECORD_CACHE_H

#include "session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_RCACHE_RECORD_MAX 1024

typedef struct ts_rcache ts_rcache;

typedef struct ts_rcache_counts {
  uint64_t hits, misses, flushes;
  uint64_t entries; /* slots holding a record now */
} ts_rcache_counts;

/* A table of at least `slots` slots (rounded up to a power of two, at most 16M); NULL with
 * slots 0 (no cache) or out of memory (*oom set). The slots are calloc'd: untouched ones cost
 * no resident memory. */
ts_rcache *ts_rcache_open(size_t slots, bool *oom);
void ts_rcache_close(ts_rcache *c);

/* The cached record of hash (a hit or a miss is counted). */
bool ts_rcache_get(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES], const uint8_t **rec,
                   size_t *len);
/* Reserves hash's slot for a fill; returns the ticket (never 0). */
uint32_t ts_rcache_filling(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES]);
/* Keeps a copy of rec if the ticket is still good (no forget or flush of the slot since) and
 * rec is at most TS_RCACHE_RECORD_MAX bytes. */
void ts_rcache_fill(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES], uint32_t ticket,
                    const uint8_t *rec, size_t len);
/* Drops hash's record (or pending fill); true if there was one. */
bool ts_rcache_forget(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES]);
/* Drops everything. */
void ts_rcache_flush(ts_rcache *c);
void ts_rcache_counts_get(const ts_rcache *c, ts_rcache_counts *out);
/* The table's real size (a power of two); 0 for no table. */
size_t ts_rcache_slots(const ts_rcache *c);

#endif
