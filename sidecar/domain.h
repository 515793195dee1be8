/* sidecar/domain.h: the state the method handlers share, built by main.
 *
 * Owned by main: created before the server starts, shut down after it drained (writer and
 * sweeper joined, then the store closed). Handlers on the loop thread use the store for
 * reads and the writer for writes; the sweeper thread has the store only. */
#ifndef TS_DOMAIN_H
#define TS_DOMAIN_H

#include "config.h"
#include "keys.h"

#include <stdint.h>

#define TS_STATS_MAX 128

typedef struct ts_stat_list {
  size_t n;
  struct {
    char name[96];
    uint64_t value;
  } items[TS_STATS_MAX];
} ts_stat_list;

void ts_stat_add(ts_stat_list *l, const char *name, uint64_t value);

struct ts_store;
struct ts_writer;
struct ts_sweeper;

struct ts_domain {
  const ts_config *cfg;
  struct ts_store *store;
  struct ts_writer *writer;
  struct ts_sweeper *sweeper;
  ts_keys keys;
  uint64_t store_id; /* names this store in feed cursors (feed.h) */
};
typedef struct ts_domain ts_domain;

/* Opens the store and starts the writer and sweeper threads. Returns 0 or TS_E* (logged). */
int ts_domain_open(ts_domain *d, const ts_config *cfg, void *uv_loop);
/* Stops the threads (every queued write is applied first) and closes the store. */
void ts_domain_close(ts_domain *d);
/* Adds the domain's gauges (sessions, families, revocations, store_bytes, ...) to l. */
void ts_domain_stats(ts_domain *d, ts_stat_list *l);

#endif
