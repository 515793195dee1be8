/* sidecar/store/redis/backend.c: ts_backend_redis_open, the ops table, readiness, gauges and
 * close (see redis.h for the files of this backend).
 *
 * Two connections: commands (every operation, pipelined) and feed (XREAD BLOCK). Opening
 * waits on the loop, bounded, until both are up, so a daemon that says READY with Redis
 * reachable serves at once; Redis down at start is no error (the daemon starts, answers
 * unavailable, ready() is false, and connects when Redis comes). Passwords stay in rb_url and
 * are wiped at close; logs carry the masked URL. */
#include "redis.h"

#include "error.h"
#include "log.h"
#include "domain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OPEN_WAIT_MS 3000

/* ---- arguments ------------------------------------------------------------------------------ */

void rb_args_init(rb_args *a) {
  a->n = 0;
  a->used = 0;
  a->overflow = false;
}

void rb_arg(rb_args *a, const void *s, size_t len) {
  if (a->n == RB_MAX_ARGS) {
    a->overflow = true;
    return;
  }
  a->v[a->n] = s;
  a->l[a->n++] = len;
}

void rb_arg_str(rb_args *a, const char *s) { rb_arg(a, s, strlen(s)); }

void rb_arg_copy(rb_args *a, const void *s, size_t len) {
  if (a->used + len + 1 > sizeof(a->buf)) {
    a->overflow = true;
    return;
  }
  char *p = a->buf + a->used;
  memcpy(p, s, len);
  p[len] = 0;
  a->used += len + 1;
  rb_arg(a, p, len);
}

void rb_arg_int(rb_args *a, int64_t v) {
  char s[24];
  int n = snprintf(s, sizeof(s), "%lld", (long long)v);
  rb_arg_copy(a, s, (size_t)n);
}

void rb_arg_minid(rb_args *a, const rb *b) {
  int64_t keep = ts_config_longest_ttl(b->cfg) + b->cfg->leeway + 1;
  int64_t ms = ((int64_t)time(NULL) - keep) * 1000;
  rb_arg_int(a, ms > 0 ? ms : 0);
}

typedef struct counted_call {
  rb *b;
  rb_reply_fn fn;
  void *ctx;
} counted_call;

/* "s=<n> f=<n> r=<n>": the gauges. */
static bool note_gauges(rb *b, const redisReply *s) {
  unsigned long long n[3];
  char buf[96];
  if (s->type != REDIS_REPLY_STRING || s->len >= sizeof(buf)) return false;
  memcpy(buf, s->str, s->len + 1);
  if (sscanf(buf, "s=%llu f=%llu r=%llu", &n[0], &n[1], &n[2]) != 3) return false;
  b->sessions = n[0], b->families = n[1], b->revocations = n[2];
  return true;
}

static void note_sessions(rb *b, const redisReply *r) {
  if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0)
    note_gauges(b, r->element[r->elements - 1]);
}

static void on_counted(void *ctx, redisReply *r) {
  counted_call *c = ctx;
  note_sessions(c->b, r);
  c->fn(c->ctx, r);
  free(c);
}

void rb_send(rb *b, rb_args *a, rb_reply_fn fn, void *ctx) {
  if (a->overflow) { /* a bug, not a state of Redis: never sent half */
    ts_log(TS_LOG_ERROR, "redis: a command's arguments did not fit", NULL);
    fn(ctx, NULL);
    return;
  }
  counted_call *c = malloc(sizeof(*c));
  if (!c) {
    fn(ctx, NULL);
    return;
  }
  *c = (counted_call){b, fn, ctx};
  rb_command(&b->cmd, on_counted, c, a->n, a->v, a->l, 0);
}

static void on_gauge(void *ctx, redisReply *r) {
  rb *b = ctx;
  if (r && note_gauges(b, r)) b->counted = true;
}

/* ---- state ---------------------------------------------------------------------------------- */

static void on_gauge(void *ctx, redisReply *r);

/* Sends a recount of the sessions gauge (the reply updates it). */
static void recount(rb *b) {
  char now[24];
  int n = snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
  rb_command(&b->cmd, on_gauge, b, 4, (const char *[]){"FCALL_RO", "ts_gauges", "0", now},
             (size_t[]){8, 9, 1, (size_t)n}, 0);
}

static void on_cmd_up(void *ctx) {
  rb_feed_head_refresh(ctx);
  recount(ctx);
  rb_cache_commands_up(ctx);
}

static void on_cmd_down(void *ctx) { rb_cache_commands_down(ctx); }

static bool ready(ts_backend *base) {
  rb *b = (rb *)base;
  return b->cmd.state == RB_UP && b->feed.state == RB_UP;
}

static void stats(ts_backend *base, ts_stat_list *l) {
  rb *b = (rb *)base;
  /* Sessions, families, revocations: as the last write counted them (exact after this
   * sidecar's own writes); a recount is sent for the next call (others' writes, expiry). The
   * other LMDB gauges (expiry_index, store_bytes, swept...) have no Redis meaning. */
  ts_stat_add(l, "sessions", b->sessions);
  ts_stat_add(l, "families", b->families);
  ts_stat_add(l, "revocations", b->revocations);
  if (!b->closing) recount(b);
  ts_stat_add(l, "store_up", ready(base) ? 1 : 0);
  ts_stat_add(l, "redis_reconnects", b->counters.reconnects);
  ts_stat_add(l, "redis_timeouts", b->counters.timeouts);
  ts_stat_add(l, "redis_errors", b->counters.errors);
  ts_stat_add(l, "redis_pending", b->cmd.pending);
  rb_cache_stats(b, l);
}

void rb_conn_closed_part(void *ctx) {
  rb *b = ctx;
  if (--b->open_conns == 0) {
    rb_url_wipe(&b->url);
    free(b);
  }
}

static void close_backend(ts_backend *base) {
  rb *b = (rb *)base;
  b->closing = true;
  b->cmd.on_closed = b->feed.on_closed = rb_conn_closed_part;
  rb_conn_close(&b->cmd); /* pending operations answer unavailable now */
  rb_conn_close(&b->feed);
  rb_cache_close(b);
}

static ts_backend_ops redis_ops = {.name = "redis"};

/* ---- open ----------------------------------------------------------------------------------- */

typedef struct open_wait {
  uv_timer_t t;
  bool expired;
} open_wait;

static void on_open_timer(uv_timer_t *t) { ((open_wait *)t)->expired = true; }
static void on_open_timer_closed(uv_handle_t *h) { free(h); }

int ts_backend_redis_open(ts_backend **out, const ts_config *cfg, void *uv_loop) {
  *out = NULL;
  rb *b = calloc(1, sizeof(*b));
  if (!b) return TS_ENOMEM;
  const char *why;
  rb_url_masked(cfg->store, b->url_masked, sizeof(b->url_masked));
  if (rb_url_parse(&b->url, cfg->store, cfg->redis_password_file, &why) != 0) {
    ts_log(TS_LOG_ERROR, "invalid --store", "{s:s, s:s}", "store", b->url_masked, "error", why);
    rb_url_wipe(&b->url);
    free(b);
    return TS_ECONFIG;
  }
  if (!redis_ops.session_get) {
    rb_session_ops(&redis_ops);
    rb_token_ops(&redis_ops);
    rb_feed_ops(&redis_ops);
    redis_ops.stats = stats;
    redis_ops.ready = ready;
    redis_ops.close = close_backend;
  }
  b->base.ops = &redis_ops;
  b->loop = uv_loop;
  b->cfg = cfg;
  int64_t timeout = cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 200;
  rb_conn_init(&b->cmd, b->loop, &b->url, "commands", timeout, &b->counters);
  rb_conn_init(&b->feed, b->loop, &b->url, "feed", timeout, &b->counters);
  b->open_conns = 2;
  b->cmd.load_functions = true;
  b->feed.weak = true; /* its XREAD BLOCK owes no completion: never holds the loop */
  b->cmd.cb_ctx = b->feed.cb_ctx = b;
  b->cmd.on_up = on_cmd_up;
  b->cmd.on_down = on_cmd_down;
  b->feed.on_up = rb_feed_reader_up;
  ts_log(TS_LOG_INFO, "store: redis", "{s:s, s:I}", "url", b->url_masked, "timeout_ms",
         (json_int_t)timeout);
  rb_conn_start(&b->cmd);
  rb_conn_start(&b->feed);
  if (rb_cache_open(b, cfg->session_cache) != 0)
    ts_log(TS_LOG_WARN, "no memory for the redis session cache: running without it", NULL);
  if (b->cache) b->open_conns++;
  /* Wait (bounded) until both connections are up and the store id is known. */
  open_wait *w = calloc(1, sizeof(*w));
  if (w) {
    uv_timer_init(b->loop, &w->t);
    uv_timer_start(&w->t, on_open_timer, OPEN_WAIT_MS, 0);
    while (!w->expired && !(ready(&b->base) && b->store_id[0] && b->counted)) uv_run(b->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&w->t, on_open_timer_closed);
  }
  if (!ready(&b->base))
    ts_log(TS_LOG_WARN, "redis not reachable yet: answering unavailable until it is", "{s:s}",
           "store", b->url_masked);
  *out = &b->base;
  return 0;
}
