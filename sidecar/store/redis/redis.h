/* sidecar/store/redis/redis.h: the Redis backend's insides, shared by its files.
 *
 *   url.c          --store redis URLs and the password (never logged: ts_redis_url_masked)
 *   client.c       one connection: hiredis async on the loop, a deadline per request,
 *                  reconnection with jittered backoff, the connect sequence (AUTH, SELECT,
 *                  ROLE, FUNCTION LOAD REPLACE)
 *   sentinel.c     the master's address from Sentinel (redis-sentinel:// URLs)
 *   codec.c        key names and the session record's byte form in Redis (msgpack)
 *   ops_sessions.c, ops_tokens.c, feed.c: the operations of backend.h
 *   backend.c      ts_backend_redis_open, the ops table, stats, readiness, close
 *   cache.c        the local session cache, kept coherent by CLIENT TRACKING (--session-cache)
 *   tessera.lua    the Redis Functions every write is (embedded as ts_redis_lua)
 *
 * Ownership: the backend (rb) owns two connections (commands, and the feed reader blocked in
 * XREAD) and the cache (with its tracking connection); each connection owns its pending requests and frees them when their reply, their
 * deadline or the connection's end answered them. Loop thread only. */
#ifndef TS_REDIS_H
#define TS_REDIS_H

#include "backend.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

extern const char ts_redis_lua[];

/* ---- url.c ---------------------------------------------------------------------------------- */

enum rb_mode { RB_TCP, RB_UNIX, RB_SENTINEL };

#define RB_MAX_SENTINELS 8

typedef struct rb_addr {
  char host[256];
  int port;
} rb_addr;

typedef struct rb_url {
  enum rb_mode mode;
  rb_addr addr;                     /* RB_TCP */
  char path[256];                   /* RB_UNIX */
  rb_addr sentinels[RB_MAX_SENTINELS]; /* RB_SENTINEL */
  unsigned n_sentinels;
  char master[128];                 /* RB_SENTINEL: the master's name */
  int db;
  char user[128];
  char password[512];               /* secret */
} rb_url;

/* Parses url; the password: the URL's, else TESSERA_REDIS_PASSWORD, else password_file's
 * first line. Returns 0 or TS_ECONFIG with *why set (a static string, no secret). */
int rb_url_parse(rb_url *u, const char *url, const char *password_file, const char **why);
/* url with any password replaced by "***", for logs. */
void rb_url_masked(const char *url, char *out, size_t cap);
void rb_url_wipe(rb_url *u);

/* ---- client.c ------------------------------------------------------------------------------- */

/* A reply handler: r is the reply (never an error reply), or NULL when the request failed
 * (down, past its deadline, an error reply: already logged and counted). */
typedef void (*rb_reply_fn)(void *ctx, redisReply *r);

typedef struct rb_req rb_req;
typedef struct rb_conn rb_conn;

enum rb_state { RB_DOWN, RB_CONNECTING, RB_UP, RB_CLOSED };

typedef struct rb_counters {
  uint64_t reconnects, timeouts, errors;
} rb_counters;

struct rb_conn {
  uv_loop_t *loop;
  const rb_url *url;
  const char *name;          /* "commands" | "feed", for logs */
  int64_t timeout_ms;
  bool load_functions;       /* FUNCTION LOAD REPLACE at connect (the commands connection) */
  bool weak;                 /* its requests never hold the loop (the feed reader) */
  void *resolving;           /* a Sentinel lookup in flight (sentinel.c), or NULL */
  redisAsyncContext *ac;
  enum rb_state state;
  rb_req *head, *tail;       /* pending, in send order (replies come back in that order) */
  size_t pending;
  uv_timer_t deadline;       /* the head's deadline */
  uv_timer_t retry;          /* reconnection backoff */
  uv_check_t flush;          /* writes what this loop turn queued, once (client.c) */
  bool in_flush;
  unsigned failures;         /* consecutive failed connects: the backoff's exponent */
  bool drop_wanted;          /* drop at the next deadline tick (outside hiredis callbacks) */
  bool ever_up;
  unsigned open_handles;     /* handles not closed yet (close) */
  rb_counters *counters;
  void (*on_up)(void *ctx);  /* connected and ready (after the connect sequence) */
  void (*on_down)(void *ctx);
  void *cb_ctx;
  void (*on_closed)(void *ctx); /* both timers closed */
};

void rb_conn_init(rb_conn *c, uv_loop_t *loop, const rb_url *url, const char *name,
                  int64_t timeout_ms, rb_counters *counters);
/* Starts connecting (and reconnecting, whenever the connection is lost). */
void rb_conn_start(rb_conn *c);
/* Sends one command; fn runs exactly once (maybe before this returns: down, or cannot send).
 * extra_ms: added to the deadline (XREAD BLOCK). */
void rb_command(rb_conn *c, rb_reply_fn fn, void *ctx, int argc, const char **argv,
                const size_t *lens, int64_t extra_ms);
/* Drops the connection soon (from a timer, never inside a hiredis callback); it reconnects. */
void rb_conn_drop_later(rb_conn *c);
/* Fails every pending request, drops the connection, stops reconnecting; on_closed later. */
void rb_conn_close(rb_conn *c);

/* ---- sentinel.c ----------------------------------------------------------------------------- */

/* Asks the sentinels in turn (each with the deadline) for the master's address; calls done
 * with it, or with NULL when none answered. Never holds the loop (unref'd). */
void *rb_sentinel_resolve(uv_loop_t *loop, const rb_url *url, int64_t timeout_ms,
                          void (*done)(void *ctx, const rb_addr *master), void *ctx);
/* done will not be called (the connection closes); the lookup ends on its own. */
void rb_sentinel_cancel(void *resolving);

/* ---- codec.c -------------------------------------------------------------------------------- */

#define RB_KEY_MAX 600

void rb_hex(char *out, const uint8_t *bin, size_t n);
/* Key names (see tessera.lua). Each returns the length written to out (RB_KEY_MAX). */
size_t rb_key_session(char *out, const uint8_t hash[TS_HASH_BYTES]);
size_t rb_key_handle(char *out, const uint8_t handle[TS_HANDLE_BYTES]);
size_t rb_key_user(char *out, const char *sub, size_t sub_len, const char *what);
size_t rb_key_family(char *out, const char *fam);
size_t rb_key_listed(char *out, char kind, const char *id, size_t id_len);
size_t rb_key_cutoff(char *out, const char *sub, size_t sub_len);
#define RB_KEY_FEED "t:{rev}:feed"
#define RB_KEY_LAST "t:{rev}:last"
#define RB_KEY_TRIMMED "t:{rev}:trimmed"
#define RB_KEY_ID "t:{rev}:id"

/* The session record as Redis holds it: a msgpack array (tessera.lua reads it with cmsgpack). */
uint8_t *rb_session_pack(const ts_session_rec *r, size_t *len);
/* Points r into buf (valid while buf is). False if not a record. */
bool rb_session_unpack(const char *buf, size_t len, ts_session_rec *r);

/* ---- the backend ---------------------------------------------------------------------------- */

typedef struct rb_cache rb_cache;

typedef struct rb {
  ts_backend base; /* first */
  uv_loop_t *loop;
  const ts_config *cfg;
  rb_url url;
  char url_masked[512];
  rb_conn cmd, feed;
  rb_cache *cache;     /* NULL: --session-cache 0 */
  rb_counters counters;
  char store_id[17];   /* from t:{rev}:id, hex; "" until the first connect */
  bool counted;        /* sessions was read once */
  uint64_t sessions, families, revocations; /* the gauges, as the last reply that counted
                                               them said (tessera.lua t:{all}:*) */
  /* the feed reader */
  ts_feed_pos read_pos; /* the last stream id read */
  bool reading;
  bool closing;
  unsigned open_conns; /* parts still closing: the connections, the cache */
} rb;

/* One part of b (a connection, the cache) finished closing; the last frees b (backend.c). */
void rb_conn_closed_part(void *b);

/* ---- cache.c: the local session cache ------------------------------------------------------- */

/* Opens the cache with this many slots (rounded up to a power of two; 0: no cache, b->cache
 * stays NULL) and starts its tracking connection. It is trusted only while invalidations flow
 * and the commands connection is up; until then every call below is a miss or a no-op. */
int rb_cache_open(rb *b, size_t slots);
/* The commands connection came up (again: the tracking connection is made again, following
 * it to the same master) or went down (the cache empties). */
void rb_cache_commands_up(rb *b);
void rb_cache_commands_down(rb *b);
/* The record of hash as Redis holds it, when cached (valid until the loop turns). The first
 * call of a loop turn reads the invalidations Redis has sent. */
bool rb_cache_get(rb *b, const uint8_t hash[TS_HASH_BYTES], const char **rec, size_t *len);
/* A GET of hash is about to be sent: returns its ticket (0: do not fill). */
uint32_t rb_cache_filling(rb *b, const uint8_t hash[TS_HASH_BYTES]);
/* The GET with this ticket answered rec: kept unless the key was invalidated meanwhile. */
void rb_cache_fill(rb *b, const uint8_t hash[TS_HASH_BYTES], uint32_t ticket, const char *rec,
                   size_t len);
/* This sidecar changed or removed the session: forget it now. */
void rb_cache_forget(rb *b, const uint8_t hash[TS_HASH_BYTES]);
/* Empties the cache (this sidecar removed sessions it cannot name). */
void rb_cache_flush(rb *b);
void rb_cache_stats(rb *b, struct ts_stat_list *l);
/* Closes the tracking connection; the cache counts as one part of rb_conn_closed_part. */
void rb_cache_close(rb *b);

bool rb_stream_id(const char *s, size_t len, ts_feed_pos *pos);
/* Tells the events side about a stream id a write just added. */
void rb_published(rb *b, const redisReply *sid);
/* Argument list builder for a command. */
#define RB_MAX_ARGS 64
typedef struct rb_args {
  int n;
  const char *v[RB_MAX_ARGS];
  size_t l[RB_MAX_ARGS];
  char buf[8192]; /* numbers and key names */
  size_t used;
  bool overflow;
} rb_args;
void rb_args_init(rb_args *a);
void rb_arg(rb_args *a, const void *s, size_t len); /* s must outlive the send */
void rb_arg_str(rb_args *a, const char *s);
/* Copies into the builder's buffer. */
void rb_arg_copy(rb_args *a, const void *s, size_t len);
void rb_arg_int(rb_args *a, int64_t v);
/* The MINID before which no feed entry is in force any more (ms), as an argument. */
void rb_arg_minid(rb_args *a, const rb *b);
/* Sends the FCALL a holds (a->v[0] "FCALL", name, numkeys, ...). A reply whose last element
 * is "s=<n>" (functions that change sessions) updates the sessions gauge before fn runs. */
void rb_send(rb *b, rb_args *a, rb_reply_fn fn, void *ctx);

/* Adds the keys s, h, sl, sx of session n to a; fills hashhex and *packed (caller frees). */
int rb_session_args(rb_args *a, const ts_session_new *n, char hashhex[2 * TS_HASH_BYTES + 1],
                    uint8_t **packed, size_t *packed_len);
/* The status of an FCALL's reply (its first element): 0, TS_ENOTFOUND, TS_EREVOKED,
 * TS_EEXPIRED, TS_EREUSED, or TS_EUNAVAILABLE (no reply, or not one of ours). */
int rb_fcall_status(const redisReply *r);

/* ops tables, filled by each file */
void rb_session_ops(ts_backend_ops *o);
void rb_token_ops(ts_backend_ops *o);
void rb_feed_ops(ts_backend_ops *o);
/* The feed reader (feed.c): started when the feed connection is up (it stops by itself when
 * the connection drops: its XREAD fails). */
void rb_feed_reader_up(void *ctx);
/* The commands connection came up: refreshes store_id (feed.c). */
void rb_feed_head_refresh(rb *b);

#endif
