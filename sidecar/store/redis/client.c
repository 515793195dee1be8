/* sidecar/store/redis/client.c: one Redis connection on the loop thread (see redis.h).
 *
 * hiredis 0.14's async API with its libuv adapter; hiredis has no timeouts, so every request
 * carries a deadline (now + --redis-timeout) and the connection keeps its pending requests in
 * send order: replies come back in that order, so the head's deadline is the earliest and one
 * uv_timer watches it. When it passes, every pending request is answered "unavailable" (RESP
 * cannot cancel one reply: a late reply would be matched to the wrong request), the connection
 * is dropped and made again after a jittered exponential backoff (50 ms doubling to 5 s,
 * each wait a random point in its upper half). While not up, rb_command answers at once: no
 * queue grows while Redis is away, and nothing is reported done that Redis did not answer.
 *
 * The connect sequence is pipelined right after the connect: AUTH (when a password is set),
 * SELECT (a db other than 0), ROLE (must answer "master": a replica, or a master demoted by a
 * failover, is refused and the connection made again), FUNCTION LOAD REPLACE (the commands
 * connection). The connection is up when the last of them answered.
 * Drops never happen inside a hiredis callback: they are flagged and done from the timer.
 *
 * Writes: hiredis asks its event adapter for write readiness after every command, and the
 * libuv adapter restarts its poll handle (an epoll_ctl) on every such call and on every read.
 * On an up connection the commands of one loop turn are written at once instead, from a
 * uv_check (one write(2) per turn, the pipelining the issue asks for); poll for writability is
 * used only when the socket's buffer is full (and while connecting). The adapter's read
 * interest is kept as it is rather than restarted. */
#include "redis.h"

#include "error.h"
#include "log.h"

#include <hiredis/adapters/libuv.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PENDING 100000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 5000

struct rb_req {
  rb_req *next, *prev;
  rb_conn *c;
  rb_reply_fn fn;
  void *ctx;
  uint64_t deadline; /* uv_now ms */
  bool answered;
  bool linked;
};

static void connect_now(rb_conn *c);
static void on_deadline(uv_timer_t *t);

/* ---- the adapter's event hooks (see the note on top) --------------------------------------- */

static void on_flush(uv_check_t *h) {
  rb_conn *c = h->data;
  uv_check_stop(h);
  if (!c->ac || c->state == RB_CLOSED) return;
  c->in_flush = true;
  redisAsyncHandleWrite(c->ac); /* what did not fit asks for writability (in_flush) */
  c->in_flush = false;
}

static void hook_add_write(void *privdata) {
  redisLibuvEvents *p = privdata;
  rb_conn *c = p->context ? p->context->data : NULL;
  if (c && c->state == RB_UP && !c->in_flush) {
    if (!uv_is_active((uv_handle_t *)&c->flush)) uv_check_start(&c->flush, on_flush);
    return;
  }
  if (!(p->events & UV_WRITABLE)) redisLibuvAddWrite(privdata);
}

static void hook_del_write(void *privdata) {
  redisLibuvEvents *p = privdata;
  if (p->events & UV_WRITABLE) redisLibuvDelWrite(privdata);
}

static void hook_add_read(void *privdata) {
  redisLibuvEvents *p = privdata;
  if (!(p->events & UV_READABLE)) redisLibuvAddRead(privdata);
}
static void on_retry(uv_timer_t *t);

static void unlink_req(rb_conn *c, rb_req *q) {
  if (!q->linked) return;
  if (q->prev) q->prev->next = q->next;
  else c->head = q->next;
  if (q->next) q->next->prev = q->prev;
  else c->tail = q->prev;
  q->linked = false;
  c->pending--;
}

static void answer(rb_req *q, redisReply *r) {
  if (q->answered) return;
  q->answered = true;
  q->fn(q->ctx, r);
}

static void arm_deadline(rb_conn *c) {
  if (!c->head || c->state == RB_CLOSED) return;
  uint64_t now = uv_now(c->loop);
  uint64_t wait = c->head->deadline > now ? c->head->deadline - now : 0;
  uv_timer_start(&c->deadline, on_deadline, wait, 0);
}

/* hiredis calls this exactly once per request: its reply, or NULL when the context ends. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  rb_req *q = privdata;
  rb_conn *c = q->c;
  unlink_req(c, q);
  /* Nothing owed any more: the deadline timer must not hold the loop (shutdown waits for it;
   * the cache's heartbeat would otherwise re-arm it forever). */
  if (!c->head && !c->drop_wanted) uv_timer_stop(&c->deadline);
  redisReply *r = reply;
  if (r && r->type == REDIS_REPLY_ERROR) {
    c->counters->errors++;
    ts_log(TS_LOG_WARN, "redis answered an error", "{s:s, s:s%}", "connection", c->name,
           "error", r->str, r->len > 200 ? (size_t)200 : r->len);
    /* A demoted master (failover) or one still loading: reconnect, resolving anew. */
    if (strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "MASTERDOWN", 10) == 0 ||
        strncmp(r->str, "LOADING", 7) == 0) {
      c->drop_wanted = true;
      uv_timer_start(&c->deadline, on_deadline, 0, 0);
    }
    r = NULL;
  }
  answer(q, r);
  free(q);
}

static void fail_all(rb_conn *c) {
  while (c->head) {
    rb_req *q = c->head;
    unlink_req(c, q);
    answer(q, NULL); /* freed by on_reply when hiredis lets go of it */
  }
}

static void went_down(rb_conn *c, const char *why) {
  bool was_up = c->state == RB_UP;
  fail_all(c);
  c->ac = NULL;
  if (c->state == RB_CLOSED) return;
  c->state = RB_DOWN;
  if (was_up) {
    ts_log(TS_LOG_WARN, "redis connection lost", "{s:s, s:s}", "connection", c->name, "why", why);
    if (c->on_down) c->on_down(c->cb_ctx);
  }
  unsigned exp = c->failures < 7 ? c->failures : 7;
  uint64_t ceiling = (uint64_t)BACKOFF_MIN_MS << exp;
  if (ceiling > BACKOFF_MAX_MS) ceiling = BACKOFF_MAX_MS;
  uint64_t wait = ceiling / 2 + randombytes_uniform((uint32_t)(ceiling / 2 + 1));
  c->failures++;
  uv_timer_start(&c->retry, on_retry, wait, 0);
}

/* Frees the context (outside hiredis callbacks): its pending callbacks run with NULL. */
static void drop(rb_conn *c, const char *why) {
  redisAsyncContext *ac = c->ac;
  c->drop_wanted = false;
  if (!ac) return;
  fail_all(c);
  ac->data = NULL; /* on_disconnect must not treat c as live: went_down is called here */
  c->ac = NULL;
  redisAsyncFree(ac);
  went_down(c, why);
}

static void on_deadline(uv_timer_t *t) {
  rb_conn *c = t->data;
  if (c->drop_wanted) {
    drop(c, c->state == RB_UP ? "not a writable master" : "refused during connect");
    return;
  }
  if (!c->head) return;
  if (c->head->deadline > uv_now(c->loop)) {
    arm_deadline(c);
    return;
  }
  c->counters->timeouts++;
  ts_log(TS_LOG_WARN, "redis request past its deadline; reconnecting", "{s:s, s:I, s:I}",
         "connection", c->name, "timeout_ms", (json_int_t)c->timeout_ms, "pending",
         (json_int_t)c->pending);
  drop(c, "deadline");
}

static void on_retry(uv_timer_t *t) {
  rb_conn *c = t->data;
  if (c->state == RB_DOWN) connect_now(c);
}

static void send_req(rb_conn *c, rb_reply_fn fn, void *ctx, int argc, const char **argv,
                     const size_t *lens, int64_t extra_ms) {
  rb_req *q = c->pending < MAX_PENDING ? calloc(1, sizeof(*q)) : NULL;
  if (!q) {
    fn(ctx, NULL);
    return;
  }
  q->c = c;
  q->fn = fn;
  q->ctx = ctx;
  q->deadline = uv_now(c->loop) + (uint64_t)(c->timeout_ms + extra_ms);
  if (redisAsyncCommandArgv(c->ac, on_reply, q, argc, argv, lens) != REDIS_OK) {
    free(q);
    fn(ctx, NULL);
    return;
  }
  q->linked = true;
  q->prev = c->tail;
  if (c->tail) c->tail->next = q;
  else c->head = q;
  c->tail = q;
  c->pending++;
  if (!uv_is_active((uv_handle_t *)&c->deadline)) arm_deadline(c);
}

void rb_command(rb_conn *c, rb_reply_fn fn, void *ctx, int argc, const char **argv,
                const size_t *lens, int64_t extra_ms) {
  if (c->state != RB_UP || !c->ac) {
    fn(ctx, NULL);
    return;
  }
  send_req(c, fn, ctx, argc, argv, lens, extra_ms);
}

/* ---- connecting --------------------------------------------------------------------------- */

static void on_connect(const redisAsyncContext *ac, int status) {
  rb_conn *c = ac->data;
  if (!c || status == REDIS_OK) return;
  /* hiredis frees the context after this callback: forget it. */
  if (c->failures == 0 || c->failures % 20 == 0)
    ts_log(TS_LOG_WARN, "cannot connect to redis", "{s:s, s:s}", "connection", c->name, "error",
           ac->errstr);
  went_down(c, "connect failed");
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  rb_conn *c = ac->data;
  (void)status;
  if (!c) return; /* our own drop: already handled */
  went_down(c, ac->errstr[0] ? ac->errstr : "closed");
}

/* A step of the connect sequence that must answer +OK (AUTH, SELECT, FUNCTION LOAD). */
static void on_setup_step(void *ctx, redisReply *r) {
  rb_conn *c = ctx;
  if (!r && c->state == RB_CONNECTING && c->ac) c->drop_wanted = true;
}

static void on_role(void *ctx, redisReply *r) {
  rb_conn *c = ctx;
  if (c->state != RB_CONNECTING || !c->ac) return;
  bool master = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                r->element[0]->type == REDIS_REPLY_STRING &&
                strcmp(r->element[0]->str, "master") == 0;
  if (!master) {
    if (r) ts_log(TS_LOG_WARN, "redis is not a master; reconnecting", "{s:s}", "connection",
                  c->name);
    c->drop_wanted = true;
  }
}

static void on_ready(void *ctx, redisReply *r) {
  rb_conn *c = ctx;
  if (c->state != RB_CONNECTING || !c->ac) return;
  if (!r || c->drop_wanted) {
    c->drop_wanted = true;
    uv_timer_start(&c->deadline, on_deadline, 0, 0);
    return;
  }
  c->state = RB_UP;
  c->failures = 0;
  if (c->ever_up) c->counters->reconnects++;
  ts_log(c->ever_up ? TS_LOG_WARN : TS_LOG_INFO, "redis connected", "{s:s}", "connection",
         c->name);
  c->ever_up = true;
  if (c->on_up) c->on_up(c->cb_ctx);
}

static void connected_to(rb_conn *c, redisAsyncContext *ac) {
  if (!ac || ac->err) {
    if (ac) {
      ts_log(TS_LOG_WARN, "cannot connect to redis", "{s:s, s:s}", "connection", c->name,
             "error", ac->errstr);
      redisAsyncFree(ac);
    }
    went_down(c, "connect failed");
    return;
  }
  ac->data = c;
  if (redisLibuvAttach(ac, c->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    went_down(c, "attach failed");
    return;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  /* An idle connection never holds the loop: only the deadline timer of an owed reply does. */
  uv_unref((uv_handle_t *)&((redisLibuvEvents *)ac->ev.data)->handle);
  ac->ev.addWrite = hook_add_write;
  ac->ev.delWrite = hook_del_write;
  ac->ev.addRead = hook_add_read;
  c->ac = ac;
  c->state = RB_CONNECTING;
  c->drop_wanted = false;
  const rb_url *u = c->url;
  if (u->password[0]) {
    const char *argv[3] = {"AUTH", u->user, u->password};
    size_t lens[3] = {4, strlen(u->user), strlen(u->password)};
    if (u->user[0]) send_req(c, on_setup_step, c, 3, argv, lens, 0);
    else send_req(c, on_setup_step, c, 2, (const char *[]){"AUTH", u->password},
                  (size_t[]){4, strlen(u->password)}, 0);
  }
  if (u->db) {
    char db[16];
    int n = snprintf(db, sizeof(db), "%d", u->db);
    send_req(c, on_setup_step, c, 2, (const char *[]){"SELECT", db}, (size_t[]){6, (size_t)n}, 0);
  }
  send_req(c, on_role, c, 1, (const char *[]){"ROLE"}, (size_t[]){4}, 0);
  if (c->load_functions)
    send_req(c, on_setup_step, c, 4,
             (const char *[]){"FUNCTION", "LOAD", "REPLACE", ts_redis_lua},
             (size_t[]){8, 4, 7, strlen(ts_redis_lua)}, 0);
  send_req(c, on_ready, c, 1, (const char *[]){"PING"}, (size_t[]){4}, 0);
}

static void on_master(void *ctx, const rb_addr *master) {
  rb_conn *c = ctx;
  c->resolving = NULL;
  if (c->state != RB_CONNECTING || c->ac) return; /* closed meanwhile */
  if (!master) {
    went_down(c, "no sentinel knows the master");
    return;
  }
  connected_to(c, redisAsyncConnect(master->host, master->port));
}

static void connect_now(rb_conn *c) {
  const rb_url *u = c->url;
  if (u->mode == RB_SENTINEL) {
    c->state = RB_CONNECTING;
    c->resolving = rb_sentinel_resolve(c->loop, u, c->timeout_ms, on_master, c);
    return;
  }
  connected_to(c, u->mode == RB_UNIX ? redisAsyncConnectUnix(u->path)
                                     : redisAsyncConnect(u->addr.host, u->addr.port));
}

void rb_conn_init(rb_conn *c, uv_loop_t *loop, const rb_url *url, const char *name,
                  int64_t timeout_ms, rb_counters *counters) {
  memset(c, 0, sizeof(*c));
  c->loop = loop;
  c->url = url;
  c->name = name;
  c->timeout_ms = timeout_ms;
  c->counters = counters;
  c->state = RB_DOWN;
  uv_timer_init(loop, &c->deadline);
  uv_timer_init(loop, &c->retry);
  uv_unref((uv_handle_t *)&c->retry);
  uv_check_init(loop, &c->flush);
  c->deadline.data = c->retry.data = c->flush.data = c;
  c->open_handles = 3;
}

void rb_conn_start(rb_conn *c) {
  if (c->weak) uv_unref((uv_handle_t *)&c->deadline);
  connect_now(c);
}

static void on_timer_closed(uv_handle_t *h) {
  rb_conn *c = h->data;
  if (--c->open_handles == 0 && c->on_closed) c->on_closed(c->cb_ctx);
}

void rb_conn_close(rb_conn *c) {
  if (c->state == RB_CLOSED) return;
  enum rb_state was = c->state;
  c->state = RB_CLOSED;
  redisAsyncContext *ac = c->ac;
  if (c->resolving) rb_sentinel_cancel(c->resolving);
  c->resolving = NULL;
  fail_all(c);
  c->ac = NULL;
  if (ac) {
    ac->data = NULL;
    redisAsyncFree(ac);
  }
  (void)was;
  uv_close((uv_handle_t *)&c->deadline, on_timer_closed);
  uv_close((uv_handle_t *)&c->retry, on_timer_closed);
  uv_close((uv_handle_t *)&c->flush, on_timer_closed);
}

void rb_conn_drop_later(rb_conn *c) {
  if (c->state != RB_UP || !c->ac || c->drop_wanted) return;
  c->drop_wanted = true;
  uv_timer_start(&c->deadline, on_deadline, 0, 0);
}
