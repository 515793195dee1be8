/* tests/lib/redis.h: a real redis-server for a test (Debian's), on a Unix socket in a
 * temporary directory: --port 0 (no TCP), appendonly with appendfsync always (an acknowledged
 * write survives kill -9 of Redis), no RDB snapshots. Started and stopped by the test itself;
 * readiness is a PING answered, awaited with a deadline. Failures end the test (tt_fail).
 *
 * After a crash it is restarted the way sidecar/store/redis/README.md tells operators to:
 * `aof-load-truncated no`, and `redis-check-aof --fix` first when the AOF ends in a torn write.
 * Redis's own truncation (aof-load-truncated yes) cuts a torn MULTI/EXEC block after its last
 * whole command, leaving the block open, and at the next load that block's first commands run
 * with the next transaction: half of one unacknowledged write comes back (Redis 7.0.15; the
 * crash harness's test torn_transaction_is_not_half_applied shows it).
 *
 * td_launch (daemon.h) uses it when TT_STORE=redis: each daemon dir gets its own Redis, and
 * every suite registered a second time with that env runs against the Redis backend. */
#ifndef TT_REDIS_H
#define TT_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct tr_redis {
  pid_t pid;
  char dir[160];    /* its working dir (AOF) and log */
  char sock[200];
  char url[220];    /* redis+unix://<sock>, for --store */
  int aof_fixed;    /* restarts that found the AOF ending in a torn write and cut it */
} tr_redis;

/* Starts redis-server in dir (made if missing; NULL: a new temp dir) and waits for PING. */
void tr_start(tr_redis *r, const char *dir);
/* Starts it again in the same dir (after tr_kill9/tr_stop) and waits for PING: Redis answers
 * -LOADING until it has loaded its AOF, so on return every write it had made durable is back.
 * A torn AOF tail is first cut by redis-check-aof --fix (counted in aof_fixed). */
void tr_restart(tr_redis *r);
/* SIGTERM and wait. */
void tr_stop(tr_redis *r);
/* SIGKILL and wait. */
void tr_kill9(tr_redis *r);
/* kill -STOP / -CONT. */
void tr_pause(tr_redis *r);
void tr_resume(tr_redis *r);
/* Sends one command (words; NULL-terminated) with redis-cli; its stdout into out (cap).
 * Returns the exit status. */
int tr_cli(const tr_redis *r, char *out, size_t cap, const char *const *words);
/* Clients connected to r other than the one asking (INFO clients), or -1 if it did not answer. */
int tr_clients(const tr_redis *r);
/* Waits (bounded by timeout_ms, then the test fails) until r has n clients besides the one
 * asking: e.g. 0 after a daemon was killed, when Redis has read (and applied) everything the
 * dead daemon's connections had sent. */
void tr_await_clients(const tr_redis *r, int n, int timeout_ms);
/* Removes dir (r must be stopped) when tr_start made it. */
void tr_cleanup(tr_redis *r);
/* True when TT_STORE=redis: suites then run against Redis (cases that test LMDB itself skip). */
bool tr_env_redis(void);

#endif
