/* sidecar/store/lmdb/store.h: the LMDB backend's tables and transactions.
 *
 * A store is a set of named tables of byte keys -> byte values, read and written in
 * transactions (store_lmdb.c). Only the LMDB backend's files use it: the domain code sees the
 * operations of store/backend.h.
 *
 * Threads and transactions:
 *   - Any thread may open a read transaction (a snapshot); it must end on the thread that
 *     began it. The loop thread reads without ever waiting for a writer.
 *   - Write transactions are opened by the writer thread (group commit, writer.h) and by the
 *     sweeper; the backend serializes them. A nested write transaction (ts_store_nest) lets
 *     one operation of a group fail alone.
 *   - Values returned by get/cursor calls point into the store's memory: valid until the
 *     transaction ends or writes to that table. Copy what must outlive it.
 * Errors: TS_ENOTFOUND (no such key), TS_EMAPFULL (the store is full: ts_store_put refuses new
 * data in a write transaction that began with the pages in use at --max-store-bytes minus a
 * reserve kept for deletes and revocations; at the cap itself LMDB refuses; the transaction
 * must then be aborted: nothing of it is written; the same when the disk cannot hold the
 * reserve, against the space allocated on it), TS_EIO, TS_ENOMEM. */
#ifndef TS_STORE_H
#define TS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ts_store ts_store;
typedef struct ts_txn ts_txn;
typedef struct ts_cursor ts_cursor;

enum ts_table {
  TS_T_META,     /* "schema" -> u32 version */
  TS_T_SESSIONS, /* hash(sid)[32] -> session record */
  TS_T_HANDLES,  /* handle[16] -> hash(sid)[32] */
  TS_T_BY_SUB,   /* sub -> handle[16], many per key (sorted duplicates) */
  TS_T_EXPIRY,   /* be64 time | kind[1] | key -> empty: the sweeper's index */
  TS_T_FAMILIES, /* family id -> refresh family state */
  TS_T_REVOKED,  /* kind[1] | id -> be64 until */
  TS_T_CUTOFFS,  /* sub -> be64 before */
  TS_T_FAM_BY_SUB, /* sub -> family id, many per key (sorted duplicates) */
  TS_T_FEED,     /* be64 seq -> a revocation feed entry (feed.h) */
  TS_T_COUNT_
};

typedef struct ts_store_options {
  const char *dir;       /* created 0700 if missing */
  size_t max_bytes;      /* the size cap */
  bool relaxed;          /* no fsync per commit; ts_store_sync flushes */
} ts_store_options;

typedef struct ts_store_info {
  uint64_t entries[TS_T_COUNT_];
  uint64_t used_bytes;   /* pages in use in the file */
  uint64_t file_bytes;
  uint64_t max_bytes;
  uint64_t disk_bytes;   /* of the data file, allocated on the disk ahead (the disk reserve) */
  bool disk_short;       /* the disk could not hold the reserve: the tiers count against it */
  unsigned readers_cleared;
} ts_store_info;

int ts_store_open(ts_store **out, const ts_store_options *opt, char *why, size_t why_cap);
void ts_store_close(ts_store *s);
/* Flushes to disk (relaxed durability). */
int ts_store_sync(ts_store *s);
/* Clears reader slots left by dead processes; returns how many (>= 0) or TS_E*. */
int ts_store_reader_check(ts_store *s);
int ts_store_info_get(ts_store *s, ts_store_info *info);
/* An identity of the data file (its inode): a copy or a restored backup has another. */
int ts_store_file_id(ts_store *s, uint64_t *id);

int ts_store_read(ts_store *s, ts_txn **out);
/* The loop thread's shared read snapshot: the hot reads (session get, revocation check) use it
 * instead of a transaction each. It stays open until ts_store_snapshot_end, which the LMDB
 * backend calls before the loop sleeps and before it delivers write completions, so a read
 * made after a write was acknowledged sees it. Owned by the store (never abort or commit it);
 * loop thread only. */
int ts_store_snapshot(ts_store *s, ts_txn **out);
void ts_store_snapshot_end(ts_store *s);
int ts_store_write(ts_store *s, ts_txn **out);
int ts_store_nest(ts_txn *parent, ts_txn **out);
/* Ends a read transaction, or commits a write transaction (durable when this returns 0 in full
 * durability). On error nothing of the transaction is written. */
int ts_store_commit(ts_txn *t);
void ts_store_abort(ts_txn *t);

int ts_store_get(ts_txn *t, enum ts_table tb, const void *key, size_t klen, const void **val,
                 size_t *vlen);
int ts_store_put(ts_txn *t, enum ts_table tb, const void *key, size_t klen, const void *val,
                 size_t vlen);
/* A put that may use the delete reserve: for revocations, which must land even when the
 * store is too full for new sessions (a full store must never keep a stolen token alive).
 * How deep it may reach depends on t: by default half the reserve, so revocations anyone can
 * make up (token.revoke {jti, exp}, {family} of no family, user.revoke of any sub) cannot
 * fill it; after ts_store_reserve_all, all of it but a margin for the commit itself. */
int ts_store_put_urgent(ts_txn *t, enum ts_table tb, const void *key, size_t klen,
                        const void *val, size_t vlen);
/* Marks t as revoking something that provably exists (a token that verified, a live family,
 * a sub with sessions or families): its urgent puts may use the whole reserve. */
void ts_store_reserve_all(ts_txn *t);
/* Deletes key; for TS_T_BY_SUB, val names which duplicate (NULL: all of them). */
int ts_store_del(ts_txn *t, enum ts_table tb, const void *key, size_t klen, const void *val,
                 size_t vlen);

/* Cursors: walk a table in key order. */
int ts_cursor_open(ts_txn *t, enum ts_table tb, ts_cursor **out);
void ts_cursor_close(ts_cursor *c);
/* Positions at the first key >= key (key NULL: the first key). TS_ENOTFOUND at the end. */
int ts_cursor_seek(ts_cursor *c, const void *key, size_t klen, const void **k, size_t *kl,
                   const void **v, size_t *vl);
int ts_cursor_next(ts_cursor *c, const void **k, size_t *kl, const void **v, size_t *vl);
/* Duplicates of one key (TS_T_BY_SUB): first, then next until TS_ENOTFOUND. */
int ts_cursor_dup_first(ts_cursor *c, const void *key, size_t klen, const void **v, size_t *vl);
int ts_cursor_dup_next(ts_cursor *c, const void **v, size_t *vl);
/* Positions at the first duplicate of key that is >= val (in the table's duplicate order).
 * TS_ENOTFOUND when there is none. */
int ts_cursor_dup_seek(ts_cursor *c, const void *key, size_t klen, const void *val, size_t vlen,
                       const void **v, size_t *vl);
/* Deletes the item under the cursor. */
int ts_cursor_del(ts_cursor *c);

#endif
