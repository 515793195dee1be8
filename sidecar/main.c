/* sidecar/main.c: tesserad's entry point: settings, the domain, the loop, a clean exit.
 *
 * Start: config -> domain (store, keys) -> server (socket) -> READY=1 -> loop.
 * Stop (SIGTERM/SIGINT): the server drains its connections, then on_drained closes the last
 * handles. uv_run returns only once the backend is idle too (it holds the loop while an
 * operation's completion is owed, also for connections closed at the shutdown timeout); then
 * the domain is shut down (backend, keys) and the process exits 0. */
#include "audit.h"
#include "backend.h"
#include "config.h"
#include "domain.h"
#include "error.h"
#include "events.h"
#include "http/http.h"
#include "internal.h"
#include "log.h"
#include "server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static void on_drained(ts_server *s) {
  uv_close((uv_handle_t *)&s->drain_timer, NULL);
  ts_log(TS_LOG_INFO, "drained", "{s:I}", "requests", (json_int_t)s->stats.requests);
}

static void on_keys_changed(void *ctx, int64_t version) { ts_events_keys(ctx, version); }

static void on_published(void *ctx, ts_feed_pos last) { ts_events_published(ctx, last); }

static void on_reload(ts_server *s) { ts_keys_reload(&s->domain->keys, s->cfg); }

/* Another sidecar on the shared store changed the key set (keys.rotate): reload ours. */
static void on_keys_elsewhere(void *ctx) { on_reload(ctx); }

static ts_http http; /* the HTTP edge (sidecar/http/), when --http-listen is set */

static void on_drain(ts_server *s) {
  (void)s;
  ts_http_drain(&http);
}

int main(int argc, char **argv) {
  ts_config cfg;
  int rc = ts_config_load(&cfg, argc, argv);
  if (rc != 0) {
    ts_config_free(&cfg);
    return rc > 0 ? 0 : 2;
  }
  ts_log_set_level(cfg.log_level);
  signal(SIGPIPE, SIG_IGN);

  uv_loop_t *loop = uv_default_loop();
  static ts_domain domain;
  static ts_server server; /* large; zeroed */
  server.on_drained = on_drained;
  server.on_reload = on_reload;
  server.on_drain = on_drain;
  if (ts_audit_open(cfg.audit_log) != 0) {
    ts_config_free(&cfg);
    return 1;
  }
  if (ts_domain_open(&domain, &cfg, loop) != 0) {
    ts_domain_close(&domain);
    ts_config_free(&cfg);
    return 1;
  }
  if (ts_server_start(&server, loop, &cfg, &domain) != 0) {
    ts_domain_close(&domain);
    uv_run(loop, UV_RUN_NOWAIT); /* let closed handles finish */
    ts_config_free(&cfg);
    return 1;
  }
  domain.backend->on_published = on_published;
  domain.backend->published_ctx = &server;
  domain.backend->on_keys = on_keys_elsewhere;
  domain.backend->keys_ctx = &server;
  if (ts_internal_init(&server) != 0 || ts_http_start(&http, &server) != 0) {
    ts_server_drain(&server);
    uv_run(loop, UV_RUN_DEFAULT);
    ts_domain_close(&domain);
    uv_run(loop, UV_RUN_NOWAIT);
    ts_config_free(&cfg);
    return 1;
  }
  domain.keys.on_change = on_keys_changed;
  domain.keys.on_change_ctx = &server;
  ts_notify("READY=1");
  uv_run(loop, UV_RUN_DEFAULT); /* returns when drained and every write completed */
  ts_domain_close(&domain); /* threads joined, keys closed, store synced */
  uv_run(loop, UV_RUN_DEFAULT); /* the writer's async handle closes */
  uv_loop_close(loop);
  ts_internal_free(&server);
  ts_audit_close();
  ts_log(TS_LOG_INFO, "stopped", NULL);
  ts_config_free(&cfg);
  return 0;
}
