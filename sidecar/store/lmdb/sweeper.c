/* sidecar/store/lmdb/sweeper.c: see sweeper.h. Design after Redis' expire cycle: bounded work per step,
 * a time budget, and no step that holds the write lock for long.
 * Only `stopping` (under lock) and the stats (atomics) are shared with other threads. */
#include "sweeper.h"

#include "error.h"
#include "log.h"
#include "families.h"
#include "feed.h"
#include "revocations.h"
#include "session_store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SWEEP_BATCH 256
#define SWEEP_BUDGET_MS 10
#define READER_CHECK_EVERY 30 /* passes */

struct ts_sweeper {
  ts_store *store;
  int64_t interval_ms;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  bool stopping;
  _Atomic uint64_t swept, sweeps, readers_cleared;
  _Atomic int64_t high_now; /* the latest `now` a pass began with (ts_sweeper_now) */
};

static int64_t mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Deletes what one expiry entry stands for, and the entry. Returns records deleted or TS_E*. */
static int sweep_entry(ts_txn *t, const uint8_t *k, size_t kl, int64_t now) {
  char kind = (char)k[8];
  const uint8_t *key = k + 9;
  size_t klen = kl - 9;
  int deleted = 0, rc = 0;
  if (kind == 's' && klen == TS_HASH_BYTES) {
    ts_session_rec r;
    rc = ts_session_get(t, key, &r);
    if (rc == 0 && !ts_session_alive(&r, now)) {
      rc = ts_session_delete(t, key, &r); /* removes this entry too */
      return rc ? rc : 1;
    }
    if (rc && rc != TS_ENOTFOUND) return rc;
  } else if (kind == 'F') {
    deleted = ts_family_sweep(t, key, klen, now);
    if (deleted < 0) return deleted;
  } else if (kind == 'q') {
    deleted = ts_feed_sweep(t, key, klen, now);
    if (deleted < 0) return deleted;
  } else if (kind == 'r' || kind == 'c') {
    deleted = ts_revoked_sweep(t, kind, key, klen, now);
    if (deleted < 0) return deleted;
  }
  /* Unknown kind, a record already gone, or a stale entry of a touched session. */
  rc = ts_store_del(t, TS_T_EXPIRY, k, kl, NULL, 0);
  return rc && rc != TS_ENOTFOUND ? rc : deleted;
}

/* One bounded transaction. Returns records deleted (>= 0) or TS_E*; *more = due entries remain. */
static int sweep_step(ts_store *store, int64_t now, bool *more) {
  uint8_t keys[SWEEP_BATCH][TS_EXPIRY_KEY_MAX];
  size_t lens[SWEEP_BATCH];
  size_t n = 0;
  *more = false;
  ts_txn *t;
  int rc = ts_store_write(store, &t);
  if (rc) return rc;
  ts_cursor *c;
  if ((rc = ts_cursor_open(t, TS_T_EXPIRY, &c)) != 0) goto fail;
  const void *k, *v;
  size_t kl, vl;
  for (rc = ts_cursor_seek(c, NULL, 0, &k, &kl, &v, &vl); rc == 0 && n < SWEEP_BATCH;
       rc = ts_cursor_next(c, &k, &kl, &v, &vl)) {
    if (kl < 9 || kl > TS_EXPIRY_KEY_MAX || ts_expiry_key_time(k) > now) break;
    memcpy(keys[n], k, kl);
    lens[n++] = kl;
  }
  *more = n == SWEEP_BATCH;
  ts_cursor_close(c);
  int64_t deadline = mono_ms() + SWEEP_BUDGET_MS;
  int deleted = 0;
  for (size_t i = 0; i < n; i++) {
    int d = sweep_entry(t, keys[i], lens[i], now);
    if (d < 0) {
      rc = d;
      goto fail;
    }
    deleted += d;
    if (mono_ms() > deadline) {
      *more = true;
      break;
    }
  }
  rc = ts_store_commit(t);
  return rc ? rc : deleted;
fail:
  ts_store_abort(t);
  return rc;
}

int ts_sweep_pass(ts_store *store, int64_t now, uint64_t *deleted) {
  *deleted = 0;
  bool more = true;
  while (more) {
    int n = sweep_step(store, now, &more);
    if (n < 0) return n;
    *deleted += (uint64_t)n;
  }
  return 0;
}

static void *sweeper_main(void *arg) {
  ts_sweeper *s = arg;
  unsigned passes = 0;
  pthread_mutex_lock(&s->lock);
  while (!s->stopping) {
    pthread_mutex_unlock(&s->lock);
    uint64_t deleted = 0;
    int64_t now = (int64_t)time(NULL);
    if (now > atomic_load(&s->high_now)) atomic_store(&s->high_now, now); /* before any delete */
    int rc = ts_sweep_pass(s->store, now, &deleted);
    if (rc) ts_log(TS_LOG_WARN, "sweep failed; will retry", "{s:s}", "error", ts_strerror(rc));
    atomic_fetch_add(&s->swept, deleted);
    atomic_fetch_add(&s->sweeps, 1);
    if (deleted) ts_log(TS_LOG_DEBUG, "swept", "{s:I}", "deleted", (json_int_t)deleted);
    if (++passes % READER_CHECK_EVERY == 0) {
      int cleared = ts_store_reader_check(s->store);
      if (cleared > 0) atomic_fetch_add(&s->readers_cleared, (uint64_t)cleared);
    }
    pthread_mutex_lock(&s->lock);
    if (s->stopping) break;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += s->interval_ms / 1000;
    until.tv_nsec += (s->interval_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
    while (!s->stopping && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0) {}
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

int ts_sweeper_start(ts_sweeper **out, ts_store *store, int64_t interval_ms) {
  ts_sweeper *s = calloc(1, sizeof(*s));
  if (!s) return TS_ENOMEM;
  s->store = store;
  s->interval_ms = interval_ms;
  pthread_mutex_init(&s->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->wake, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&s->thread, NULL, sweeper_main, s) != 0) {
    free(s);
    return TS_EINTERNAL;
  }
  *out = s;
  return 0;
}

void ts_sweeper_stop(ts_sweeper *s) {
  pthread_mutex_lock(&s->lock);
  s->stopping = true;
  pthread_cond_signal(&s->wake);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->thread, NULL);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->wake);
  free(s);
}

int64_t ts_sweeper_now(ts_sweeper *s) { return s ? atomic_load(&s->high_now) : 0; }

void ts_sweeper_stats_get(ts_sweeper *s, ts_sweeper_stats *out) {
  out->swept = atomic_load(&s->swept);
  out->sweeps = atomic_load(&s->sweeps);
  out->readers_cleared = atomic_load(&s->readers_cleared);
}
