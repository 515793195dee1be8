/* sidecar/store/redis/placeholder.c: until the Redis backend lands, a redis URL in --store is
 * refused at start with a clear error (this file goes when store/redis/ has its backend). */
#include "backend.h"

#include "error.h"
#include "log.h"

int ts_backend_redis_open(ts_backend **out, const ts_config *cfg, void *uv_loop) {
  (void)cfg;
  (void)uv_loop;
  *out = NULL;
  ts_log(TS_LOG_ERROR, "this tesserad was built without the Redis backend", NULL);
  return TS_ECONFIG;
}
