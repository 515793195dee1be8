/* sidecar/store/lmdb/sweeper.h: the TTL sweeper thread.
 *
 * Every --sweep-interval it walks the expiry index in time order and deletes what has expired
 * (sessions now; revocations, consumed tokens and families as they are added), in small
 * transactions (at most SWEEP_BATCH entries or SWEEP_BUDGET_MS each) so the writer thread is
 * never kept waiting for long; it also clears reader slots of dead processes. It never touches
 * the loop thread. Stop wakes it and joins it. */
#ifndef TS_SWEEPER_H
#define TS_SWEEPER_H

#include "store.h"

#include <stdint.h>

typedef struct ts_sweeper ts_sweeper;

typedef struct ts_sweeper_stats {
  uint64_t swept;           /* records deleted */
  uint64_t sweeps;          /* passes */
  uint64_t readers_cleared; /* stale reader slots */
} ts_sweeper_stats;

int ts_sweeper_start(ts_sweeper **out, ts_store *store, int64_t interval_ms);
void ts_sweeper_stop(ts_sweeper *s);
void ts_sweeper_stats_get(ts_sweeper *s, ts_sweeper_stats *out);
/* The latest wall-clock second a pass began with (0 before the first; any thread). Everything
 * a pass deleted had expired at a time no later than this. */
int64_t ts_sweeper_now(ts_sweeper *s);

/* One pass at time `now`: deletes everything that expired at or before it. Returns 0 or TS_E*;
 * *deleted counts the records removed. Usable without the thread (tests, tools). */
int ts_sweep_pass(ts_store *store, int64_t now, uint64_t *deleted);

#endif
