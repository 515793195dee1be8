/* sidecar/store/redis/cache.c: a coherent local cache of session records, kept by Redis's
 * client-side caching in broadcast mode (see redis.h, rb_cache_*).
 *
 * A third connection ("tracking") runs CLIENT ID, then CLIENT TRACKING ON REDIRECT <its own
 * id> BCAST PREFIX t:{s: (every write of any session key, by any sidecar or by expiry, is
 * announced), then SUBSCRIBE __redis__:invalidate (RESP2: invalidations arrive as messages).
 * Only once the subscription is confirmed is the cache trusted; it is emptied and distrusted
 * whenever the tracking or the commands connection goes down (a failover, Redis restarted:
 * invalidations may have been missed), and when the commands connection comes up again the
 * tracking connection is made again, so both talk to the same master.
 *
 * Coherence: Redis queues a revocation's invalidation in the same event-loop turn that ran
 * it and writes it out before it sleeps, alongside the revoking call's reply. Before serving
 * the first cached record of each loop turn, the tracking socket is read until it is empty
 * (hiredis reads 16 KiB a call; a revoke_all of a thousand sessions is one ~80 KiB message:
 * with one read, test_replicas saw such sessions served after the revocation), so a validate
 * that arrives after a revocation's reply was sent finds the record gone. Redis writes at most
 * 64 KiB to a client per turn, so while part of a message has been read and the rest has not,
 * the cache answers nothing and takes no fill. This sidecar's own revoke by handle, revoke_all
 * and user.revoke flush the cache when they complete, without waiting for the message.
 * A miss marks its slot "filling" with a ticket; an invalidation of that key clears the slot,
 * so a GET reply read after its invalidation is not kept. This sidecar's own writes of a known
 * session (touch, rotate, revoke by sid) forget the record locally as well.
 *
 * Liveness: a PING on the commands connection every heartbeat while the cache is trusted:
 * a Redis that stops answering (SIGSTOP, a network partition) fails its deadline, the commands
 * connection drops, and validation fails closed as it does without the cache.
 *
 * The table is store/record_cache.h's, --session-cache slots. Loop thread only. */
#include "redis.h"

#include "domain.h"
#include "error.h"
#include "log.h"
#include "record_cache.h"

#include <sodium.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL "__redis__:invalidate"
#define PREFIX "t:{s:"
#define HEARTBEAT_MIN_MS 50
#define HEARTBEAT_MAX_MS 1000

struct rb_cache {
  rb *b;
  rb_conn conn;          /* "tracking" */
  ts_rcache *table;
  bool subscribed;       /* invalidations flow: the cache may be trusted */
  bool drained;          /* the tracking socket was read in this loop turn */
  bool in_message;       /* inside the tracking connection's own callback */
  unsigned commands_ups; /* times the commands connection came up */
  uv_prepare_t turn;
  uv_timer_t heartbeat;
  unsigned open_handles;
  uint64_t invalidated;
};

static void flush_all(rb_cache *k) { ts_rcache_flush(k->table); }

static void distrust(rb_cache *k) {
  if (k->subscribed) ts_log(TS_LOG_INFO, "redis session cache off until tracking resumes", NULL);
  k->subscribed = false;
  flush_all(k);
}

static bool trusted(const rb_cache *k) {
  return k->subscribed && k->b->cmd.state == RB_UP && k->conn.state == RB_UP && k->conn.ac;
}

/* ---- invalidations -------------------------------------------------------------------------- */

static bool hex_byte(const char *s, uint8_t *out) {
  int v = 0;
  for (int i = 0; i < 2; i++) {
    char ch = s[i];
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | d;
  }
  *out = (uint8_t)v;
  return true;
}

/* "t:{s:<64 hex>}" -> its hash. */
static bool key_hash(const char *key, size_t len, uint8_t hash[TS_HASH_BYTES]) {
  const size_t pl = sizeof(PREFIX) - 1;
  if (len != pl + 2 * TS_HASH_BYTES + 1 || memcmp(key, PREFIX, pl) != 0 || key[len - 1] != '}')
    return false;
  for (size_t i = 0; i < TS_HASH_BYTES; i++)
    if (!hex_byte(key + pl + 2 * i, &hash[i])) return false;
  return true;
}

static void invalidate_key(rb_cache *k, const char *key, size_t len) {
  uint8_t hash[TS_HASH_BYTES];
  if (!key_hash(key, len, hash)) return; /* another key under the prefix: not a record */
  if (ts_rcache_forget(k->table, hash)) k->invalidated++;
}

/* Every reply of the subscription: its confirmation, then the messages; NULL when the
 * connection ends. */
static void on_message(redisAsyncContext *ac, void *reply, void *privdata) {
  (void)ac;
  rb_cache *k = privdata;
  redisReply *r = reply;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
      r->element[0]->type != REDIS_REPLY_STRING) {
    if (!r) distrust(k);
    return;
  }
  const char *kind = r->element[0]->str;
  if (strcmp(kind, "subscribe") == 0) {
    flush_all(k); /* nothing was cached untracked; empty anyway */
    k->subscribed = true;
    ts_log(TS_LOG_INFO, "redis session cache on (tracking)", "{s:I}", "slots",
           (json_int_t)ts_rcache_slots(k->table));
    return;
  }
  if (strcmp(kind, "message") != 0) return;
  redisReply *keys = r->element[2];
  k->in_message = true;
  if (keys->type == REDIS_REPLY_NIL) { /* FLUSHALL/FLUSHDB, or Redis dropped its table */
    flush_all(k);
  } else if (keys->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < keys->elements; i++)
      if (keys->element[i]->type == REDIS_REPLY_STRING)
        invalidate_key(k, keys->element[i]->str, keys->element[i]->len);
  }
  k->in_message = false;
}

static void on_tracking(void *ctx, redisReply *r) {
  rb_cache *k = ctx;
  if (!r || r->type != REDIS_REPLY_STATUS || !k->conn.ac) {
    if (r) ts_log(TS_LOG_WARN, "redis refused CLIENT TRACKING: no session cache", NULL);
    rb_conn_drop_later(&k->conn);
    return;
  }
  const char *argv[2] = {"SUBSCRIBE", CHANNEL};
  size_t lens[2] = {9, sizeof(CHANNEL) - 1};
  if (redisAsyncCommandArgv(k->conn.ac, on_message, k, 2, argv, lens) != REDIS_OK)
    rb_conn_drop_later(&k->conn);
}

static void on_client_id(void *ctx, redisReply *r) {
  rb_cache *k = ctx;
  if (!r || r->type != REDIS_REPLY_INTEGER) {
    rb_conn_drop_later(&k->conn);
    return;
  }
  char id[24];
  int n = snprintf(id, sizeof(id), "%lld", (long long)r->integer);
  const char *argv[] = {"CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", PREFIX};
  size_t lens[] = {6, 8, 2, 8, (size_t)n, 5, 6, sizeof(PREFIX) - 1};
  rb_command(&k->conn, on_tracking, k, 8, argv, lens, 0);
}

static void on_tracking_up(void *ctx) {
  rb_cache *k = ctx;
  rb_command(&k->conn, on_client_id, k, 2, (const char *[]){"CLIENT", "ID"}, (size_t[]){6, 2}, 0);
}

static void on_tracking_down(void *ctx) { distrust(ctx); }

/* ---- the loop turn and the heartbeat -------------------------------------------------------- */

static void on_turn(uv_prepare_t *h) { ((rb_cache *)h->data)->drained = false; }

static void on_pong(void *ctx, redisReply *r) { (void)ctx, (void)r; } /* a miss drops cmd */

static void on_heartbeat(uv_timer_t *t) {
  rb_cache *k = t->data;
  if (trusted(k))
    rb_command(&k->b->cmd, on_pong, k, 1, (const char *[]){"PING"}, (size_t[]){4}, 0);
}

/* Reads what Redis has sent on the tracking connection: hiredis reads at most 16 KiB a call,
 * and a burst of invalidations (a revoke_all of many sessions) is one larger message, so read
 * while the socket holds more (bounded). May drop the connection. */
static void drain(rb_cache *k) {
  for (int i = 0; i < 256 && k->conn.ac && trusted(k); i++) {
    redisAsyncHandleRead(k->conn.ac);
    int avail = 0;
    if (!k->conn.ac || ioctl(k->conn.ac->c.fd, FIONREAD, &avail) != 0 || avail <= 0) break;
  }
}

/* The tracking connection holds part of a message: Redis writes at most 64 KiB to a client per
 * event-loop turn, so the rest of an invalidation may still be on its way. Until it is whole,
 * the cache answers nothing (and takes no fill). */
static bool partial(const rb_cache *k) {
  const redisReader *rd = k->conn.ac ? k->conn.ac->c.reader : NULL;
  /* hiredis leaves an empty task (type -1) at index 0 once it has parsed everything; a type
   * set there, deeper tasks, or bytes not yet parsed mean a reply in progress. */
  return rd && (rd->pos < rd->len || rd->ridx > 0 || (rd->ridx == 0 && rd->rstack[0].type != -1));
}

/* ---- the interface (redis.h) ---------------------------------------------------------------- */

int rb_cache_open(rb *b, size_t slots) {
  b->cache = NULL;
  if (slots == 0) return 0;
  bool oom;
  rb_cache *k = calloc(1, sizeof(*k));
  if (!k || !(k->table = ts_rcache_open(slots, &oom))) {
    free(k);
    return TS_ENOMEM;
  }
  k->b = b;
  rb_conn_init(&k->conn, b->loop, &b->url, "tracking", b->cmd.timeout_ms, &b->counters);
  k->conn.weak = true; /* nothing it sends owes a completion */
  k->conn.cb_ctx = k;
  k->conn.on_up = on_tracking_up;
  k->conn.on_down = on_tracking_down;
  uv_prepare_init(b->loop, &k->turn);
  k->turn.data = k;
  uv_prepare_start(&k->turn, on_turn);
  uv_unref((uv_handle_t *)&k->turn);
  int64_t beat = b->cmd.timeout_ms / 2;
  if (beat < HEARTBEAT_MIN_MS) beat = HEARTBEAT_MIN_MS;
  if (beat > HEARTBEAT_MAX_MS) beat = HEARTBEAT_MAX_MS;
  uv_timer_init(b->loop, &k->heartbeat);
  k->heartbeat.data = k;
  uv_timer_start(&k->heartbeat, on_heartbeat, (uint64_t)beat, (uint64_t)beat);
  uv_unref((uv_handle_t *)&k->heartbeat);
  b->cache = k;
  rb_conn_start(&k->conn);
  return 0;
}

void rb_cache_commands_up(rb *b) {
  rb_cache *k = b->cache;
  if (!k || k->commands_ups++ == 0) return; /* the first: both connect at start */
  /* The commands connection may now talk to another master (a failover): track that one. */
  if (k->subscribed || k->conn.state == RB_UP) {
    distrust(k);
    rb_conn_drop_later(&k->conn);
  }
}

void rb_cache_commands_down(rb *b) {
  if (b->cache) flush_all(b->cache);
}

bool rb_cache_get(rb *b, const uint8_t hash[TS_HASH_BYTES], const char **rec, size_t *len) {
  rb_cache *k = b->cache;
  if (!k) return false;
  if (!k->drained && !k->in_message && trusted(k)) {
    k->drained = true;
    drain(k);
  }
  if (!trusted(k) || partial(k)) return false;
  const uint8_t *r;
  if (!ts_rcache_get(k->table, hash, &r, len)) return false;
  *rec = (const char *)r;
  return true;
}

uint32_t rb_cache_filling(rb *b, const uint8_t hash[TS_HASH_BYTES]) {
  rb_cache *k = b->cache;
  return k && trusted(k) && !partial(k) ? ts_rcache_filling(k->table, hash) : 0;
}

void rb_cache_fill(rb *b, const uint8_t hash[TS_HASH_BYTES], uint32_t ticket, const char *rec,
                   size_t len) {
  rb_cache *k = b->cache;
  if (k && trusted(k)) ts_rcache_fill(k->table, hash, ticket, (const uint8_t *)rec, len);
}

void rb_cache_forget(rb *b, const uint8_t hash[TS_HASH_BYTES]) {
  if (b->cache) ts_rcache_forget(b->cache->table, hash);
}

void rb_cache_flush(rb *b) {
  if (b->cache) flush_all(b->cache);
}

void rb_cache_stats(rb *b, struct ts_stat_list *l) {
  rb_cache *k = b->cache;
  ts_rcache_counts n;
  ts_rcache_counts_get(k ? k->table : NULL, &n);
  ts_stat_add(l, "redis_cache_up", k && trusted(k) ? 1 : 0);
  ts_stat_add(l, "redis_cache_entries", n.entries);
  ts_stat_add(l, "redis_cache_hits", n.hits);
  ts_stat_add(l, "redis_cache_misses", n.misses);
  ts_stat_add(l, "redis_cache_invalidations", k ? k->invalidated : 0);
  ts_stat_add(l, "redis_cache_flushes", n.flushes);
}

static void on_cache_part_closed(void *ctx) {
  rb_cache *k = ctx;
  if (--k->open_handles > 0) return;
  rb *b = k->b;
  ts_rcache_close(k->table);
  free(k);
  b->cache = NULL;
  rb_conn_closed_part(b);
}

static void on_handle_closed(uv_handle_t *h) { on_cache_part_closed(h->data); }

void rb_cache_close(rb *b) {
  rb_cache *k = b->cache;
  if (!k) return;
  k->subscribed = false;
  flush_all(k);
  k->open_handles = 3;
  k->conn.on_closed = on_cache_part_closed;
  rb_conn_close(&k->conn);
  uv_close((uv_handle_t *)&k->turn, on_handle_closed);
  uv_close((uv_handle_t *)&k->heartbeat, on_handle_closed);
}
