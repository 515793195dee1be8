/* sidecar/store/backend.c: opening the backend --store names (backend.h), and what every
 * backend shares: the names of feed entry kinds. */
#include "backend.h"

#include "error.h"
#include "log.h"

#include <string.h>

const char *ts_feed_kind_name(char kind) {
  switch (kind) {
  case 'j': return "jti";
  case 'f': return "family";
  case 's': return "sub";
  default: return NULL;
  }
}

int ts_backend_open(ts_backend **out, const ts_config *cfg, void *uv_loop) {
  int rc;
  *out = NULL;
  if (strcmp(cfg->store, "lmdb") == 0) {
    rc = ts_backend_lmdb_open(out, cfg, uv_loop);
  } else if (strncmp(cfg->store, "redis", 5) == 0) {
    rc = ts_backend_redis_open(out, cfg, uv_loop);
  } else {
    ts_log(TS_LOG_ERROR, "unknown --store: give lmdb or a redis URL", NULL);
    rc = TS_ECONFIG;
  }
  return rc;
}
