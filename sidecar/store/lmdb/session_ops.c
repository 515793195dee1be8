/* sidecar/store/lmdb/session_ops.c: the session operations of the LMDB backend (backend.h).
 *
 * get and list read at once in a read transaction on the loop thread; they never wait for
 * the writer. create, rotate, revoke, revoke_all and touch are ts_write operations: apply on
 * the writer thread inside the group commit, done on the loop thread after the commit. The
 * four tables a session lives in are session_store.c's.
 *
 * The session cache (--session-cache, store/record_cache.h): get answers from it before the
 * B-tree (with a million sessions stored, a lookup there is several cache misses), and fills
 * it with what the snapshot held. Only this daemon writes its store (the data directory is
 * locked), so it stays coherent by forgetting: every write that changes or removes a session
 * forgets it in its done, on the loop thread, before the caller hears of it: touch, rotate,
 * revoke by sid or handle (the writer names the hash), revoke_all and user_revoke (the writer
 * lists the hashes it deleted: lmdb_gone; a very long list flushes the cache instead). A get
 * between the submit and the done may fill the old record again: it is what the snapshot
 * still shows until the commit, and the done forgets it.
 * After the done, reads renew the snapshot (deliver_done ended it), so no fill brings the old
 * record back. The sweeper deletes only sessions already expired at its own clock: a cached
 * copy is judged at the later of the caller's now and the sweeper's last (ts_sweeper_now), so a
 * wall clock stepped back cannot revive a session the sweeper removed. */
#include "lmdb_backend.h"

#include "error.h"
#include "record_cache.h"
#include "session_store.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

typedef struct session_op {
  ts_write w; /* first: the writer hands this pointer back */
  lmdb_backend *lb;
  union {
    ts_done_fn done;
    ts_count_fn count;
    ts_session_fn session;
  } cb;
  void *ctx;
  int64_t now;
  uint8_t hash[TS_HASH_BYTES];
  uint8_t new_hash[TS_HASH_BYTES];
  uint8_t handle[TS_HANDLE_BYTES];
  bool by_handle, has_except;
  uint8_t except[TS_HANDLE_BYTES];
  char sub[TS_SUB_MAX + 1];
  size_t sub_len;
  uint8_t *rec; /* create: the encoded record; rotate: the moved record (a copy) */
  size_t rec_len;
  unsigned revoked;
  lmdb_gone gone; /* revoke_all: the sessions deleted */
} session_op;

static session_op *op_new(ts_backend *b, int (*apply)(ts_txn *, ts_write *),
                          void (*done)(ts_write *, int), void *ctx, int64_t now) {
  session_op *op = calloc(1, sizeof(*op));
  if (!op) return NULL;
  op->lb = lmdb_of(b);
  op->w.apply = apply;
  op->w.done = done;
  op->ctx = ctx;
  op->now = now;
  return op;
}

static void op_free(session_op *op) {
  free(op->gone.hash);
  if (op->rec) sodium_memzero(op->rec, op->rec_len);
  free(op->rec);
  free(op);
}

static void submit(ts_backend *b, session_op *op) {
  ts_writer_submit(lmdb_of(b)->writer, &op->w);
}

/* ---- the sessions a write deleted (lmdb_backend.h) ----------------------------------------- */

void lmdb_gone_add(void *gone, const uint8_t hash[TS_HASH_BYTES]) {
  lmdb_gone *g = gone;
  if (g->overflow) return;
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 16;
    void *p = cap <= LMDB_GONE_MAX ? realloc(g->hash, cap * TS_HASH_BYTES) : NULL;
    if (!p) {
      g->overflow = true; /* too many (or no memory): the done flushes */
      return;
    }
    g->hash = p;
    g->cap = cap;
  }
  memcpy(g->hash[g->n++], hash, TS_HASH_BYTES);
}

void lmdb_gone_forget(lmdb_backend *lb, lmdb_gone *g) {
  if (g->overflow) ts_rcache_flush(lb->cache);
  else
    for (size_t i = 0; i < g->n; i++) ts_rcache_forget(lb->cache, g->hash[i]);
  free(g->hash);
  *g = (lmdb_gone){0};
}

/* ---- create ---------------------------------------------------------------------------- */

static int apply_create(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  ts_session_rec rec;
  if (!ts_session_decode(op->rec, op->rec_len, &rec)) return TS_EINTERNAL;
  return ts_session_put(t, op->hash, &rec);
}

static void done_plain(ts_write *w, int status) {
  session_op *op = (session_op *)w;
  op->cb.done(op->ctx, status);
  op_free(op);
}

void lmdb_session_create(ts_backend *b, const ts_session_new *n, ts_done_fn done, void *ctx) {
  session_op *op = op_new(b, apply_create, done_plain, ctx, 0);
  uint8_t *copy = op ? malloc(n->rec_len) : NULL;
  if (!copy) {
    free(op);
    done(ctx, TS_ENOMEM);
    return;
  }
  memcpy(copy, n->rec, n->rec_len);
  op->cb.done = done;
  op->rec = copy;
  op->rec_len = n->rec_len;
  memcpy(op->hash, n->hash, TS_HASH_BYTES);
  submit(b, op);
}

/* ---- get (a read) ---------------------------------------------------------------------- */

void lmdb_session_get(ts_backend *b, const uint8_t hash[TS_HASH_BYTES], int64_t now,
                      ts_session_fn done, void *ctx) {
  lmdb_backend *lb = lmdb_of(b);
  ts_session_rec rec;
  const uint8_t *cached;
  size_t len;
  if (lb->cache && ts_rcache_get(lb->cache, hash, &cached, &len)) {
    int64_t swept_at = ts_sweeper_now(lb->sweeper); /* a clock stepped back: see the top */
    int rc = ts_session_decode(cached, len, &rec) ? 0 : TS_EUNAVAILABLE;
    if (rc == 0 && !ts_session_alive(&rec, now > swept_at ? now : swept_at)) rc = TS_ENOTFOUND;
    /* rec points into the cache: valid until done replies or calls the backend (either may
     * run another validate at once, which may reuse the slot) */
    done(ctx, rc, rc ? NULL : &rec);
    return;
  }
  ts_txn *t;
  if (ts_store_snapshot(lb->store, &t) != 0) {
    done(ctx, TS_EUNAVAILABLE, NULL);
    return;
  }
  const void *raw;
  int rc = ts_store_get(t, TS_T_SESSIONS, hash, TS_HASH_BYTES, &raw, &len);
  if (rc == 0 && !ts_session_decode(raw, len, &rec)) rc = TS_EIO;
  if (rc == 0 && !ts_session_alive(&rec, now)) rc = TS_ENOTFOUND;
  if (rc && rc != TS_ENOTFOUND) rc = TS_EUNAVAILABLE;
  if (rc == 0 && lb->cache && len <= TS_RCACHE_RECORD_MAX) /* else its slot's tenant stays */
    ts_rcache_fill(lb->cache, hash, ts_rcache_filling(lb->cache, hash), raw, len);
  done(ctx, rc, rc ? NULL : &rec); /* rec points into the snapshot: valid while done runs */
}

/* ---- touch ----------------------------------------------------------------------------- */

static int apply_touch(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  int rc = ts_session_touch(t, op->hash, op->now);
  return rc == TS_ENOTFOUND ? 0 : rc;
}

static void done_touch(ts_write *w, int status) {
  (void)status; /* a lost touch only shortens the session */
  session_op *op = (session_op *)w;
  ts_rcache_forget(op->lb->cache, op->hash); /* its last_seen_at moved */
  op_free(op);
}

void lmdb_session_touch(ts_backend *b, const uint8_t hash[TS_HASH_BYTES], int64_t at) {
  session_op *op = op_new(b, apply_touch, done_touch, NULL, at);
  if (!op) return;
  memcpy(op->hash, hash, TS_HASH_BYTES);
  submit(b, op);
}

/* ---- rotate ---------------------------------------------------------------------------- */

static int apply_rotate(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  ts_session_rec rec;
  int rc = ts_session_get(t, op->hash, &rec);
  if (rc) return rc;
  if (!ts_session_alive(&rec, op->now)) return TS_ENOTFOUND;
  int64_t seen = rec.last_seen_at;
  rec.last_seen_at = op->now; /* rotation is activity */
  /* A copy: rec points into pages the delete frees; the copy is also what done hands on. */
  op->rec = ts_session_encode(&rec, &op->rec_len);
  if (!op->rec) return TS_ENOMEM;
  ts_session_decode(op->rec, op->rec_len, &rec);
  ts_session_rec stored = rec; /* the expiry entry to delete is the stored record's */
  stored.last_seen_at = seen;
  rc = ts_session_delete(t, op->hash, &stored);
  if (!rc) rc = ts_session_put(t, op->new_hash, &rec);
  return rc;
}

static void done_rotate(ts_write *w, int status) {
  session_op *op = (session_op *)w;
  ts_rcache_forget(op->lb->cache, op->hash); /* the old sid is dead */
  ts_session_rec rec;
  if (status == 0 && !ts_session_decode(op->rec, op->rec_len, &rec)) status = TS_EINTERNAL;
  op->cb.session(op->ctx, status, status ? NULL : &rec);
  op_free(op);
}

void lmdb_session_rotate(ts_backend *b, const uint8_t hash[TS_HASH_BYTES],
                         const uint8_t new_hash[TS_HASH_BYTES], int64_t now, ts_session_fn done,
                         void *ctx) {
  session_op *op = op_new(b, apply_rotate, done_rotate, ctx, now);
  if (!op) {
    done(ctx, TS_ENOMEM, NULL);
    return;
  }
  op->cb.session = done;
  memcpy(op->hash, hash, TS_HASH_BYTES);
  memcpy(op->new_hash, new_hash, TS_HASH_BYTES);
  submit(b, op);
}

/* ---- revoke and revoke_all ------------------------------------------------------------- */

static int apply_revoke(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  if (op->by_handle) {
    int rc = ts_session_by_handle(t, op->handle, op->hash);
    if (rc) return rc == TS_ENOTFOUND ? 0 : rc;
  }
  ts_session_rec rec;
  int rc = ts_session_get(t, op->hash, &rec);
  if (rc) return rc == TS_ENOTFOUND ? 0 : rc;
  op->revoked = ts_session_alive(&rec, op->now) ? 1 : 0;
  return ts_session_delete(t, op->hash, &rec);
}

static int apply_revoke_all(ts_txn *t, ts_write *w) {
  session_op *op = (session_op *)w;
  int n = ts_session_revoke_sub(t, op->sub, op->sub_len, op->has_except ? op->except : NULL,
                                op->now, lmdb_gone_add, &op->gone);
  if (n < 0) return n;
  op->revoked = (unsigned)n;
  return 0;
}

static void done_count(ts_write *w, int status) {
  session_op *op = (session_op *)w;
  if (op->w.apply == apply_revoke_all) lmdb_gone_forget(op->lb, &op->gone);
  else ts_rcache_forget(op->lb->cache, op->hash); /* by handle: the writer found the hash */
  op->cb.count(op->ctx, status, status ? 0 : op->revoked);
  op_free(op);
}

void lmdb_session_revoke(ts_backend *b, const uint8_t *hash, const uint8_t *handle, int64_t now,
                         ts_count_fn done, void *ctx) {
  session_op *op = op_new(b, apply_revoke, done_count, ctx, now);
  if (!op) {
    done(ctx, TS_ENOMEM, 0);
    return;
  }
  op->cb.count = done;
  if (hash) {
    memcpy(op->hash, hash, TS_HASH_BYTES);
  } else {
    memcpy(op->handle, handle, TS_HANDLE_BYTES);
    op->by_handle = true;
  }
  submit(b, op);
}

void lmdb_session_revoke_all(ts_backend *b, const char *sub, size_t sub_len,
                             const uint8_t *except, int64_t now, ts_count_fn done, void *ctx) {
  session_op *op =
      sub_len <= TS_SUB_MAX ? op_new(b, apply_revoke_all, done_count, ctx, now) : NULL;
  if (!op) {
    done(ctx, TS_ENOMEM, 0);
    return;
  }
  op->cb.count = done;
  memcpy(op->sub, sub, sub_len);
  op->sub_len = sub_len;
  if (except) {
    memcpy(op->except, except, TS_HANDLE_BYTES);
    op->has_except = true;
  }
  submit(b, op);
}

/* ---- list (a read) --------------------------------------------------------------------- */

#define LIST_SCAN_EXTRA 1000 /* dead entries (not swept yet) one call may step over */
#define LIST_MAX 1000

/* Where a page starts: the first handle of sub after `after` (or the first one). */
static int list_start(ts_cursor *c, const char *sub, size_t sub_len, const uint8_t *after,
                      const void **hv, size_t *hl) {
  if (!after) return ts_cursor_dup_first(c, sub, sub_len, hv, hl);
  int rc = ts_cursor_dup_seek(c, sub, sub_len, after, TS_HANDLE_BYTES, hv, hl);
  if (rc == 0 && *hl == TS_HANDLE_BYTES && memcmp(*hv, after, TS_HANDLE_BYTES) == 0)
    rc = ts_cursor_dup_next(c, hv, hl);
  return rc;
}

/* One page of sub's live sessions, in handle order (the by_sub duplicates are sorted by
 * handle, so a page resumes exactly after the last handle of the previous one). The work of
 * one call is bounded: at most limit + LIST_SCAN_EXTRA entries are read; a page cut short by
 * dead entries still says `more`. The records point into the snapshot, valid during done. */
void lmdb_session_list(ts_backend *b, const char *sub, size_t sub_len, const uint8_t *after,
                       size_t limit, int64_t now, ts_list_fn done, void *ctx) {
  static ts_session_rec recs[LIST_MAX]; /* loop thread only */
  uint8_t last[TS_HANDLE_BYTES] = {0};
  ts_txn *t = NULL;
  ts_cursor *c = NULL;
  if (limit > LIST_MAX) limit = LIST_MAX;
  if (ts_store_read(lmdb_of(b)->store, &t) != 0 || ts_cursor_open(t, TS_T_BY_SUB, &c) != 0) {
    ts_store_abort(t); /* NULL when the read itself failed (e.g. every reader slot taken) */
    done(ctx, TS_EUNAVAILABLE, NULL, 0, false, last);
    return;
  }
  size_t count = 0, scanned = 0;
  bool more = false;
  if (after) memcpy(last, after, TS_HANDLE_BYTES);
  const void *hv;
  size_t hl;
  for (int rc = list_start(c, sub, sub_len, after, &hv, &hl); rc == 0;
       rc = ts_cursor_dup_next(c, &hv, &hl)) {
    if (count == limit || scanned == limit + LIST_SCAN_EXTRA) {
      more = true; /* something follows: the next page starts after `last` */
      break;
    }
    scanned++;
    if (hl != TS_HANDLE_BYTES) continue;
    memcpy(last, hv, TS_HANDLE_BYTES);
    uint8_t hash[TS_HASH_BYTES];
    if (ts_session_by_handle(t, hv, hash) != 0 || ts_session_get(t, hash, &recs[count]) != 0 ||
        !ts_session_alive(&recs[count], now))
      continue;
    count++;
  }
  ts_cursor_close(c);
  done(ctx, 0, recs, count, more, last);
  ts_store_abort(t);
}
