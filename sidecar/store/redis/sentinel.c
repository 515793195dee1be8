/* sidecar/store/redis/sentinel.c: the master's address from Redis Sentinel (see redis.h).
 *
 * Asks each sentinel of the URL in turn `SENTINEL get-master-addr-by-name MASTER` on a
 * connection of its own, with the request deadline; the first address answered wins. The
 * caller (client.c) then connects and checks ROLE: a sentinel that has not yet seen a
 * failover may name a demoted master, which ROLE refuses, and the next connect asks again.
 * A failover is followed that way: the old master's connection breaks, or its writes answer
 * READONLY (client.c drops the connection), and every reconnection resolves anew.
 * Ownership: a resolve owns its state until done ran; the connection it makes is freed after
 * the reply (never inside a hiredis callback: from the timer). */
#include "redis.h"

#include "log.h"

#include <hiredis/adapters/libuv.h>
#include <stdlib.h>
#include <string.h>

typedef struct resolve {
  uv_loop_t *loop;
  const rb_url *url;
  int64_t timeout_ms;
  unsigned next; /* the sentinel to ask next */
  redisAsyncContext *ac;
  uv_timer_t timer;
  bool answered, have;
  rb_addr master;
  void (*done)(void *ctx, const rb_addr *master);
  void *ctx;
} resolve;

static void ask_next(resolve *r);

static void on_closed(uv_handle_t *h) { free(h->data); }

static void finish(resolve *r) {
  if (r->done) r->done(r->ctx, r->have ? &r->master : NULL);
  uv_close((uv_handle_t *)&r->timer, on_closed);
}

/* From the timer: drop the current sentinel connection, then ask the next or finish. */
static void on_timer(uv_timer_t *t) {
  resolve *r = t->data;
  r->answered = true; /* the free below answers the pending request with NULL */
  if (r->ac) {
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
  }
  if (r->have || r->next >= r->url->n_sentinels) finish(r);
  else ask_next(r);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  resolve *r = privdata;
  redisReply *x = reply;
  if (!r || r->answered) return;
  r->answered = true;
  if (x && x->type == REDIS_REPLY_ARRAY && x->elements == 2 &&
      x->element[0]->type == REDIS_REPLY_STRING && x->element[1]->type == REDIS_REPLY_STRING &&
      x->element[0]->len < sizeof(r->master.host)) {
    memcpy(r->master.host, x->element[0]->str, x->element[0]->len + 1);
    r->master.port = atoi(x->element[1]->str);
    r->have = r->master.port > 0;
  }
  uv_timer_start(&r->timer, on_timer, 0, 0);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  resolve *r = ac->data;
  if (!r || status == REDIS_OK) return;
  r->ac = NULL; /* hiredis frees it */
  r->answered = true;
  uv_timer_start(&r->timer, on_timer, 0, 0);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  resolve *r = ac->data;
  if (!r) return;
  r->ac = NULL;
  if (!r->answered) {
    r->answered = true;
    uv_timer_start(&r->timer, on_timer, 0, 0);
  }
}

static void ask_next(resolve *r) {
  const rb_addr *s = &r->url->sentinels[r->next++];
  r->answered = false;
  redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
  if (!ac || ac->err || redisLibuvAttach(ac, r->loop) != REDIS_OK) {
    if (ac) redisAsyncFree(ac);
    r->answered = true;
    uv_timer_start(&r->timer, on_timer, 0, 0);
    return;
  }
  ac->data = r;
  r->ac = ac;
  uv_unref((uv_handle_t *)&((redisLibuvEvents *)ac->ev.data)->handle);
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", r->url->master};
  size_t lens[3] = {8, 23, strlen(r->url->master)};
  if (redisAsyncCommandArgv(ac, on_reply, r, 3, argv, lens) != REDIS_OK) {
    r->answered = true;
    uv_timer_start(&r->timer, on_timer, 0, 0);
    return;
  }
  uv_timer_start(&r->timer, on_timer, (uint64_t)r->timeout_ms, 0); /* the deadline */
}

void rb_sentinel_cancel(void *resolving) { ((resolve *)resolving)->done = NULL; }

void *rb_sentinel_resolve(uv_loop_t *loop, const rb_url *url, int64_t timeout_ms,
                          void (*done)(void *ctx, const rb_addr *master), void *ctx) {
  resolve *r = calloc(1, sizeof(*r));
  if (!r) {
    done(ctx, NULL);
    return NULL;
  }
  r->loop = loop;
  r->url = url;
  r->timeout_ms = timeout_ms;
  r->done = done;
  r->ctx = ctx;
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  uv_unref((uv_handle_t *)&r->timer);
  ask_next(r);
  return r;
}
