/* sidecar/domain.c: the state the handlers share (see domain.h): open in dependency order,
 * close in reverse. Close order matters: the writer's done callbacks sign tokens (keys) and
 * reply, so the writer stops first (every completion delivered), then the sweeper, then the
 * keys, then the store. */
#include "domain.h"

#include "error.h"
#include "feed.h"
#include "log.h"
#include "store.h"
#include "sweeper.h"
#include "writer.h"

#include <stdio.h>

int ts_domain_open(ts_domain *d, const ts_config *cfg, void *uv_loop) {
  d->cfg = cfg;
  char why[512] = "";
  ts_store_options so = {cfg->data_dir, cfg->max_store_bytes,
                         cfg->durability == TS_DURABILITY_RELAXED};
  int rc = ts_store_open(&d->store, &so, why, sizeof(why));
  if (rc) {
    ts_log(TS_LOG_ERROR, "cannot open the store", "{s:s}", "error", why);
    return rc;
  }
  if ((rc = ts_feed_open(d->store, &d->store_id)) != 0) {
    ts_log(TS_LOG_ERROR, "cannot open the revocation feed", "{s:s}", "error", ts_strerror(rc));
    return rc;
  }
  if ((rc = ts_keys_open(&d->keys, cfg)) != 0) return rc;
  int cleared = ts_store_reader_check(d->store);
  if (cleared > 0) ts_log(TS_LOG_INFO, "stale store readers cleared", "{s:i}", "readers", cleared);
  rc = ts_writer_start(&d->writer, uv_loop, d->store, so.relaxed);
  if (rc == 0) rc = ts_sweeper_start(&d->sweeper, d->store, cfg->sweep_interval_ms);
  if (rc) {
    ts_log(TS_LOG_ERROR, "cannot start the store threads", NULL);
    return rc;
  }
  ts_log(TS_LOG_INFO, "store open", "{s:s, s:s, s:I}", "data", cfg->data_dir, "durability",
         so.relaxed ? "relaxed" : "full", "max_store_bytes", (json_int_t)cfg->max_store_bytes);
  return 0;
}

void ts_domain_close(ts_domain *d) {
  if (d->writer) ts_writer_stop(d->writer); /* its completions use the keys */
  if (d->sweeper) ts_sweeper_stop(d->sweeper);
  ts_keys_close(&d->keys);
  ts_store_close(d->store);
  d->sweeper = NULL;
  d->writer = NULL;
  d->store = NULL;
}

void ts_stat_add(ts_stat_list *l, const char *name, uint64_t value) {
  if (l->n == TS_STATS_MAX) return;
  snprintf(l->items[l->n].name, sizeof(l->items[l->n].name), "%s", name);
  l->items[l->n].value = value;
  l->n++;
}

void ts_domain_stats(ts_domain *d, ts_stat_list *l) {
  ts_store_info info;
  if (d->store && ts_store_info_get(d->store, &info) == 0) {
    ts_stat_add(l, "sessions", info.entries[TS_T_SESSIONS]);
    ts_stat_add(l, "families", info.entries[TS_T_FAMILIES]);
    ts_stat_add(l, "revocations", info.entries[TS_T_REVOKED] + info.entries[TS_T_CUTOFFS]);
    ts_stat_add(l, "expiry_index", info.entries[TS_T_EXPIRY]);
    ts_stat_add(l, "feed_entries", info.entries[TS_T_FEED]);
    ts_stat_add(l, "store_bytes", info.used_bytes);
    ts_stat_add(l, "store_file_bytes", info.file_bytes);
    ts_stat_add(l, "store_max_bytes", info.max_bytes);
  }
  if (d->writer) {
    ts_writer_stats ws;
    ts_writer_stats_get(d->writer, &ws);
    ts_stat_add(l, "store_commits", ws.commits);
    ts_stat_add(l, "store_writes", ws.writes);
    ts_stat_add(l, "store_failed_commits", ws.failed_commits);
  }
  if (d->sweeper) {
    ts_sweeper_stats ss;
    ts_sweeper_stats_get(d->sweeper, &ss);
    ts_stat_add(l, "swept", ss.swept);
    ts_stat_add(l, "sweeps", ss.sweeps);
    ts_stat_add(l, "store_readers_cleared", ss.readers_cleared);
  }
}
