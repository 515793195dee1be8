/* sidecar/stats.h: counters for sys.stats.
 *
 * The loop thread owns every field. The store's, writer's and sweeper's come from their own
 * modules (ts_domain_stats). Header only: the helpers are inline. */
#ifndef TS_STATS_H
#define TS_STATS_H

#include "error.h"

#include <stdint.h>

#define TS_STATS_N_ERRORS (TS_ERROR_END_ - TS_ERROR_FIRST_ - 1)

typedef struct ts_stats {
  uint64_t requests;         /* requests dispatched */
  uint64_t accepted;         /* connections accepted (allowed peers) */
  uint64_t rejected_peers;   /* connections cut off at accept: uid/gid not allowed */
  uint64_t closed_protocol;  /* connections closed for a protocol violation */
  uint64_t closed_timeout;   /* connections closed: message not complete in time */
  uint64_t read_pauses;      /* times reading paused for backpressure */
  uint64_t feed_entries_sent; /* revocation entries sent to subscribers, live or replayed */
  uint64_t feed_resets;      /* subscribes whose `since` could not be resumed */
  uint64_t feed_holds;       /* times a subscriber's feed waited for its write queue */
  uint64_t errors[TS_STATS_N_ERRORS]; /* replies per error code (index: err - FIRST - 1) */
} ts_stats;

static inline void ts_stats_count_error(ts_stats *s, int err) {
  int i = err - TS_ERROR_FIRST_ - 1;
  if (i >= 0 && i < TS_STATS_N_ERRORS) s->errors[i]++;
}

#endif
