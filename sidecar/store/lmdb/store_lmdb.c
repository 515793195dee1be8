/* sidecar/store/lmdb/store_lmdb.c: the store on LMDB (one environment, one named database per table).
 *
 * Size: the map is set to --max-store-bytes at open. That reserves address space only; the file
 * grows page by page as data is written, so "growing the map" is LMDB's own file growth, and
 * MDB_MAP_FULL means the cap is reached: the transaction is aborted (nothing half-written)
 * and callers answer `unavailable`.
 * The delete reserve: LMDB copies every page it changes, so a delete needs free pages too; a
 * store filled to the very end could not even revoke a session or sweep an expired one, and
 * would stay full for good. So puts stop short of the cap: once the pages in use reach the cap
 * minus a reserve (1/8 of it, 256 KiB .. 64 MiB), puts answer TS_EMAPFULL before touching
 * anything, and only deletes and urgent puts (revocations) reach into the reserve, in tiers:
 * revocations anyone could make up stop at half of it, revocations of something that exists
 * (ts_store_reserve_all) at a margin of 1/8 of it, kept for deletes and for the pages a commit
 * itself needs, so that a flood cannot make a group commit fail at the hard cap. The file
 * itself never grows past the cap.
 * The decision is taken once per write transaction, on the pages in use when it begins (each
 * writer operation is its own nested transaction), never put by put: how many pages one
 * operation adds depends on where its random keys land (page splits), so a put-by-put check
 * refused an operation half way and then admitted the same operation with other keys, and a
 * store that had answered "full" took new data again with nothing freed. Now an operation that
 * begins below a limit completes (overshooting by at most one operation's pages), and once the
 * limit is reached every operation of that tier is refused until something is deleted.
 * The disk reserve: the cap's tiers only help if the disk can hold the pages they promise. A
 * disk that other files filled would refuse a revocation as readily as a new session, and
 * after a bulk delete no commit could reuse the freed pages (LMDB reuses a commit's frees only
 * after a later commit, which needs pages of its own). So the data file keeps its reserve
 * allocated on the disk ahead of use: each top-level write transaction, when it begins, makes
 * sure the blocks up to the pages in the file plus the reserve are allocated (fallocate with
 * FALLOC_FL_KEEP_SIZE: the file's size, and LMDB, do not see them; LMDB's writes past its end
 * land in them without asking the disk for more). When the disk cannot spare that much
 * (disk_grow: never root's blocks nor the last 1/64 of the file system), the store takes what
 * it can and is "short": the tiers then count against the bytes allocated instead of the cap
 * (the reserve being at most half of them), so new data stops and revocations and deletes use
 * what is allocated, as at the cap. A write transaction begun while short (at most once a
 * second) asks the disk again; when it gives the whole reserve, the cap rules again. A file
 * system without fallocate leaves the store as it was (a warning at start).
 * These fields are touched only in write transactions, under LMDB's writer lock; the gauges
 * are atomic copies for sys.stats.
 * Durability: full (default) commits with fsync; relaxed opens with MDB_NOSYNC and relies on
 * ts_store_sync being called periodically by the writer.
 * MDB_NOTLS: read transactions are tied to the transaction object, not the thread, so a reader
 * slot can be reset and renewed cheaply. */
#include "store.h"

#include "error.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#define SCHEMA_VERSION 1u

struct ts_store {
  MDB_env *env;
  MDB_dbi dbi[TS_T_COUNT_];
  size_t max_bytes;
  size_t page_size, reserve_bytes; /* the reserve: see above (limit_pages) */
  bool disk_reserve;        /* fallocate works here (else the disk reserve is off) */
  uint64_t disk_end;        /* bytes of the data file allocated on the disk by us */
  uint64_t disk_retry_ms;   /* short: when to ask the disk again (monotonic ms) */
  _Atomic uint64_t disk_end_gauge;
  _Atomic bool disk_short;  /* the disk could not give the whole reserve */
  int cleared_at_open; /* stale reader slots cleared by ts_store_open, not yet reported */
  ts_txn *snap;        /* the loop thread's snapshot (ts_store_snapshot), kept between uses */
  bool snap_live;      /* snap holds a snapshot now (else it is reset, its slot kept) */
};

struct ts_txn {
  ts_store *store;
  MDB_txn *txn;
  bool write;
  size_t pages_at_start; /* write: the pages in use when it began (the reserve tiers) */
  bool reserve_all;      /* ts_store_reserve_all */
};

struct ts_cursor {
  MDB_cursor *cur;
};

static const char *const table_names[TS_T_COUNT_] = {
    "meta", "sessions", "handles", "by_sub", "expiry", "families", "revoked", "cutoffs",
    "fam_by_sub", "feed"};

static int map_err(int rc) {
  switch (rc) {
  case 0: return 0;
  case MDB_NOTFOUND: return TS_ENOTFOUND;
  case MDB_MAP_FULL: return TS_EMAPFULL;
  case ENOMEM: return TS_ENOMEM;
  default: return TS_EIO;
  }
}

static int open_tables(ts_store *s, char *why, size_t cap) {
  MDB_txn *txn;
  int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  if (rc) goto fail;
  for (int i = 0; i < TS_T_COUNT_; i++) {
    unsigned flags = MDB_CREATE | (i == TS_T_BY_SUB || i == TS_T_FAM_BY_SUB ? MDB_DUPSORT : 0);
    if ((rc = mdb_dbi_open(txn, table_names[i], flags, &s->dbi[i])) != 0) goto abort;
  }
  MDB_val k = {6, "schema"}, v;
  rc = mdb_get(txn, s->dbi[TS_T_META], &k, &v);
  if (rc == MDB_NOTFOUND) {
    uint32_t version = SCHEMA_VERSION;
    v = (MDB_val){sizeof(version), &version};
    rc = mdb_put(txn, s->dbi[TS_T_META], &k, &v, 0);
  } else if (rc == 0) {
    uint32_t version;
    if (v.mv_size != sizeof(version)) goto bad_schema;
    memcpy(&version, v.mv_data, sizeof(version));
    if (version != SCHEMA_VERSION) goto bad_schema;
  }
  if (rc) goto abort;
  rc = mdb_txn_commit(txn);
  if (rc) goto fail;
  return 0;
bad_schema:
  mdb_txn_abort(txn);
  snprintf(why, cap, "data directory holds an unknown schema version");
  return TS_ECONFIG;
abort:
  mdb_txn_abort(txn);
fail:
  snprintf(why, cap, "cannot open the store's tables: %s", mdb_strerror(rc));
  return map_err(rc) == TS_EMAPFULL ? TS_EMAPFULL : TS_ECONFIG;
}

/* ---- the disk reserve (see the top of this file) -------------------------------------- */

/* What growing found: done (all of target allocated, or what the disk could spare of it),
 * or the file system cannot allocate ahead. */
enum { GROW_DONE, GROW_UNSUPPORTED };

/* Allocates [disk_end, target) of the data file, or as much of it as the disk can spare: never
 * more than the free space unprivileged users may take (f_bavail, so root's reserved blocks
 * stay free), less a headroom left to the other files (1/64 of the file system, 64 KiB to
 * 256 MiB), and in one call, so an ENOSPC cannot leave a half-done allocation behind (ext4
 * keeps the blocks of a failed fallocate). */
static int disk_grow(ts_store *s, int fd, uint64_t target) {
  struct statvfs fs;
  if (fstatvfs(fd, &fs) != 0) return GROW_DONE;
  uint64_t avail = (uint64_t)fs.f_bavail * fs.f_frsize;
  uint64_t headroom = (uint64_t)fs.f_blocks * fs.f_frsize / 64;
  if (headroom < 64 * 1024) headroom = 64 * 1024;
  if (headroom > 256u << 20) headroom = 256u << 20;
  uint64_t ask = target - s->disk_end;
  if (ask > (avail > headroom ? avail - headroom : 0)) ask = avail > headroom ? avail - headroom : 0;
  ask -= ask % s->page_size;
  if (ask == 0) return GROW_DONE;
  int rc;
  while ((rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)s->disk_end, (off_t)ask)) != 0 &&
         errno == EINTR) {
  }
  if (rc == 0) s->disk_end += ask;
  else if (errno != ENOSPC && errno != EDQUOT) return GROW_UNSUPPORTED; /* EOPNOTSUPP and all */
  return GROW_DONE;
}

static uint64_t monotonic_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

/* Writer lock held (a write transaction of this thread is open), or no other thread yet. */
static void disk_reserve_keep(ts_store *s) {
  if (!s->disk_reserve) return;
  MDB_envinfo ei;
  int fd;
  if (mdb_env_info(s->env, &ei) != 0 || mdb_env_get_fd(s->env, &fd) != 0) return;
  /* In whole pages, never past the cap (LMDB can use no more). */
  uint64_t psize = s->page_size, used = ((uint64_t)ei.me_last_pgno + 1) * psize;
  uint64_t cap = s->max_bytes - s->max_bytes % psize;
  uint64_t want = (used + s->reserve_bytes + psize - 1) / psize * psize;
  if (want > cap) want = cap > used ? cap : used;
  bool was_short = atomic_load(&s->disk_short);
  if (want > s->disk_end) {
    if (was_short && monotonic_ms() < s->disk_retry_ms) return;
    /* Whole MiBs: most commits ask nothing. */
    uint64_t unit = 1u << 20;
    uint64_t target = (want + unit - 1) / unit * unit;
    if (target > want && target > cap) target = want;
    if (disk_grow(s, fd, target) == GROW_UNSUPPORTED) {
      s->disk_reserve = false;
      atomic_store(&s->disk_short, false);
      ts_log(TS_LOG_WARN, "the file system cannot allocate ahead; the store keeps no disk reserve",
             "{s:s}", "error", strerror(errno));
      return;
    }
    atomic_store(&s->disk_end_gauge, s->disk_end);
  }
  bool is_short = s->disk_end < want;
  if (is_short) s->disk_retry_ms = monotonic_ms() + 1000;
  if (is_short == was_short) return;
  atomic_store(&s->disk_short, is_short);
  if (is_short)
    ts_log(TS_LOG_WARN,
           "the disk cannot hold the store's reserve: new data is refused before the disk is "
           "full; revocations and deletes use the space allocated",
           "{s:I, s:I}", "allocated_bytes", (json_int_t)s->disk_end, "wanted_bytes",
           (json_int_t)want);
  else
    ts_log(TS_LOG_INFO, "the disk holds the store's reserve again", "{s:I}", "allocated_bytes",
           (json_int_t)s->disk_end);
}

/* The pages in use at which a write transaction's puts of one tier are refused. share: the
 * part of the reserve the tier leaves alone (1: new data leaves all of it, 2: revocations
 * anyone could make up leave half, 8: verified revocations leave the margin). Against the cap,
 * or, while the disk is short, against what is allocated (the reserve then at most half). */
static size_t limit_pages(const ts_store *s, size_t share) {
  size_t cap = (s->max_bytes - s->reserve_bytes / share) / s->page_size;
  if (!atomic_load(&s->disk_short)) return cap;
  uint64_t r = s->reserve_bytes < s->disk_end / 2 ? s->reserve_bytes : s->disk_end / 2;
  size_t disk = (size_t)((s->disk_end - r / share) / s->page_size);
  return disk < cap ? disk : cap;
}

int ts_store_open(ts_store **out, const ts_store_options *opt, char *why, size_t why_cap) {
  *out = NULL;
  if (mkdir(opt->dir, 0700) != 0 && errno != EEXIST) {
    snprintf(why, why_cap, "cannot create %s: %s", opt->dir, strerror(errno));
    return TS_ECONFIG;
  }
  ts_store *s = calloc(1, sizeof(*s));
  if (!s) return TS_ENOMEM;
  s->max_bytes = opt->max_bytes;
  int rc = mdb_env_create(&s->env);
  if (rc == 0) rc = mdb_env_set_maxdbs(s->env, TS_T_COUNT_);
  if (rc == 0) rc = mdb_env_set_maxreaders(s->env, 126);
  if (rc == 0) rc = mdb_env_set_mapsize(s->env, opt->max_bytes);
  if (rc == 0)
    rc = mdb_env_open(s->env, opt->dir, MDB_NOTLS | (opt->relaxed ? MDB_NOSYNC : 0), 0600);
  if (rc) {
    snprintf(why, why_cap, "cannot open the store in %s: %s", opt->dir, mdb_strerror(rc));
    if (s->env) mdb_env_close(s->env);
    free(s);
    return TS_ECONFIG;
  }
  MDB_stat est;
  mdb_env_stat(s->env, &est);
  size_t reserve = opt->max_bytes / 8;
  if (reserve < 256 * 1024) reserve = 256 * 1024;
  if (reserve > 64u * 1024 * 1024) reserve = 64u * 1024 * 1024;
  if (reserve > opt->max_bytes / 2) reserve = opt->max_bytes / 2;
  s->reserve_bytes = reserve;
  s->page_size = est.ms_psize;
  s->disk_reserve = true;
  int dead = 0;
  if (mdb_reader_check(s->env, &dead) == 0 && dead > 0) s->cleared_at_open = dead;
  if ((rc = open_tables(s, why, why_cap)) != 0) {
    mdb_env_close(s->env);
    free(s);
    return rc;
  }
  /* Blocks the file holds already, its own and any allocated ahead by an earlier run. */
  int fd;
  struct stat fst;
  if (mdb_env_get_fd(s->env, &fd) == 0 && fstat(fd, &fst) == 0) {
    uint64_t held = (uint64_t)fst.st_blocks * 512;
    s->disk_end = held > (uint64_t)fst.st_size ? held : (uint64_t)fst.st_size;
    s->disk_end -= s->disk_end % s->page_size;
    atomic_store(&s->disk_end_gauge, s->disk_end);
  }
  disk_reserve_keep(s); /* no other thread yet: as if under the writer lock */
  *out = s;
  return 0;
}

void ts_store_close(ts_store *s) {
  if (!s) return;
  if (s->snap) {
    mdb_txn_abort(s->snap->txn);
    free(s->snap);
  }
  mdb_env_sync(s->env, 1);
  mdb_env_close(s->env);
  free(s);
}

int ts_store_sync(ts_store *s) { return map_err(mdb_env_sync(s->env, 1)); }

/* The first call also counts the slots ts_store_open cleared before it opened the tables (the
 * domain's check at start, which logs them, runs before the sweeper thread exists). */
int ts_store_reader_check(ts_store *s) {
  int dead = 0;
  int rc = mdb_reader_check(s->env, &dead);
  if (rc) return map_err(rc);
  dead += s->cleared_at_open;
  s->cleared_at_open = 0;
  return dead;
}

int ts_store_info_get(ts_store *s, ts_store_info *info) {
  memset(info, 0, sizeof(*info));
  MDB_txn *txn;
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
  if (rc) return map_err(rc);
  for (int i = 0; i < TS_T_COUNT_; i++) {
    MDB_stat st;
    if (mdb_stat(txn, s->dbi[i], &st) == 0) info->entries[i] = st.ms_entries;
  }
  MDB_envinfo ei;
  MDB_stat est;
  mdb_env_info(s->env, &ei);
  mdb_env_stat(s->env, &est);
  /* me_last_pgno is the file's high-water mark: it never comes down when data is deleted.
   * Pages in use are those below it minus the free ones, which LMDB keeps in its free list
   * (database 0: each value is a page-number list whose first word is its length). */
  uint64_t free_pages = 0;
  MDB_cursor *fc;
  if (mdb_cursor_open(txn, 0, &fc) == 0) {
    MDB_val fk, fv;
    while (mdb_cursor_get(fc, &fk, &fv, MDB_NEXT) == 0) {
      size_t n = 0;
      if (fv.mv_size >= sizeof(n)) memcpy(&n, fv.mv_data, sizeof(n));
      free_pages += n;
    }
    mdb_cursor_close(fc);
  }
  mdb_txn_abort(txn);
  uint64_t pages = (uint64_t)ei.me_last_pgno + 1;
  info->used_bytes = (pages > free_pages ? pages - free_pages : 0) * est.ms_psize;
  info->max_bytes = s->max_bytes;
  info->disk_bytes = atomic_load(&s->disk_end_gauge);
  info->disk_short = atomic_load(&s->disk_short);
  const char *path;
  struct stat fst;
  char file[4096];
  if (mdb_env_get_path(s->env, &path) == 0) {
    snprintf(file, sizeof(file), "%s/data.mdb", path);
    if (stat(file, &fst) == 0) info->file_bytes = (uint64_t)fst.st_size;
  }
  return 0;
}

int ts_store_file_id(ts_store *s, uint64_t *id) {
  const char *path;
  char file[4096];
  struct stat st;
  if (mdb_env_get_path(s->env, &path) != 0) return TS_EIO;
  snprintf(file, sizeof(file), "%s/data.mdb", path);
  if (stat(file, &st) != 0) return TS_EIO;
  *id = (uint64_t)st.st_ino;
  return 0;
}

static size_t pages_in_use(ts_txn *t);

static int txn_new(ts_store *s, MDB_txn *parent, bool write, ts_txn **out) {
  *out = NULL; /* on failure too: ts_store_abort(NULL) is a no-op */
  ts_txn *t = malloc(sizeof(*t));
  if (!t) return TS_ENOMEM;
  int rc = mdb_txn_begin(s->env, parent, write ? 0 : MDB_RDONLY, &t->txn);
  if (rc) {
    free(t);
    return map_err(rc);
  }
  t->store = s;
  t->write = write;
  t->reserve_all = false;
  if (write && !parent) disk_reserve_keep(s);
  t->pages_at_start = write ? pages_in_use(t) : 0;
  *out = t;
  return 0;
}

int ts_store_read(ts_store *s, ts_txn **out) { return txn_new(s, NULL, false, out); }

int ts_store_snapshot(ts_store *s, ts_txn **out) {
  *out = NULL;
  if (!s->snap) {
    int rc = txn_new(s, NULL, false, &s->snap);
    if (rc) return rc;
    s->snap_live = true;
  } else if (!s->snap_live) {
    int rc = mdb_txn_renew(s->snap->txn);
    if (rc) return map_err(rc);
    s->snap_live = true;
  }
  *out = s->snap;
  return 0;
}

void ts_store_snapshot_end(ts_store *s) {
  if (!s->snap_live) return;
  mdb_txn_reset(s->snap->txn); /* the reader slot stays ours: renew takes no lock */
  s->snap_live = false;
}
int ts_store_write(ts_store *s, ts_txn **out) { return txn_new(s, NULL, true, out); }
int ts_store_nest(ts_txn *parent, ts_txn **out) {
  return txn_new(parent->store, parent->txn, true, out);
}

int ts_store_commit(ts_txn *t) {
  int rc = t->write ? mdb_txn_commit(t->txn) : (mdb_txn_abort(t->txn), 0);
  free(t);
  return map_err(rc);
}

void ts_store_abort(ts_txn *t) {
  if (!t) return;
  mdb_txn_abort(t->txn);
  free(t);
}

int ts_store_get(ts_txn *t, enum ts_table tb, const void *key, size_t klen, const void **val,
                 size_t *vlen) {
  MDB_val k = {klen, (void *)key}, v;
  int rc = mdb_get(t->txn, t->store->dbi[tb], &k, &v);
  if (rc) return map_err(rc);
  *val = v.mv_data;
  *vlen = v.mv_size;
  return 0;
}

/* Pages the transaction's trees use, its own changes included: every table, the main table
 * naming them, the free list's own pages, and the two meta pages. (Duplicate sub-trees of
 * by_sub are not in their table's counts: a small underestimate, bounded by the map size.) */
static size_t pages_in_use(ts_txn *t) {
  size_t n = 2;
  MDB_stat st;
  for (int i = -2; i < TS_T_COUNT_; i++) /* -2, -1: LMDB's free list (0) and main table (1) */
    if (mdb_stat(t->txn, i < 0 ? (MDB_dbi)(i + 2) : t->store->dbi[i], &st) == 0)
      n += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
  return n;
}

static int put_raw(ts_txn *t, enum ts_table tb, const void *key, size_t klen, const void *val,
                   size_t vlen) {
  MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
  int rc = mdb_put(t->txn, t->store->dbi[tb], &k, &v, 0);
  return rc == MDB_KEYEXIST ? 0 : map_err(rc);
}

int ts_store_put(ts_txn *t, enum ts_table tb, const void *key, size_t klen, const void *val,
                 size_t vlen) {
  if (t->pages_at_start >= limit_pages(t->store, 1)) return TS_EMAPFULL; /* the reserve */
  return put_raw(t, tb, key, klen, val, vlen);
}

void ts_store_reserve_all(ts_txn *t) { t->reserve_all = true; }

int ts_store_put_urgent(ts_txn *t, enum ts_table tb, const void *key, size_t klen,
                        const void *val, size_t vlen) {
  size_t limit = limit_pages(t->store, t->reserve_all ? 8 : 2);
  if (t->pages_at_start >= limit) return TS_EMAPFULL;
  return put_raw(t, tb, key, klen, val, vlen);
}

int ts_store_del(ts_txn *t, enum ts_table tb, const void *key, size_t klen, const void *val,
                 size_t vlen) {
  MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
  return map_err(mdb_del(t->txn, t->store->dbi[tb], &k, val ? &v : NULL));
}

int ts_cursor_open(ts_txn *t, enum ts_table tb, ts_cursor **out) {
  ts_cursor *c = malloc(sizeof(*c));
  if (!c) return TS_ENOMEM;
  int rc = mdb_cursor_open(t->txn, t->store->dbi[tb], &c->cur);
  if (rc) {
    free(c);
    return map_err(rc);
  }
  *out = c;
  return 0;
}

void ts_cursor_close(ts_cursor *c) {
  if (!c) return;
  mdb_cursor_close(c->cur);
  free(c);
}

static int cursor_get(ts_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op, const void **ko,
                      size_t *kl, const void **vo, size_t *vl) {
  int rc = mdb_cursor_get(c->cur, k, v, op);
  if (rc) return map_err(rc);
  if (ko) *ko = k->mv_data, *kl = k->mv_size;
  if (vo) *vo = v->mv_data, *vl = v->mv_size;
  return 0;
}

int ts_cursor_seek(ts_cursor *c, const void *key, size_t klen, const void **k, size_t *kl,
                   const void **v, size_t *vl) {
  MDB_val mk = {klen, (void *)key}, mv;
  return cursor_get(c, &mk, &mv, key ? MDB_SET_RANGE : MDB_FIRST, k, kl, v, vl);
}

int ts_cursor_next(ts_cursor *c, const void **k, size_t *kl, const void **v, size_t *vl) {
  MDB_val mk, mv;
  return cursor_get(c, &mk, &mv, MDB_NEXT, k, kl, v, vl);
}

int ts_cursor_dup_first(ts_cursor *c, const void *key, size_t klen, const void **v, size_t *vl) {
  MDB_val mk = {klen, (void *)key}, mv;
  return cursor_get(c, &mk, &mv, MDB_SET_KEY, NULL, NULL, v, vl);
}

int ts_cursor_dup_next(ts_cursor *c, const void **v, size_t *vl) {
  MDB_val mk, mv;
  return cursor_get(c, &mk, &mv, MDB_NEXT_DUP, NULL, NULL, v, vl);
}

int ts_cursor_dup_seek(ts_cursor *c, const void *key, size_t klen, const void *val, size_t vlen,
                       const void **v, size_t *vl) {
  MDB_val mk = {klen, (void *)key}, mv = {vlen, (void *)val};
  return cursor_get(c, &mk, &mv, MDB_GET_BOTH_RANGE, NULL, NULL, v, vl);
}

int ts_cursor_del(ts_cursor *c) { return map_err(mdb_cursor_del(c->cur, 0)); }
