/* sidecar/store/lmdb/lmdb_backend.h: the LMDB backend's parts, shared by its files (not seen outside
 * store/lmdb/).
 *
 *   backend_lmdb.c  open/close, the ops table, stats, the feed operations
 *   session_ops.c   the session operations
 *   token_ops.c     families, the revocation list, consume, user.revoke
 * Reads run at once on the loop thread (their done callback runs before the call returns); the
 * hot ones share the loop's snapshot (ts_store_snapshot), ended before the loop sleeps and
 * before write completions are delivered. Writes are ts_write operations: apply on the writer
 * thread inside the group commit, done on the loop thread after the commit returned. A write that appended feed
 * entries tells the backend's on_published once durable.
 *
 * Ownership: the lmdb_backend owns the store, the writer and the sweeper; close stops the
 * writer first (every owed completion runs), then the sweeper, then closes the store. */
#ifndef TS_LMDB_BACKEND_H
#define TS_LMDB_BACKEND_H

#include "backend.h"
#include "store.h"
#include "sweeper.h"
#include "writer.h"

#include <uv.h>

typedef struct lmdb_backend {
  ts_backend base; /* first */
  const ts_config *cfg;
  ts_store *store;
  ts_writer *writer;
  ts_sweeper *sweeper;
  uint64_t store_id; /* names this store in cursors (feed.h) */
  uv_prepare_t *turn; /* ends the loop's read snapshot before the loop sleeps */
  struct ts_rcache *cache; /* --session-cache (NULL: none); loop thread only (session_ops.c) */
  int lock_fd;        /* flock'ed: one daemon per data directory */
} lmdb_backend;

static inline lmdb_backend *lmdb_of(ts_backend *b) { return (lmdb_backend *)b; }

/* The sessions a write deleted by sub (revoke_all, user_revoke), for the session cache
 * (session_ops.c): collected on the writer thread by lmdb_gone_add (an on_deleted of
 * ts_session_revoke_sub, ctx the lmdb_gone), forgotten on the loop by lmdb_gone_forget before
 * the write's caller hears of it; past LMDB_GONE_MAX the whole cache is flushed instead. */
#define LMDB_GONE_MAX 1024
typedef struct lmdb_gone {
  uint8_t (*hash)[TS_HASH_BYTES];
  size_t n, cap;
  bool overflow;
} lmdb_gone;
void lmdb_gone_add(void *gone, const uint8_t hash[TS_HASH_BYTES]);
/* Forgets (or flushes) and frees the list. */
void lmdb_gone_forget(lmdb_backend *lb, lmdb_gone *g);

/* Entries up to seq last are durable: tells the backend's listener (0: none written). */
void lmdb_published(lmdb_backend *lb, uint64_t last);

/* session_ops.c */
void lmdb_session_create(ts_backend *b, const ts_session_new *n, ts_done_fn done, void *ctx);
void lmdb_session_get(ts_backend *b, const uint8_t hash[TS_HASH_BYTES], int64_t now,
                      ts_session_fn done, void *ctx);
void lmdb_session_touch(ts_backend *b, const uint8_t hash[TS_HASH_BYTES], int64_t at);
void lmdb_session_rotate(ts_backend *b, const uint8_t hash[TS_HASH_BYTES],
                         const uint8_t new_hash[TS_HASH_BYTES], int64_t now, ts_session_fn done,
                         void *ctx);
void lmdb_session_revoke(ts_backend *b, const uint8_t *hash, const uint8_t *handle, int64_t now,
                         ts_count_fn done, void *ctx);
void lmdb_session_revoke_all(ts_backend *b, const char *sub, size_t sub_len,
                             const uint8_t *except, int64_t now, ts_count_fn done, void *ctx);
void lmdb_session_list(ts_backend *b, const char *sub, size_t sub_len, const uint8_t *after,
                       size_t limit, int64_t now, ts_list_fn done, void *ctx);

/* token_ops.c */
void lmdb_family_create(ts_backend *b, const char *fam, const json_t *rec, int64_t leeway,
                        ts_family_fn done, void *ctx);
void lmdb_family_refresh(ts_backend *b, const ts_refresh_in *in, ts_family_fn done, void *ctx);
void lmdb_family_revoke(ts_backend *b, const char *fam, int64_t until, int64_t leeway,
                        ts_count_fn done, void *ctx);
void lmdb_revoke_jti(ts_backend *b, const char *jti, int64_t until, bool proven,
                     ts_count_fn done, void *ctx);
void lmdb_user_revoke(ts_backend *b, const char *sub, size_t sub_len, int64_t now,
                      int64_t longest, int64_t leeway, ts_user_fn done, void *ctx);
void lmdb_revocation_check(ts_backend *b, const ts_claims_ref *c, int64_t now, ts_done_fn done,
                           void *ctx);
void lmdb_consume(ts_backend *b, const ts_claims_ref *c, int64_t until, int64_t now,
                  const ts_session_new *session, ts_done_fn done, void *ctx);

#endif
