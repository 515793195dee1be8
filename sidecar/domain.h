/* sidecar/domain.h: the state the method handlers share, built by main.
 *
 * Owned by main: created before the server starts, shut down after it drained (the backend
 * first: its owed completions sign with the keys; then the keys). Handlers on the loop thread
 * reach the store only through the backend's operations (store/backend.h). */
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

struct ts_backend;

struct ts_domain {
  const ts_config *cfg;
  struct ts_backend *backend;
  ts_keys keys;
};
typedef struct ts_domain ts_domain;

/* Opens the backend --store names and the keys. Returns 0 or TS_E* (logged). */
int ts_domain_open(ts_domain *d, const ts_config *cfg, void *uv_loop);
/* Closes the backend (every owed completion runs first), then the keys. */
void ts_domain_close(ts_domain *d);
/* Adds the domain's gauges (sessions, families, revocations, store_bytes, ...) to l. */
void ts_domain_stats(ts_domain *d, ts_stat_list *l);

#endif
