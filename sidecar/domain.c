/* sidecar/domain.c: the state the handlers share (see domain.h): open in dependency order,
 * close in reverse. Close order matters: the backend's owed completions sign tokens (keys)
 * and reply, so the backend closes first, then the keys. */
#include "domain.h"

#include "backend.h"
#include "error.h"

#include <stdio.h>

int ts_domain_open(ts_domain *d, const ts_config *cfg, void *uv_loop) {
  d->cfg = cfg;
  int rc = ts_backend_open(&d->backend, cfg, uv_loop);
  if (rc == 0) rc = ts_keys_open(&d->keys, cfg);
  return rc;
}

void ts_domain_close(ts_domain *d) {
  ts_backend_close(d->backend); /* its completions use the keys */
  d->backend = NULL;
  ts_keys_close(&d->keys);
}

void ts_stat_add(ts_stat_list *l, const char *name, uint64_t value) {
  if (l->n == TS_STATS_MAX) return;
  snprintf(l->items[l->n].name, sizeof(l->items[l->n].name), "%s", name);
  l->items[l->n].value = value;
  l->n++;
}

void ts_domain_stats(ts_domain *d, ts_stat_list *l) {
  if (d->backend) d->backend->ops->stats(d->backend, l);
}
