/* sidecar/stats.h: counters for sys.stats.
 *
 * The loop thread owns every field. The method rows are const (methods/method.h): their call
 * counts are method_calls here, indexed like the list of methods/list.c. The store's,
 * writer's and sweeper's counters come from their own modules (ts_domain_stats). Header only:
 * the helpers are inline. */
#ifndef TS_STATS_H
#define TS_STATS_H

#include "error.h"

#include <stdint.h>

#define TS_STATS_N_ERRORS (TS_ERROR_END_ - TS_ERROR_FIRST_ - 1)
#define TS_STATS_MAX_METHODS 32 /* room for the rows of methods/list.c (checked there) */
/* Replies per method and code (observe.c): [0] results, [1 + i] the wire error code i in
 * ts_stats_codes order. */
#define TS_STATS_N_CODES 11
/* The latency histogram's upper bounds (observe.c), in seconds; +Inf is the count. */
#define TS_STATS_BUCKETS {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, \
                          0.1, 0.25, 1.0}
#define TS_STATS_N_BUCKETS 12
/* Revocations by kind (observe.c, from the replies of the revoking methods). */
enum { TS_REVOKE_SESSION, TS_REVOKE_FAMILY, TS_REVOKE_JTI, TS_REVOKE_USER, TS_REVOKE_N_KINDS };

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
  uint64_t method_calls[TS_STATS_MAX_METHODS]; /* calls per method, by its place in the list */
  /* observe.c: per method (index as method_calls) */
  uint64_t method_codes[TS_STATS_MAX_METHODS][TS_STATS_N_CODES];
  uint64_t method_buckets[TS_STATS_MAX_METHODS][TS_STATS_N_BUCKETS]; /* not cumulative */
  uint64_t method_ns[TS_STATS_MAX_METHODS];  /* sum of the reply latencies */
  uint64_t revocations[TS_REVOKE_N_KINDS];
  uint64_t refresh_reuse;    /* token.refresh answered `reused` (its family revoked) */
} ts_stats;

static inline void ts_stats_count_error(ts_stats *s, int err) {
  int i = err - TS_ERROR_FIRST_ - 1;
  if (i >= 0 && i < TS_STATS_N_ERRORS) s->errors[i]++;
}

#endif
