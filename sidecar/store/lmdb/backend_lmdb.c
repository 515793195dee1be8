/* sidecar/store/lmdb/backend_lmdb.c: the LMDB backend (lmdb_backend.h): opening and closing it in
 * dependency order, its gauges, the feed operations, and its row of operations.
 *
 * Close order matters: the writer's done callbacks reply and sign tokens, so the writer stops
 * first (every completion delivered), then the sweeper, then the store closes.
 *
 * One daemon per data directory: an flock on <data>/tesserad.lock, held while the backend is
 * open (the kernel drops it when the process dies, kill -9 included). LMDB itself would let
 * two processes share the store, but the session cache (session_ops.c) is coherent only with
 * this daemon's own writes, and two sweepers and writers would serve no one. */
#include "lmdb_backend.h"

#include "domain.h"
#include "error.h"
#include "feed.h"
#include "log.h"
#include "record_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Takes <dir>/tesserad.lock; TS_ECONFIG (logged) when another process holds it. */
static int lock_data_dir(lmdb_backend *lb, const char *dir) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    ts_log(TS_LOG_ERROR, "cannot create the data directory", "{s:s, s:s}", "data", dir, "error",
           strerror(errno));
    return TS_ECONFIG;
  }
  char path[4096];
  snprintf(path, sizeof(path), "%s/tesserad.lock", dir);
  lb->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lb->lock_fd < 0) {
    ts_log(TS_LOG_ERROR, "cannot open the data directory's lock", "{s:s, s:s}", "path", path,
           "error", strerror(errno));
    return TS_ECONFIG;
  }
  if (flock(lb->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    ts_log(TS_LOG_ERROR,
           e == EWOULDBLOCK ? "another tesserad uses this data directory"
                            : "cannot lock the data directory",
           "{s:s, s:s}", "data", dir, "error", strerror(e));
    close(lb->lock_fd);
    lb->lock_fd = -1;
    return TS_ECONFIG;
  }
  return 0;
}

void lmdb_published(lmdb_backend *lb, uint64_t last) {
  if (last && lb->base.on_published)
    lb->base.on_published(lb->base.published_ctx, (ts_feed_pos){last, 0});
}

/* ---- the feed --------------------------------------------------------------------------- */

static void feed_resume(ts_backend *b, const char *since, size_t since_len, ts_resume_fn done,
                        void *ctx) {
  lmdb_backend *lb = lmdb_of(b);
  ts_txn *t;
  uint64_t latest = 0;
  int rc = ts_store_read(lb->store, &t);
  if (rc == 0) {
    rc = ts_feed_latest(t, &latest);
    ts_store_abort(t);
  }
  if (rc) {
    done(ctx, TS_EUNAVAILABLE, false, (ts_feed_pos){0, 0}, (ts_feed_pos){0, 0});
    return;
  }
  uint64_t after = latest; /* without since: what follows now */
  bool resumable = !since || ts_cursor_resume(since, since_len, lb->store_id, latest, &after);
  done(ctx, 0, resumable, (ts_feed_pos){after, 0}, (ts_feed_pos){latest, 0});
}

static void feed_read(ts_backend *b, ts_feed_pos after, int64_t now, size_t max, ts_feed_fn done,
                      void *ctx) {
  static ts_feed_entry chunk[256]; /* loop thread only */
  ts_txn *t;
  size_t n = 0;
  uint64_t last = after.major;
  bool more = false;
  if (max > sizeof(chunk) / sizeof(chunk[0])) max = sizeof(chunk) / sizeof(chunk[0]);
  int rc = ts_store_read(lmdb_of(b)->store, &t);
  if (rc == 0) {
    rc = ts_feed_read(t, after.major, now, chunk, max, &n, &last, &more);
    ts_store_abort(t);
  }
  done(ctx, rc ? TS_EUNAVAILABLE : 0, chunk, rc ? 0 : n, (ts_feed_pos){last, 0}, more);
}

static void cursor_format(ts_backend *b, ts_feed_pos pos, char out[TS_CURSOR_MAX + 1]) {
  ts_cursor_format(out, lmdb_of(b)->store_id, pos.major);
}

/* ---- gauges and state ------------------------------------------------------------------- */

static void stats(ts_backend *b, ts_stat_list *l) {
  lmdb_backend *lb = lmdb_of(b);
  ts_store_info info;
  if (ts_store_info_get(lb->store, &info) == 0) {
    ts_stat_add(l, "sessions", info.entries[TS_T_SESSIONS]);
    ts_stat_add(l, "families", info.entries[TS_T_FAMILIES]);
    ts_stat_add(l, "revocations", info.entries[TS_T_REVOKED] + info.entries[TS_T_CUTOFFS]);
    ts_stat_add(l, "expiry_index", info.entries[TS_T_EXPIRY]);
    ts_stat_add(l, "feed_entries", info.entries[TS_T_FEED]);
    ts_stat_add(l, "store_bytes", info.used_bytes);
    ts_stat_add(l, "store_file_bytes", info.file_bytes);
    ts_stat_add(l, "store_max_bytes", info.max_bytes);
    ts_stat_add(l, "store_disk_bytes", info.disk_bytes);
    ts_stat_add(l, "store_disk_short", info.disk_short);
  }
  ts_writer_stats ws;
  ts_writer_stats_get(lb->writer, &ws);
  ts_stat_add(l, "store_commits", ws.commits);
  ts_stat_add(l, "store_writes", ws.writes);
  ts_stat_add(l, "store_failed_commits", ws.failed_commits);
  ts_sweeper_stats ss;
  ts_sweeper_stats_get(lb->sweeper, &ss);
  ts_stat_add(l, "swept", ss.swept);
  ts_stat_add(l, "sweeps", ss.sweeps);
  ts_stat_add(l, "store_readers_cleared", ss.readers_cleared);
  ts_stat_add(l, "store_up", 1);
  ts_rcache_counts n;
  ts_rcache_counts_get(lb->cache, &n);
  ts_stat_add(l, "session_cache_entries", n.entries);
  ts_stat_add(l, "session_cache_hits", n.hits);
  ts_stat_add(l, "session_cache_misses", n.misses);
  ts_stat_add(l, "session_cache_flushes", n.flushes);
}

static bool ready(ts_backend *b) {
  (void)b;
  return true; /* an embedded store is there while the daemon runs */
}

static void on_turn(uv_prepare_t *h) { ts_store_snapshot_end(h->data); }

static void on_turn_closed(uv_handle_t *h) { free(h); }

static void close_lmdb(ts_backend *b) {
  lmdb_backend *lb = lmdb_of(b);
  if (lb->turn) uv_close((uv_handle_t *)lb->turn, on_turn_closed);
  if (lb->writer) ts_writer_stop(lb->writer); /* every owed completion runs */
  if (lb->sweeper) ts_sweeper_stop(lb->sweeper);
  ts_store_close(lb->store);
  ts_rcache_close(lb->cache);
  if (lb->lock_fd >= 0) close(lb->lock_fd); /* releases the flock */
  free(lb);
}

static const ts_backend_ops lmdb_ops = {
    .name = "lmdb",
    .session_create = lmdb_session_create,
    .session_get = lmdb_session_get,
    .session_touch = lmdb_session_touch,
    .session_rotate = lmdb_session_rotate,
    .session_revoke = lmdb_session_revoke,
    .session_revoke_all = lmdb_session_revoke_all,
    .session_list = lmdb_session_list,
    .family_create = lmdb_family_create,
    .family_refresh = lmdb_family_refresh,
    .family_revoke = lmdb_family_revoke,
    .revoke_jti = lmdb_revoke_jti,
    .user_revoke = lmdb_user_revoke,
    .revocation_check = lmdb_revocation_check,
    .consume = lmdb_consume,
    .feed_resume = feed_resume,
    .feed_read = feed_read,
    .cursor_format = cursor_format,
    .stats = stats,
    .ready = ready,
    .close = close_lmdb,
};

int ts_backend_lmdb_open(ts_backend **out, const ts_config *cfg, void *uv_loop) {
  *out = NULL;
  lmdb_backend *lb = calloc(1, sizeof(*lb));
  if (!lb) return TS_ENOMEM;
  lb->base.ops = &lmdb_ops;
  lb->cfg = cfg;
  lb->lock_fd = -1;
  char why[512] = "";
  ts_store_options so = {cfg->data_dir, cfg->max_store_bytes,
                         cfg->durability == TS_DURABILITY_RELAXED};
  int rc = lock_data_dir(lb, cfg->data_dir); /* before LMDB is touched at all */
  if (rc == 0 && (rc = ts_store_open(&lb->store, &so, why, sizeof(why))) != 0)
    ts_log(TS_LOG_ERROR, "cannot open the store", "{s:s}", "error", why);
  if (rc) {
    if (lb->lock_fd >= 0) close(lb->lock_fd);
    free(lb);
    return rc;
  }
  bool oom;
  lb->cache = ts_rcache_open(cfg->session_cache, &oom);
  if (oom) {
    close_lmdb(&lb->base);
    return TS_ENOMEM;
  }
  if ((rc = ts_feed_open(lb->store, &lb->store_id)) != 0) {
    ts_log(TS_LOG_ERROR, "cannot open the revocation feed", "{s:s}", "error", ts_strerror(rc));
    close_lmdb(&lb->base);
    return rc;
  }
  int cleared = ts_store_reader_check(lb->store);
  if (cleared > 0) ts_log(TS_LOG_INFO, "stale store readers cleared", "{s:i}", "readers", cleared);
  if ((lb->turn = malloc(sizeof(*lb->turn))) == NULL) {
    close_lmdb(&lb->base);
    return TS_ENOMEM;
  }
  uv_prepare_init(uv_loop, lb->turn);
  lb->turn->data = lb->store;
  uv_prepare_start(lb->turn, on_turn);
  uv_unref((uv_handle_t *)lb->turn);
  rc = ts_writer_start(&lb->writer, uv_loop, lb->store, so.relaxed);
  if (rc == 0) rc = ts_sweeper_start(&lb->sweeper, lb->store, cfg->sweep_interval_ms);
  if (rc) {
    ts_log(TS_LOG_ERROR, "cannot start the store threads", NULL);
    close_lmdb(&lb->base);
    return rc;
  }
  ts_log(TS_LOG_INFO, "store open", "{s:s, s:s, s:s, s:I}", "store", "lmdb", "data",
         cfg->data_dir, "durability", so.relaxed ? "relaxed" : "full", "max_store_bytes",
         (json_int_t)cfg->max_store_bytes);
  *out = &lb->base;
  return 0;
}
