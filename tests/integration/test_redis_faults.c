/* tests/integration/test_redis_faults.c: the Redis backend when Redis fails (issue 12):
 * Redis killed under write load (every write acknowledged before is there afterwards: no
 * false success; meanwhile answers are "unavailable", never a hang; writes succeed again when
 * Redis is back), Redis paused with kill -STOP (deadlines fire: requests answer "unavailable"
 * within the timeout, sys.stats says store_up 0, and all recovers on kill -CONT), Redis not
 * there when the daemon starts (it starts, answers unavailable, connects when Redis comes), the
 * sidecar killed under load (nothing acknowledged is lost), the password never logged, and a
 * Sentinel failover (writes end up served by the promoted replica).
 *
 * A real redis-server (tests/lib/redis.h, appendfsync always). Every wait is for a condition
 * with a deadline. */
#include "calls.h"
#include "hc.h"
#include "daemon.h"
#include "redis.h"
#include "tt.h"

#include <tessera/tessera.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* session.create {sub}: "" and the sid, or the error code. */
static const char *try_create(tessera_client *c, char sid[64]) {
  static _Thread_local char code[32];
  json_t *res = NULL;
  tessera_error err = {{0}, {0}};
  int rc = tessera_call(c, "session.create", json_pack("{s:s}", "sub", "fay"), 10000, &res, &err);
  if (rc == 0) {
    snprintf(sid, 64, "%s", json_string_value(json_object_get(res, "sid")));
    json_decref(res);
    return "";
  }
  snprintf(code, sizeof(code), "%s", err.code[0] ? err.code : tessera_strerror(rc));
  return code;
}

#define WORKERS 4
#define MAX_ACKED 20000

typedef struct load {
  const td_daemon *d;
  atomic_bool stop;
  atomic_int acked, unavailable, other;
  pthread_mutex_t mu;
  char (*sids)[64];
  int n_sids;
  char other_code[32];
} load;

static void *worker(void *arg) {
  load *l = arg;
  tessera_client *c = NULL;
  if (tessera_connect(l->d->socket, &c) != 0) return NULL;
  while (!atomic_load(&l->stop)) {
    char sid[64];
    const char *code = try_create(c, sid);
    if (!code[0]) {
      pthread_mutex_lock(&l->mu);
      if (l->n_sids < MAX_ACKED) snprintf(l->sids[l->n_sids++], 64, "%s", sid);
      pthread_mutex_unlock(&l->mu);
      atomic_fetch_add(&l->acked, 1);
    } else if (strcmp(code, "unavailable") == 0) {
      atomic_fetch_add(&l->unavailable, 1);
    } else {
      pthread_mutex_lock(&l->mu); /* several workers may see the same failure at once */
      snprintf(l->other_code, sizeof(l->other_code), "%s", code);
      pthread_mutex_unlock(&l->mu);
      atomic_fetch_add(&l->other, 1);
    }
  }
  tessera_close(c);
  return NULL;
}

/* Waits (bounded) until *v >= want. */
static void await_count(atomic_int *v, int want, int timeout_ms, const char *what) {
  long long end = tc_mono_ms() + timeout_ms;
  while (atomic_load(v) < want) {
    TT_ASSERT_MSG(tc_mono_ms() < end, "%s: %d of %d within %d ms", what, atomic_load(v), want,
                  timeout_ms);
    usleep(2000); /* polling a counter the workers raise, bounded by the deadline */
  }
}

/* Starts WORKERS threads creating sessions through d until l->stop. */
static void load_start(load *l, const td_daemon *d, pthread_t th[WORKERS]) {
  *l = (load){.d = d};
  pthread_mutex_init(&l->mu, NULL);
  l->sids = calloc(MAX_ACKED, sizeof(*l->sids));
  for (int i = 0; i < WORKERS; i++) TT_ASSERT(pthread_create(&th[i], NULL, worker, l) == 0);
}

static void redis_killed_under_load_loses_nothing_acknowledged(void) {
  tr_redis r;
  tr_start(&r, NULL);
  td_daemon d;
  const char *extra[] = {"--store", r.url, "--redis-timeout", "300", NULL};
  td_start(&d, extra);
  load l;
  pthread_t th[WORKERS];
  load_start(&l, &d, th);
  await_count(&l.acked, 200, 20000, "writes before the kill");
  tr_kill9(&r);
  int acked_at_kill = atomic_load(&l.acked);
  await_count(&l.unavailable, 50, 10000, "unavailable answers while Redis is down");
  /* Nothing succeeds while Redis is down (a few replies may have been in flight). */
  TT_ASSERT(atomic_load(&l.acked) <= acked_at_kill + WORKERS);
  tr_restart(&r);
  int before = atomic_load(&l.acked);
  await_count(&l.acked, before + 50, 20000, "writes after Redis came back");
  atomic_store(&l.stop, true);
  for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
  TT_ASSERT_MSG(atomic_load(&l.other) == 0, "an answer neither done nor unavailable: %s",
                l.other_code);
  /* Every acknowledged session is there: kill Redis once more, restart, and check them all. */
  tr_kill9(&r);
  tr_restart(&r);
  tessera_client *c = tc_client(&d);
  long long end = tc_mono_ms() + 10000;
  json_t *out = NULL;
  while (strcmp(tc_validate(c, l.sids[0], NULL, &out), "unavailable") == 0) {
    TT_ASSERT_MSG(tc_mono_ms() < end, "the daemon did not reconnect within 10 s");
    usleep(10000);
  }
  json_decref(out);
  for (int i = 0; i < l.n_sids; i++) {
    out = NULL;
    const char *code = tc_validate(c, l.sids[i], NULL, &out);
    TT_ASSERT_MSG(code[0] == 0, "acknowledged session %d of %d: %s", i, l.n_sids, code);
    json_decref(out);
  }
  TT_ASSERT(tc_stat(c, "redis_reconnects") >= 2);
  tessera_close(c);
  free(l.sids);
  tc_stop_clean(&d);
  td_cleanup(&d);
  tr_stop(&r);
  tr_cleanup(&r);
}

/* kill -9 of the sidecar under write load (Redis with appendfsync always): every session it
 * acknowledged is there for the next sidecar. (The LMDB crash harness, tests/crash, is about
 * LMDB's file; this is the same promise for Redis.) */
static void sidecar_killed_under_load_loses_nothing_acknowledged(void) {
  tr_redis r;
  tr_start(&r, NULL);
  td_daemon d;
  const char *extra[] = {"--store", r.url, "--redis-timeout", "2000", NULL};
  td_start(&d, extra);
  load l;
  pthread_t th[WORKERS];
  load_start(&l, &d, th);
  await_count(&l.acked, 300, 20000, "writes before the kill");
  td_kill9(&d);
  atomic_store(&l.stop, true);
  for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
  td_launch(&d, extra);
  tessera_client *c = tc_client(&d);
  for (int i = 0; i < l.n_sids; i++) {
    json_t *out = NULL;
    const char *code = tc_validate(c, l.sids[i], NULL, &out);
    TT_ASSERT_MSG(code[0] == 0, "acknowledged session %d of %d: %s", i, l.n_sids, code);
    json_decref(out);
  }
  tessera_close(c);
  free(l.sids);
  tc_stop_clean(&d);
  tr_stop(&r);
  tr_cleanup(&r);
}

/* The value of series on d's /metrics (-1 when absent). */
static double metric(int port, const char *series) {
  hc_resp *res = malloc(sizeof(*res));
  TT_ASSERT(res != NULL);
  hc_get(port, "/metrics", NULL, res);
  TT_EQ_INT(res->status, 200);
  char *text = strndup(res->body, res->body_len);
  free(res);
  double v = hc_prom_value(text, series);
  free(text);
  return v;
}

static void redis_paused_answers_unavailable_within_the_deadline(void) {
  tr_redis r;
  tr_start(&r, NULL);
  td_daemon d;
  char listen[64];
  int port = hc_free_port();
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  const char *extra[] = {"--store", r.url, "--redis-timeout", "200", "--http-listen", listen, NULL};
  td_start(&d, extra);
  tessera_client *c = tc_client(&d);
  json_t *s = tc_create_sub(c, "gus");
  TT_EQ_INT(tc_stat(c, "store_up"), 1);
  /* A session in the sidecar's cache too: it fails closed as soon as the heartbeat (a PING
   * every half deadline) misses its deadline; until then it is served, as nothing can be
   * revoked while Redis is stopped. */
  TT_EQ_INT(tc_wait_stat(c, "redis_cache_up", true, 1, 10000), 1);
  json_t *cached = tc_create_sub(c, "gus");
  tc_expect_valid(c, tc_str(cached, "sid"));
  long long hits = tc_stat(c, "redis_cache_hits");
  tc_expect_valid(c, tc_str(cached, "sid"));
  TT_EQ_INT(tc_stat(c, "redis_cache_hits"), hits + 1);
  TT_ASSERT(metric(port, "tessera_redis_cache_hits_total") == (double)(hits + 1));
  TT_ASSERT(metric(port, "tessera_redis_cache_entries") >= 1);
  TT_ASSERT(metric(port, "tessera_store_up") == 1);
  tr_pause(&r);
  long long paused_at = tc_mono_ms();
  const char *code;
  while ((code = tc_validate(c, tc_str(cached, "sid"), NULL, NULL))[0] == '\0') {
    TT_ASSERT_MSG(tc_mono_ms() - paused_at < 2000, "a cached session still valid %lld ms "
                  "after Redis stopped", tc_mono_ms() - paused_at);
    usleep(10000);
  }
  TT_EQ_STR(code, "unavailable");
  json_decref(cached);
  for (int i = 0; i < 5; i++) {
    long long t0 = tc_mono_ms();
    json_t *out = NULL;
    TT_EQ_STR(tc_validate(c, tc_str(s, "sid"), NULL, &out), "unavailable");
    char sid[64];
    TT_EQ_STR(try_create(c, sid), "unavailable");
    TT_ASSERT_MSG(tc_mono_ms() - t0 < 2000, "answers took %lld ms", tc_mono_ms() - t0);
  }
  /* token.verify without the store keeps working. */
  char *tok = tc_issue_sub(c, "gus");
  TT_EQ_STR(tc_verify_code(c, tok, NULL, false), "");
  TT_EQ_STR(tc_verify_code(c, tok, NULL, true), "unavailable");
  TT_ASSERT(tc_stat(c, "redis_timeouts") >= 1);
  TT_EQ_INT(tc_stat(c, "store_up"), 0);
  TT_ASSERT(metric(port, "tessera_store_up") == 0);
  TT_ASSERT(metric(port, "tessera_redis_timeouts_total") >= 1);
  tr_resume(&r);
  long long end = tc_mono_ms() + 10000;
  json_t *out = NULL;
  while (strcmp(tc_validate(c, tc_str(s, "sid"), NULL, &out), "") != 0) {
    TT_ASSERT_MSG(tc_mono_ms() < end, "no recovery within 10 s of kill -CONT");
    usleep(10000);
  }
  json_decref(out);
  TT_EQ_STR(tc_verify_code(c, tok, NULL, true), "");
  free(tok);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
  td_cleanup(&d);
  tr_stop(&r);
  tr_cleanup(&r);
}

static void redis_absent_at_start_is_waited_for(void) {
  tr_redis r;
  memset(&r, 0, sizeof(r));
  snprintf(r.dir, sizeof(r.dir), "/tmp/tessera-redis.XXXXXX");
  TT_ASSERT(mkdtemp(r.dir) != NULL);
  snprintf(r.sock, sizeof(r.sock), "%s/redis.sock", r.dir);
  snprintf(r.url, sizeof(r.url), "redis+unix://%s", r.sock);
  td_daemon d;
  /* 2 s: what is tested is the wait for Redis, not the deadline (a slow fsync must not fail
   * the validate below) */
  const char *extra[] = {"--store", r.url, "--redis-timeout", "2000", NULL};
  td_start(&d, extra);
  tessera_client *c = tc_client(&d);
  char sid[64];
  TT_EQ_STR(try_create(c, sid), "unavailable");
  TT_EQ_INT(tc_stat(c, "store_up"), 0);
  tr_restart(&r);
  long long end = tc_mono_ms() + 15000;
  while (strcmp(try_create(c, sid), "") != 0) {
    TT_ASSERT_MSG(tc_mono_ms() < end, "no connection within 15 s of Redis starting");
    usleep(10000);
  }
  tc_expect_valid(c, sid);
  TT_EQ_INT(tc_wait_stat(c, "store_up", true, 1, 10000), 1); /* the feed connection too */
  tessera_close(c);
  tc_stop_clean(&d);
  td_cleanup(&d);
  tr_stop(&r);
  tr_cleanup(&r);
}

/* The password never shows in the log, whether it comes from the URL or the environment. */
static void the_password_is_never_logged(void) {
  tr_redis r;
  tr_start(&r, NULL);
  char out[256];
  TT_EQ_INT(tr_cli(&r, out, sizeof(out),
                   (const char *[]){"CONFIG", "SET", "requirepass", "s3cret-pw-123", NULL}),
            0);
  char url[300];
  snprintf(url, sizeof(url), "%s", r.url); /* unix: the password from the environment */
  setenv("TESSERA_REDIS_PASSWORD", "s3cret-pw-123", 1);
  td_daemon d;
  const char *extra[] = {"--store", url, "--redis-timeout", "2000", NULL}; /* not under test */
  td_start(&d, extra);
  tessera_client *c = tc_client(&d);
  json_t *s = tc_create_sub(c, "hal");
  tc_expect_valid(c, tc_str(s, "sid"));
  json_decref(s);
  tessera_close(c);
  tc_stop_ok(&d);
  char *log = td_read_log(&d);
  TT_ASSERT_MSG(strstr(log, "s3cret-pw-123") == NULL, "the password is in the log");
  free(log);
  /* A wrong password: the daemon starts, answers unavailable, logs no password. */
  setenv("TESSERA_REDIS_PASSWORD", "wrong-pw-456", 1);
  td_launch(&d, extra);
  c = tc_client(&d);
  char sid[64];
  TT_EQ_STR(try_create(c, sid), "unavailable");
  tessera_close(c);
  tc_stop_ok(&d);
  log = td_read_log(&d);
  TT_ASSERT(strstr(log, "wrong-pw-456") == NULL);
  free(log);
  unsetenv("TESSERA_REDIS_PASSWORD");
  td_cleanup(&d);
  tr_stop(&r);
  tr_cleanup(&r);
}

/* ---- Sentinel ------------------------------------------------------------------------------ */

/* Starts argv (redis-server ...) in the case's process group; returns its pid. */
static pid_t spawn(const char *const *argv) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  TT_ASSERT(pid >= 0);
  if (pid == 0) {
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  return pid;
}

/* redis-cli -p port words...: its stdout. */
static void cli_tcp(int port, char *out, size_t cap, const char *const *words) {
  char p[16];
  snprintf(p, sizeof(p), "%d", port);
  const char *argv[16] = {"redis-cli", "-h", "127.0.0.1", "-p", p};
  int n = 5;
  for (int i = 0; words[i] && n < 15; i++) argv[n++] = words[i];
  argv[n] = NULL;
  int fd[2];
  TT_ASSERT(pipe(fd) == 0);
  fflush(stdout);
  pid_t pid = fork();
  TT_ASSERT(pid >= 0);
  if (pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    int nul = open("/dev/null", O_WRONLY);
    if (nul >= 0) dup2(nul, 2);
    execvp("redis-cli", (char *const *)argv);
    _exit(127);
  }
  close(fd[1]);
  size_t got = 0;
  ssize_t k;
  while (got + 1 < cap && (k = read(fd[0], out + got, cap - 1 - got)) > 0) got += (size_t)k;
  out[got] = 0;
  close(fd[0]);
  waitpid(pid, NULL, 0);
}

/* Waits (bounded) until `redis-cli -p port words` prints something containing want. */
static void await_cli(int port, const char *const *words, const char *want, int timeout_ms) {
  char out[4096];
  long long end = tc_mono_ms() + timeout_ms;
  for (;;) {
    cli_tcp(port, out, sizeof(out), words);
    if (strstr(out, want)) return;
    TT_ASSERT_MSG(tc_mono_ms() < end, "port %d never answered %s to %s (last: %.200s)", port,
                  want, words[0], out);
    usleep(50000);
  }
}

/* 1 master, 1 replica, 3 sentinels on loopback; the master killed: the sentinels promote the
 * replica, and tesserad, which asks them where the master is after every lost connection
 * (and checks ROLE), serves writes from the new master. */
static void sentinel_failover_ends_with_writes_on_the_new_master(void) {
  char dir[64];
  snprintf(dir, sizeof(dir), "/tmp/tessera-redis.XXXXXX");
  TT_ASSERT(mkdtemp(dir) != NULL);
  int base = 20000 + (int)(getpid() % 2000) * 5;
  char port[5][8], sub[3][96], conf[3][128];
  for (int i = 0; i < 5; i++) snprintf(port[i], sizeof(port[i]), "%d", base + i);
  char mdir[96], rdir[96], master_at[16];
  snprintf(mdir, sizeof(mdir), "%s/m", dir);
  snprintf(rdir, sizeof(rdir), "%s/r", dir);
  mkdir(mdir, 0700), mkdir(rdir, 0700);
  snprintf(master_at, sizeof(master_at), "%d", base);
  pid_t master = spawn((const char *[]){"redis-server", "--port", port[0], "--bind", "127.0.0.1",
                                        "--dir", mdir, "--save", "", "--appendonly", "yes",
                                        "--logfile", "redis.log", NULL});
  pid_t replica = spawn((const char *[]){"redis-server", "--port", port[1], "--bind",
                                         "127.0.0.1", "--dir", rdir, "--save", "",
                                         "--appendonly", "yes", "--replicaof", "127.0.0.1",
                                         master_at, "--logfile", "redis.log", NULL});
  (void)replica;
  await_cli(base + 1, (const char *[]){"INFO", "replication", NULL}, "master_link_status:up",
            15000);
  for (int i = 0; i < 3; i++) {
    snprintf(sub[i], sizeof(sub[i]), "%.60s/s%d", dir, i);
    mkdir(sub[i], 0700);
    snprintf(conf[i], sizeof(conf[i]), "%.90s/sentinel.conf", sub[i]);
    FILE *f = fopen(conf[i], "w");
    TT_ASSERT(f != NULL);
    fprintf(f, "port %d\nbind 127.0.0.1\ndir %s\nlogfile sentinel.log\n"
               "sentinel monitor m 127.0.0.1 %d 2\n"
               "sentinel down-after-milliseconds m 1000\nsentinel failover-timeout m 5000\n"
               "sentinel parallel-syncs m 1\n",
            base + 2 + i, sub[i], base);
    fclose(f);
    spawn((const char *[]){"redis-server", conf[i], "--sentinel", NULL});
  }
  for (int i = 0; i < 3; i++)
    await_cli(base + 2 + i, (const char *[]){"SENTINEL", "replicas", "m", NULL}, "127.0.0.1",
              15000);
  char url[256];
  snprintf(url, sizeof(url), "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/m",
           base + 2, base + 3, base + 4);
  td_daemon d;
  const char *extra[] = {"--store", url, "--redis-timeout", "300", NULL};
  td_start(&d, extra);
  tessera_client *c = tc_client(&d);
  json_t *s = tc_create_sub(c, "ida");
  tc_expect_valid(c, tc_str(s, "sid"));
  kill(master, SIGKILL);
  waitpid(master, NULL, 0);
  /* Writes answer unavailable (never a false success) until the failover; then they work. */
  long long end = tc_mono_ms() + 40000;
  char sid[64];
  const char *code;
  while ((code = try_create(c, sid))[0]) {
    TT_ASSERT_MSG(strcmp(code, "unavailable") == 0, "a write answered %s", code);
    TT_ASSERT_MSG(tc_mono_ms() < end, "no writes within 40 s of the master's death");
    usleep(20000);
  }
  tc_expect_valid(c, sid);
  char out[256];
  cli_tcp(base + 1, out, sizeof(out), (const char *[]){"ROLE", NULL});
  TT_ASSERT_MSG(strncmp(out, "master", 6) == 0, "the replica is not the master: %s", out);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (!getenv("TT_KEEP") && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static const tt_case cases[] = {
    TT_CASE(redis_killed_under_load_loses_nothing_acknowledged),
    TT_CASE(sidecar_killed_under_load_loses_nothing_acknowledged),
    TT_CASE(redis_paused_answers_unavailable_within_the_deadline),
    TT_CASE(redis_absent_at_start_is_waited_for),
    TT_CASE(the_password_is_never_logged),
    TT_CASE(sentinel_failover_ends_with_writes_on_the_new_master),
};
TT_MAIN(cases)
