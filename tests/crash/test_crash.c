/* tests/crash/test_crash.c: crash consistency (SECURITY.md "Storage and process"): kill -9 at
 * random moments under write load; every acknowledged write is present after the restart, no
 * write is half-applied, a full scan of the store succeeds, stale reader slots are cleared.
 *
 * One cycle:
 *   1. The daemon runs on the test's data directory. K client threads (one tessera_client
 *      each, CRASH_THREADS, default 4) pipeline durable writes, a window of them in flight per
 *      thread: session.create, session.revoke (by sid or handle) of a session the thread
 *      created, token.issue followed by token.revoke {token}, and token.pair followed by a
 *      chain of token.refresh. A thread records a write only after its reply arrived; the
 *      records live in this process, which is never killed (the load threads: load.c).
 *   2. After a random delay (0..300 ms, a seeded PRNG, the seed is printed) counted from the
 *      moment load is flowing (every thread connected and the first write acknowledged: on a
 *      sanitizer build the first commit alone can take most of 300 ms), SIGKILL. Each thread
 *      sees its connection end (its signal to stop), collects the replies that had already
 *      arrived, and marks whatever was still in flight "unacknowledged": it may or may not
 *      have happened.
 *   3. With the daemon dead: `mdb_stat -e -a -r` (exit 0; the reader table; the entry counts
 *      of the tables, which must agree: sessions = handles = by_sub, families = fam_by_sub,
 *      expiry = sessions + families + revoked + cutoffs + feed, so no record is half-written)
 *      and `mdb_dump -a` (exit 0: every page of every table readable); both in stores.c.
 *   4. Restart on the same directory, then check through the API: every acknowledged create
 *      validates and is listed; every acknowledged revoke is refused and not listed; a session
 *      whose revoke was in flight is either fully alive (validates AND listed) or fully gone;
 *      sessions listed but never acknowledged are at most the creates that were in flight;
 *      sys.stats `sessions` equals the number listed over every sub ever used; revoked tokens
 *      answer `revoked` on token.verify {check_revoked}, the others verify; the latest
 *      acknowledged refresh token of every family refreshes (--refresh-grace 600, so a
 *      rotation committed but not acknowledged still answers with its successor); where no
 *      refresh was in flight, the previous token answers with exactly the latest one (nothing
 *      rotated behind our back); `families` moved by the acknowledged pairs plus at most the
 *      unacknowledged ones, `revocations` by exactly the revokes found applied, and
 *      `expiry_index` = sessions + families + revocations; no reader slot of the dead daemon
 *      is left.
 * Even cycles keep another process attached to the store (no transaction) across the kill
 * and the restart. LMDB resets its lock file (reader table, write lock) when a process opens
 * an environment nobody else has open, so without it the restart starts from a clean lock
 * file; with it, the restarted daemon inherits the reader table and the write lock as the
 * killed one left them (under write load the writer nearly always holds the write lock when
 * killed), and LMDB's owner-died recovery and the daemon's reader check do the work.
 * After the last cycle everything recorded in every cycle is checked once more (a write
 * acknowledged in cycle 1 must survive all later crashes), then SIGTERM must exit 0 and the
 * store must scan clean once more.
 *
 * Redis (TT_STORE=redis, meson test test_crash_redis): td_launch gives the daemon its own
 * redis-server (tests/lib/redis.c: appendonly yes, appendfsync always, no RDB), which outlives
 * the daemon's restarts. Every API check of step 4 is kept, and sys.stats' `sessions`,
 * `families` and `revocations`, which the Redis backend maintains too (its t:{all}:* gauges,
 * recounted when it connects), are compared exactly as under LMDB; it also must say
 * `store_up` 1. What is LMDB's own is skipped: step 3 (Redis has no file for mdb_stat and
 * mdb_dump; its AOF is redis-server's to load), the attached process of even cycles and the
 * reader slots (LMDB's lock file), `expiry_index` and `feed_entries` (LMDB tables), and the
 * stale_reader_slot_cleared_at_start case. Instead:
 *   - every third cycle kills redis-server with SIGKILL too, right after the daemon and
 *     before anything is checked, and starts it again on the same directory: tr_restart
 *     returns once PING answers +PONG, not -LOADING, i.e. with the AOF loaded; then every
 *     acknowledged write must be back (appendfsync always: Redis answers only after its AOF
 *     write). An AOF that ends in a torn write is cut by redis-check-aof --fix first, as
 *     operators are told to (tests/lib/redis.h: Redis's own cut can half-apply a torn
 *     MULTI/EXEC block at the next crash; torn_transaction_is_not_half_applied shows it); the
 *     end of the run counts those cuts.
 *   - other cycles wait, before the restart, until Redis lists none of the killed daemon's
 *     connections: it has then read and applied everything they had sent, so no write of the
 *     dead daemon lands while the checks run (unacknowledged writes found applied are common
 *     here: Redis goes on executing what the daemon had sent before it died);
 *   - the restarted daemon must be connected to Redis (store_up 1, awaited with a deadline:
 *     the daemon waits up to 3 s for Redis at start and then says READY anyway);
 *   - before the final pass the daemon stops cleanly and redis-server is killed once more, so
 *     the writes of the cycles since its last kill come back from the AOF as well.
 * CRASH_DURABILITY=relaxed is refused there (durability is Redis's appendfsync).
 *
 * Environment: CRASH_CYCLES (default 20), CRASH_SEED (default: time and pid), CRASH_THREADS
 * (default 4), CRASH_DURABILITY (full, the default; or relaxed: an acknowledged write missing
 * after a crash is then reported, not failed, since relaxed durability gives that guarantee
 * up by design; atomicity and store integrity are still required). Without TT_TIMEOUT the time
 * limit grows with CRASH_CYCLES.
 *
 * What SIGKILL cannot show: the kernel keeps every page the daemon wrote, so a kill tests
 * atomicity and acknowledge-only-after-commit, not fsync (relaxed durability passes too, and
 * would lose acknowledged writes only in a power cut or kernel crash). Likewise for a kill of
 * redis-server: Redis write()s its AOF before it replies under `appendfsync no` too (only the
 * fsync is the kernel's), so `no` passes as well (`everysec` may put that write off behind a
 * slow background fsync and reply first); the kill shows that Redis answers only what its AOF
 * holds and loads back all of it, a torn tail included.
 *
 * Waiting: replies and connection ends are the signals; the one sleep is the random delay
 * before the kill, which is the thing under test. Under Redis two conditions are polled with
 * a deadline (Redis's client list, the daemon's store_up); tr_restart awaits PING likewise. */
#include "daemon.h"
#include "load.h"
#include "stores.h"
#include "tt.h"

#include <tessera/tessera.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 16
#define CHECK_WINDOW 64  /* requests in flight while checking */
#define KILL_MAX_MS 300
#define GRACE 600        /* --refresh-grace */

/* ---- failing: never leave the daemon behind ------------------------------------------- */

static pid_t daemon_pid(void);
static const char *daemon_dir(void);

/* Before any failure (every TT_ASSERT here, in load.c and in stores.c): the daemon is killed at once (the
 * runner also kills the case's process group once it ended) and the temporary directory is
 * kept for the post-mortem. */
void crash_abort(void) {
  pid_t pid = daemon_pid();
  if (pid > 0) kill(pid, SIGKILL);
  fprintf(stderr, "# tesserad's data, keys and log are kept in %s\n", daemon_dir());
}

/* ---- small helpers -------------------------------------------------------------------- */

static long long stat_of(const json_t *stats, const char *name) {
  json_t *v = json_object_get(stats, name);
  TT_ASSERT_MSG(json_is_integer(v), "sys.stats has no %s", name);
  return json_integer_value(v);
}

static tessera_client *client_of(const td_daemon *d) {
  tessera_client *c = NULL;
  int rc = tessera_connect(d->socket, &c);
  TT_ASSERT_MSG(rc == 0, "connect: %s", tessera_strerror(rc));
  return c;
}

static json_t *call_ok(tessera_client *c, const char *method, json_t *params) {
  json_t *result = NULL;
  tessera_error err = {{0}, {0}};
  int rc = tessera_call(c, method, params, CALL_MS, &result, &err);
  json_decref(params);
  TT_ASSERT_MSG(rc == 0, "%s: %s (%s: %s)", method, tessera_strerror(rc), err.code, err.message);
  return result;
}

/* ---- the test's state ---------------------------------------------------------------- */

static struct {
  td_daemon d;
  const char *extra[12];
  bool redis;               /* TT_STORE=redis: the Redis backend (the header says what differs) */
  bool relaxed;
  int threads, cycle;
  uint64_t seed;
  book all;
  struct sub {
    char name[32];
    int unacked_creates; /* creates in flight at the kill: may exist, unknown to us */
  } *subs;
  size_t nsubs, csubs;
  /* Exact after each check: sessions over every sub; families and revocations per sys.stats. */
  long long sessions, families, revocations;
  long long lost;           /* relaxed durability only: acknowledged writes found missing */
  long long stale_readers;  /* reader slots of a killed daemon seen before the restart */
  int redis_kills;          /* Redis: cycles that killed redis-server too */
  /* Unacknowledged writes found applied after the restart (reply lost, write durable). */
  long long applied_creates, applied_revokes, applied_token_revokes, applied_pairs;
  pid_t dead_pid;
} g;

static pid_t daemon_pid(void) { return g.d.pid; }
static const char *daemon_dir(void) { return g.d.dir; }

static int new_sub(int thread) {
  g.subs = grow(g.subs, &g.csubs, g.nsubs + 1, sizeof(*g.subs));
  memset(&g.subs[g.nsubs], 0, sizeof(g.subs[0]));
  snprintf(g.subs[g.nsubs].name, sizeof(g.subs[0].name), "crash-c%03d-t%d", g.cycle, thread);
  return (int)g.nsubs++;
}

/* An acknowledged write that is missing: a failure with full durability, a note with relaxed. */
#define EXPECT_DURABLE(cond, ...)                                                         \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      TT_ASSERT_MSG(g.relaxed, __VA_ARGS__);                                              \
      printf("# relaxed durability, an acknowledged write lost: ");                      \
      printf(__VA_ARGS__);                                                                \
      printf("\n");                                                                       \
      g.lost++;                                                                           \
    }                                                                                     \
  } while (0)

/* ---- checking through the API: pipelined jobs ----------------------------------------- */

typedef struct job job;
typedef void (*job_fn)(const job *j, int rc, json_t *res, const tessera_error *err);
struct job {
  const char *method;
  json_t *params; /* owned */
  job_fn fn;
  size_t i;       /* which record */
};

typedef struct jobs {
  job *v;
  size_t n, cap;
} jobs;

static void jobs_add(jobs *js, const char *method, json_t *params, job_fn fn, size_t i) {
  TT_ASSERT(params != NULL);
  js->v = grow(js->v, &js->cap, js->n + 1, sizeof(*js->v));
  js->v[js->n++] = (job){method, params, fn, i};
}

/* Runs every job on one connection, CHECK_WINDOW in flight, callbacks in job order. */
static void jobs_run(jobs *js) {
  tessera_client *c = client_of(&g.d);
  uint32_t ids[CHECK_WINDOW];
  size_t head = 0, sent = 0;
  while (head < js->n) {
    while (sent < js->n && sent - head < CHECK_WINDOW) {
      int rc = tessera_send(c, js->v[sent].method, js->v[sent].params, &ids[sent % CHECK_WINDOW]);
      TT_ASSERT_MSG(rc == 0, "cycle %d: sending %s: %s", g.cycle, js->v[sent].method,
                    tessera_strerror(rc));
      sent++;
    }
    json_t *res = NULL;
    tessera_error err = {{0}, {0}};
    int rc = tessera_wait(c, ids[head % CHECK_WINDOW], CALL_MS, &res, &err);
    TT_ASSERT_MSG(rc == 0 || rc == TESSERA_EREMOTE, "cycle %d: %s: %s", g.cycle,
                  js->v[head].method, tessera_strerror(rc));
    js->v[head].fn(&js->v[head], rc, res, &err);
    json_decref(res);
    head++;
  }
  for (size_t i = 0; i < js->n; i++) json_decref(js->v[i].params);
  js->n = 0;
  tessera_close(c);
}

/* What one check pass covers (records and subs from these indices on) and saw. */
static struct {
  size_t s0, t0, f0, sub0;
  bool final;
  bool *valid;                 /* per session: validate succeeded */
  struct listed {
    char (*h)[32];
    size_t n, cap;
  } *listed;                   /* per sub: handles session.list returned */
  int revokes_applied;         /* unacknowledged token revokes found applied */
} chk;

static void on_validate(const job *j, int rc, json_t *res, const tessera_error *err) {
  sess *s = &g.all.s[j->i];
  if (rc == 0) {
    TT_ASSERT_MSG(strcmp(str_of(res, "handle"), s->handle) == 0 &&
                      strcmp(str_of(res, "sub"), g.subs[s->sub].name) == 0,
                  "cycle %d: session.validate answered another session", g.cycle);
  } else {
    TT_ASSERT_MSG(strcmp(err->code, "unauthenticated") == 0,
                  "cycle %d: session.validate: %s: %s", g.cycle, err->code, err->message);
  }
  chk.valid[j->i - chk.s0] = rc == 0;
}

static void on_list(const job *j, int rc, json_t *res, const tessera_error *err) {
  TT_ASSERT_MSG(rc == 0, "cycle %d: session.list: %s", g.cycle, err->code);
  struct listed *l = &chk.listed[j->i - chk.sub0];
  json_t *arr = json_object_get(res, "sessions"), *it;
  size_t k;
  TT_ASSERT(json_is_array(arr));
  TT_ASSERT_MSG(!json_object_get(res, "next"), "cycle %d: over 1000 sessions of one sub: page "
                "through session.list here", g.cycle);
  json_array_foreach(arr, k, it) {
    l->h = grow(l->h, &l->cap, l->n + 1, sizeof(*l->h));
    snprintf(l->h[l->n++], sizeof(l->h[0]), "%s", str_of(it, "handle"));
  }
}

static int cmp_handle(const void *a, const void *b) { return strcmp(a, b); }

/* Each session is either fully there (validates and listed) or fully gone; acknowledged
 * creates and revokes hold; unknown listed sessions are at most the unacknowledged creates.
 * Returns the number of sessions listed over the subs checked. */
static long long check_sessions(void) {
  jobs js = {0};
  size_t ns = g.all.ns - chk.s0, nsubs = g.nsubs - chk.sub0;
  chk.valid = calloc(ns + 1, sizeof(bool));
  chk.listed = calloc(nsubs + 1, sizeof(*chk.listed));
  int *matched = calloc(nsubs + 1, sizeof(int));
  TT_ASSERT(chk.valid && chk.listed && matched);
  for (size_t i = chk.s0; i < g.all.ns; i++)
    jobs_add(&js, "session.validate", json_pack("{s:s}", "sid", g.all.s[i].sid), on_validate, i);
  for (size_t i = chk.sub0; i < g.nsubs; i++)
    jobs_add(&js, "session.list", json_pack("{s:s, s:i}", "sub", g.subs[i].name, "limit", 1000),
             on_list, i);
  jobs_run(&js);
  free(js.v);
  long long listed = 0;
  for (size_t i = 0; i < nsubs; i++) {
    if (chk.listed[i].n)
      qsort(chk.listed[i].h, chk.listed[i].n, sizeof(chk.listed[i].h[0]), cmp_handle);
    listed += (long long)chk.listed[i].n;
  }
  for (size_t i = chk.s0; i < g.all.ns; i++) {
    sess *s = &g.all.s[i];
    struct listed *l = &chk.listed[s->sub - (int)chk.sub0];
    bool in_list = l->n && bsearch(s->handle, l->h, l->n, sizeof(l->h[0]), cmp_handle) != NULL;
    bool valid = chk.valid[i - chk.s0];
    TT_ASSERT_MSG(in_list == valid, "cycle %d: half-applied session %s: validate %s, list %s",
                  g.cycle, s->handle, valid ? "ok" : "refused", in_list ? "has it" : "lacks it");
    if (in_list) matched[s->sub - (int)chk.sub0]++;
    g.applied_revokes += s->revoke_unacked && !valid;
    if (s->revoked)
      EXPECT_DURABLE(!valid, "cycle %d: the acknowledged revoke of session %s was lost", g.cycle,
                     s->handle);
    else if (!s->revoke_unacked)
      EXPECT_DURABLE(valid, "cycle %d: the acknowledged session %s was lost", g.cycle,
                     s->handle);
    s->revoked = !valid; /* from now on: what the store holds */
    s->revoke_unacked = false;
  }
  for (size_t i = 0; i < nsubs; i++) {
    long long unknown = (long long)chk.listed[i].n - matched[i];
    TT_ASSERT_MSG(unknown >= 0 && unknown <= g.subs[chk.sub0 + i].unacked_creates,
                  "cycle %d: sub %s lists %lld sessions nobody acknowledged, but only %d creates "
                  "were in flight", g.cycle, g.subs[chk.sub0 + i].name, unknown,
                  g.subs[chk.sub0 + i].unacked_creates);
    if (!chk.final) g.applied_creates += unknown;
    free(chk.listed[i].h);
  }
  free(matched);
  free(chk.listed);
  free(chk.valid);
  return listed;
}

static void on_verify(const job *j, int rc, json_t *res, const tessera_error *err) {
  (void)res;
  tok *t = &g.all.t[j->i];
  bool revoked = rc == TESSERA_EREMOTE && strcmp(err->code, "revoked") == 0;
  TT_ASSERT_MSG(rc == 0 || revoked, "cycle %d: token.verify {check_revoked}: %s: %s", g.cycle,
                err->code, err->message);
  if (t->revoked)
    EXPECT_DURABLE(revoked, "cycle %d: the acknowledged revoke of jti %s was lost", g.cycle,
                   t->jti);
  else if (t->revoke_unacked)
    chk.revokes_applied += revoked;
  else
    TT_ASSERT_MSG(!revoked, "cycle %d: jti %s is revoked, but no revoke of it was sent",
                  g.cycle, t->jti);
  t->revoked = revoked;
  t->revoke_unacked = false;
}

static void check_tokens(void) {
  jobs js = {0};
  for (size_t i = chk.t0; i < g.all.nt; i++)
    jobs_add(&js, "token.verify", json_pack("{s:s, s:b}", "token", g.all.t[i].token,
                                            "check_revoked", 1), on_verify, i);
  jobs_run(&js);
  free(js.v);
}

/* The previous token of a family nothing was in flight for: within the grace window it
 * answers with exactly the latest acknowledged pair (no rotation happened behind our back). */
static void on_prev(const job *j, int rc, json_t *res, const tessera_error *err) {
  fam *f = &g.all.f[j->i];
  EXPECT_DURABLE(rc == 0 && strcmp(str_of(res, "refresh_token"), f->latest) == 0,
                 "cycle %d: family %s: its previous refresh token answered %s, not the latest "
                 "acknowledged successor", g.cycle, f->id, rc ? err->code : "another token");
  if (rc || strcmp(str_of(res, "refresh_token"), f->latest) != 0) f->gone = true;
}

/* The latest acknowledged refresh token refreshes (a rotation committed but unacknowledged
 * answers with its successor, --refresh-grace 600). */
static void on_latest(const job *j, int rc, json_t *res, const tessera_error *err) {
  fam *f = &g.all.f[j->i];
  EXPECT_DURABLE(rc == 0, "cycle %d: family %s: the latest acknowledged refresh token answered "
                 "%s: %s", g.cycle, f->id, rc ? err->code : "", rc ? err->message : "");
  if (rc) {
    f->gone = true;
    return;
  }
  free(f->prev);
  f->prev = f->latest;
  f->latest = xstrdup(str_of(res, "refresh_token"));
  f->refresh_unacked = false;
  f->rotated_ms = mono_ms();
}

static void check_families(void) {
  jobs js = {0};
  int64_t now = mono_ms();
  for (size_t i = chk.f0; i < g.all.nf; i++) {
    fam *f = &g.all.f[i];
    if (f->prev && !f->refresh_unacked && !f->gone && now - f->rotated_ms < (GRACE - 120) * 1000)
      jobs_add(&js, "token.refresh", json_pack("{s:s}", "refresh_token", f->prev), on_prev, i);
  }
  jobs_run(&js);
  for (size_t i = chk.f0; i < g.all.nf; i++)
    if (!g.all.f[i].gone)
      jobs_add(&js, "token.refresh", json_pack("{s:s}", "refresh_token", g.all.f[i].latest),
               on_latest, i);
  jobs_run(&js);
  free(js.v);
}

/* Checks the records from the given indices on; c: what the cycle's load counted (NULL for the
 * final pass over everything). The counters must move by exactly what happened. */
static void check_pass(size_t s0, size_t t0, size_t f0, size_t sub0, const counts *c) {
  memset(&chk, 0, sizeof(chk));
  chk.s0 = s0, chk.t0 = t0, chk.f0 = f0, chk.sub0 = sub0;
  chk.final = c == NULL;
  long long listed = check_sessions();
  check_tokens();
  check_families();
  tessera_client *cl = client_of(&g.d);
  json_t *st = call_ok(cl, "sys.stats", NULL);
  tessera_close(cl);
  /* Redis keeps these three gauges too (exact after the daemon's own writes; recounted when it
   * connects); expiry_index and feed_entries are LMDB's tables, which Redis has not. */
  long long sessions = stat_of(st, "sessions"), families = stat_of(st, "families"),
            revocations = stat_of(st, "revocations");
  long long expiry = g.redis ? 0 : stat_of(st, "expiry_index"),
            feed = g.redis ? 0 : stat_of(st, "feed_entries");
  if (g.redis)
    TT_ASSERT_MSG(stat_of(st, "store_up") == 1, "cycle %d: store_up is not 1", g.cycle);
  json_decref(st);
  long long want_sessions = (sub0 ? g.sessions : 0) + listed;
  TT_ASSERT_MSG(sessions == want_sessions, "cycle %d: sys.stats sessions %lld, but the subs "
                "list %lld", g.cycle, sessions, want_sessions);
  long long pairs = c ? c->pairs : 0, unacked_pairs = c ? c->unacked_pairs : 0;
  long long revs = c ? c->token_revokes + chk.revokes_applied : 0;
  EXPECT_DURABLE(families >= g.families + pairs, "cycle %d: families %lld < %lld before + %lld "
                 "acknowledged pairs", g.cycle, families, g.families, pairs);
  TT_ASSERT_MSG(families <= g.families + pairs + unacked_pairs, "cycle %d: families %lld > %lld "
                "+ %lld acknowledged + %lld in flight", g.cycle, families, g.families, pairs,
                unacked_pairs);
  EXPECT_DURABLE(revocations == g.revocations + revs, "cycle %d: revocations %lld, expected "
                 "%lld + %lld", g.cycle, revocations, g.revocations, revs);
  TT_ASSERT_MSG(g.redis || expiry == sessions + families + revocations + feed, "cycle %d: "
                "expiry index %lld != %lld + %lld + %lld + feed %lld", g.cycle, expiry, sessions,
                families, revocations, feed);
  g.applied_token_revokes += chk.revokes_applied;
  g.applied_pairs += c ? families - g.families - pairs : 0;
  g.sessions = sessions, g.families = families, g.revocations = revocations;
}

/* ---- the cycles ------------------------------------------------------------------------ */

static void add(counts *to, const counts *c) {
  int *a = (int *)to;
  const int *b = (const int *)c;
  for (size_t i = 0; i < sizeof(*c) / sizeof(int); i++) a[i] += b[i];
}

/* Waits for the first acknowledged write (or for every thread to have stopped). */
static void wait_started(struct started *st) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += CALL_MS / 1000;
  pthread_mutex_lock(&st->lock);
  int rc = 0;
  while (!st->acked && st->running > 0 && rc == 0)
    rc = pthread_cond_timedwait(&st->cond, &st->lock, &until);
  pthread_mutex_unlock(&st->lock);
  TT_ASSERT_MSG(rc == 0, "cycle %d: no write acknowledged within %d s", g.cycle, CALL_MS / 1000);
}

/* Load, kill at a random moment (the daemon, then Redis too when kill_redis), let the threads
 * notice; returns the delay used. */
static unsigned load_and_kill(uint64_t *rng, worker *ws, bool kill_redis) {
  pthread_barrier_t start;
  pthread_t th[MAX_THREADS];
  struct started st = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, g.threads};
  pthread_barrier_init(&start, NULL, (unsigned)g.threads + 1);
  for (int k = 0; k < g.threads; k++) {
    worker *w = &ws[k];
    memset(w, 0, sizeof(*w));
    w->id = k;
    w->sub = new_sub(k);
    snprintf(w->subname, sizeof(w->subname), "%s", g.subs[w->sub].name);
    w->rng = splitmix(rng);
    w->c = client_of(&g.d);
    w->start = &start;
    w->started = &st;
    for (int i = 0; i < SLOTS; i++) w->slot[i] = -1;
    TT_ASSERT(pthread_create(&th[k], NULL, worker_main, w) == 0);
  }
  unsigned delay = rnd(rng, KILL_MAX_MS + 1);
  pthread_barrier_wait(&start);
  wait_started(&st);
  struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  g.dead_pid = g.d.pid;
  td_kill9(&g.d);
  if (kill_redis) tr_kill9(&g.d.redis);
  for (int k = 0; k < g.threads; k++) {
    pthread_join(th[k], NULL);
    tessera_close(ws[k].c);
  }
  pthread_barrier_destroy(&start);
  pthread_cond_destroy(&st.cond);
  pthread_mutex_destroy(&st.lock);
  return delay;
}

/* Occurrences of what in the file at path (0 if it does not exist). */
static int file_count(const char *path, const char *what) {
  if (access(path, R_OK) != 0) return 0;
  char *text = td_read_file(path, NULL);
  int n = 0;
  for (const char *p = text; (p = strstr(p, what)) != NULL; p++) n++;
  free(text);
  return n;
}

/* LMDB: the store is scanned with no daemon on it, then the restarted daemon must have cleared
 * (and logged) the reader slots the killed one left. */
static void restart_on_lmdb(void) {
  int stale = lmdb_scan_offline(g.d.data, g.cycle, g.dead_pid);
  int logged = file_count(g.d.log, "stale store readers cleared");
  td_launch(&g.d, g.extra);
  lmdb_readers_cleared(g.d.data, g.cycle, g.dead_pid);
  TT_ASSERT_MSG(!stale || file_count(g.d.log, "stale store readers cleared") > logged,
                "cycle %d: %d stale reader slots, but the daemon reported none", g.cycle, stale);
  g.stale_readers += stale;
  if (stale)
    printf("# cycle %d: the killed daemon left %d reader slots; the restarted daemon cleared "
           "them\n", g.cycle, stale);
}

/* Redis: the restarted daemon is connected to Redis before anything is checked (its start
 * waits up to 3 s for that, and says READY anyway: awaited here, bounded). */
static void await_store_up(void) {
  int64_t deadline = mono_ms() + 10000;
  tessera_client *c = client_of(&g.d);
  for (;;) {
    json_t *st = call_ok(c, "sys.stats", NULL);
    long long up = stat_of(st, "store_up");
    json_decref(st);
    if (up == 1) break;
    TT_ASSERT_MSG(mono_ms() < deadline, "cycle %d: the restarted daemon is not connected to "
                  "Redis within 10 s", g.cycle);
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL); /* polling a condition, bounded by the deadline */
  }
  tessera_close(c);
}

/* Redis: killed too, redis-server starts again on its AOF (tr_restart returns once PING answers
 * +PONG, not -LOADING: the AOF is loaded). Not killed, it has read and applied everything the
 * killed daemon's connections had sent once they are gone from its client list: no write of
 * the dead daemon can land during the checks. */
static void restart_on_redis(bool redis_killed) {
  if (redis_killed) {
    tr_restart(&g.d.redis);
    g.redis_kills++;
  } else {
    tr_await_clients(&g.d.redis, 0, 10000);
  }
  td_launch(&g.d, g.extra);
  await_store_up();
}

/* LMDB: even cycles keep another process attached to the store across the kill and the
 * restart: then LMDB keeps the reader table (and its write lock, possibly owned by the killed
 * daemon) instead of resetting them at the next open, and the daemon's own recovery does the
 * work. Redis: every third cycle kills redis-server too, right after the daemon. */
static void run_cycle(uint64_t *rng, counts *total) {
  worker ws[MAX_THREADS];
  size_t s0 = g.all.ns, t0 = g.all.nt, f0 = g.all.nf, sub0 = g.nsubs;
  holder attached = {0};
  bool attach = !g.redis && g.cycle % 2 == 0, kill_redis = g.redis && g.cycle % 3 == 0;
  if (attach) holder_start(&attached, g.d.data, false);
  unsigned delay = load_and_kill(rng, ws, kill_redis);
  counts c = {0};
  for (int k = 0; k < g.threads; k++) {
    TT_ASSERT_MSG(!ws[k].failure[0], "cycle %d: %s", g.cycle, ws[k].failure);
    add(&c, &ws[k].n);
    g.subs[ws[k].sub].unacked_creates = ws[k].n.unacked_creates;
    book_move(&g.all, &ws[k].b);
  }
  if (g.redis) restart_on_redis(kill_redis);
  else restart_on_lmdb();
  check_pass(s0, t0, f0, sub0, &c);
  holder_stop(&attached);
  add(total, &c);
  printf("ok - cycle %d (kill %u ms after the first ack%s; acked: creates %d, revokes %d, token "
         "revokes %d, pairs %d, refreshes %d; unacknowledged at the kill: %d)\n", g.cycle, delay,
         attach ? ", store held open by another process"
                : kill_redis ? ", redis-server killed too and restarted on its AOF" : "",
         c.creates, c.revokes, c.token_revokes, c.pairs, c.refreshes,
         c.unacked_creates + c.unacked_revokes + c.unacked_token_revokes + c.unacked_pairs +
             c.unacked_refreshes);
}

static int env_int(const char *name, int def, int lo, int hi) {
  const char *v = getenv(name);
  int n = v && *v ? atoi(v) : def;
  TT_ASSERT_MSG(n >= lo && n <= hi, "%s must be %d..%d", name, lo, hi);
  return n;
}

static void kill9_under_write_load(void) {
  int cycles = env_int("CRASH_CYCLES", 20, 1, 100000);
  g.threads = env_int("CRASH_THREADS", 4, 1, MAX_THREADS);
  if (!getenv("TT_TIMEOUT")) alarm(120 + (unsigned)cycles * 5);
  const char *dur = getenv("CRASH_DURABILITY") ? getenv("CRASH_DURABILITY") : "full";
  TT_ASSERT_MSG(!strcmp(dur, "full") || !strcmp(dur, "relaxed"), "CRASH_DURABILITY: full|relaxed");
  g.relaxed = strcmp(dur, "relaxed") == 0;
  g.redis = tr_env_redis();
  TT_ASSERT_MSG(!g.redis || !g.relaxed, "CRASH_DURABILITY=relaxed is LMDB's --durability; under "
                "Redis durability is Redis's appendfsync (always, tests/lib/redis.c)");
  const char *seed_s = getenv("CRASH_SEED");
  g.seed = seed_s && *seed_s ? strtoull(seed_s, NULL, 10)
                             : (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
  printf("# seed %llu (CRASH_SEED=%llu replays the kill delays and operation mix), %d cycles, "
         "%d threads, %s\n", (unsigned long long)g.seed, (unsigned long long)g.seed,
         cycles, g.threads, g.redis ? "store redis (appendfsync always)" : g.relaxed ?
         "store lmdb, durability relaxed" : "store lmdb, durability full");
  uint64_t rng = g.seed;
  const char *extra[] = {"--refresh-grace", "600", "--durability", dur, "--log-level", "info",
                         "--max-session-ttl", "30d", NULL};
  memcpy(g.extra, extra, sizeof(extra));
  td_init(&g.d);
  td_launch(&g.d, g.extra);
  counts total = {0};
  for (g.cycle = 1; g.cycle <= cycles; g.cycle++) run_cycle(&rng, &total);
  /* Everything acknowledged in any cycle survived every later crash; under Redis, after one
   * more kill -9 of redis-server (a clean daemon stop first), so the writes of the cycles since
   * its last kill come back from the AOF too. */
  g.cycle = 0;
  int st;
  if (g.redis) {
    st = td_stop(&g.d);
    TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: status %d", st);
    tr_kill9(&g.d.redis);
    restart_on_redis(true);
  }
  check_pass(0, 0, 0, 0, NULL);
  st = td_stop(&g.d);
  TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM: status %d", st);
  if (!g.redis) lmdb_scan_offline(g.d.data, g.cycle, 0);
  printf("# %d kill -9 cycles: acked creates %d, session revokes %d, token revokes %d, pairs %d, "
         "refreshes %d; unacknowledged at the kills: creates %d, revokes %d, token revokes %d, "
         "pairs %d, refreshes %d; acknowledged writes lost: %lld\n", cycles, total.creates,
         total.revokes, total.token_revokes, total.pairs, total.refreshes, total.unacked_creates,
         total.unacked_revokes, total.unacked_token_revokes, total.unacked_pairs,
         total.unacked_refreshes, g.lost);
  if (g.redis) {
    printf("# redis-server killed too: %d times, each restarted on its AOF; AOFs ending in a "
           "torn write (cut by redis-check-aof --fix before the restart): %d\n", g.redis_kills,
           g.d.redis.aof_fixed);
  } else {
    printf("# corrupt stores: 0; reader slots of killed daemons seen: %lld (all cleared at "
           "restart)\n", g.stale_readers);
  }
  printf("# unacknowledged writes found applied (reply lost, write durable): creates %lld, "
         "revokes %lld, token revokes %lld, pairs %lld\n", g.applied_creates, g.applied_revokes,
         g.applied_token_revokes, g.applied_pairs);
  printf("# final store: %lld sessions, %lld families, %lld revocations\n", g.sessions,
         g.families, g.revocations);
  book_free(&g.all);
  free(g.subs);
  td_cleanup(&g.d);
}

/* A slot left by a killed reader is cleared by the daemon's own check at start (and logged).
 * LMDB resets the whole reader table when a process opens an environment nobody else has
 * open, so the check only has work when another process stays attached across the restart
 * (a backup, mdb_stat, a second tool): the `attached` holder does that here. */
static void stale_reader_slot_cleared_at_start(void) {
  if (tr_env_redis()) tt_skip("LMDB's reader table (no Redis counterpart)");
  memset(&g, 0, sizeof(g));
  const char *extra[] = {"--log-level", "info", NULL};
  td_start(&g.d, extra);
  tessera_client *c = client_of(&g.d);
  json_decref(call_ok(c, "session.create", json_pack("{s:s}", "sub", "reader")));
  tessera_close(c);
  holder attached, reader;
  holder_start(&attached, g.d.data, false);
  holder_start(&reader, g.d.data, true);
  pid_t dead = reader.pid;
  kill(dead, SIGKILL);
  holder_stop(&reader);
  static char out[65536];
  const char *argv[] = {"mdb_stat", "-r", g.d.data, NULL};
  tt_run(argv, NULL, out, sizeof(out), TT_RUN_ERR_TO_OUT);
  TT_ASSERT_MSG(lmdb_readers_of(out, dead) == 1, "the killed reader's slot is not listed:\n%s",
                out);
  TT_ASSERT_MSG(WIFEXITED(td_stop(&g.d)), "SIGTERM");
  td_launch(&g.d, extra);
  lmdb_readers_cleared(g.d.data, g.cycle, dead);
  char *log = td_read_log(&g.d);
  TT_ASSERT_MSG(log && strstr(log, "\"stale store readers cleared\",\"readers\":1"),
                "the daemon did not report the cleared slot:\n%s", log ? log : "");
  free(log);
  c = client_of(&g.d);
  json_decref(call_ok(c, "session.create", json_pack("{s:s}", "sub", "reader")));
  json_t *l = call_ok(c, "session.list", json_pack("{s:s}", "sub", "reader"));
  TT_ASSERT(json_array_size(json_object_get(l, "sessions")) == 2);
  json_decref(l);
  tessera_close(c);
  TT_ASSERT(WIFEXITED(td_stop(&g.d)));
  holder_stop(&attached);
  td_cleanup(&g.d);
}

/* The AOF hazard tests/lib/redis.h describes: Redis killed inside the write of a
 * session.create's MULTI/EXEC block. Here the block is torn by hand (the AOF cut just before
 * its last command's end: the block's whole commands stay, EXEC does not) after a kill -9, and
 * Redis is restarted as operators are told to (tr_restart: redis-check-aof --fix, then
 * aof-load-truncated no), killed again after one more write and restarted: the torn create must
 * be wholly absent. With Redis's own truncation instead, the torn session validates after the
 * second restart (the block's first commands ran inside the next one's EXEC). */
static void tear_last_transaction(const char *redis_dir, const char *must_hold) {
  char path[400];
  snprintf(path, sizeof(path), "%s/appendonlydir/appendonly.aof.manifest", redis_dir);
  char *manifest = td_read_file(path, NULL), *incr = NULL;
  TT_ASSERT(manifest);
  for (char *line = strtok(manifest, "\n"); line; line = strtok(NULL, "\n"))
    if (strstr(line, " type i")) incr = line; /* the last incremental file is the one written */
  char name[200];
  TT_ASSERT_MSG(incr && sscanf(incr, "file %199s", name) == 1, "no incremental AOF listed");
  snprintf(path, sizeof(path), "%s/appendonlydir/%s", redis_dir, name);
  free(manifest);
  size_t len;
  char *aof = td_read_file(path, &len);
  TT_ASSERT(aof);
  static const char multi[] = "*1\r\n$5\r\nMULTI\r\n", exec[] = "*1\r\n$4\r\nEXEC\r\n";
  size_t m = 0, e = 0;
  for (size_t i = 0; i + sizeof(multi) - 1 <= len; i++)
    if (memcmp(aof + i, multi, sizeof(multi) - 1) == 0) m = i + 1;
  TT_ASSERT_MSG(m > 0, "%s holds no MULTI", path);
  for (size_t i = m; i + sizeof(exec) - 1 <= len && !e; i++)
    if (memcmp(aof + i, exec, sizeof(exec) - 1) == 0) e = i;
  TT_ASSERT_MSG(e > 0 && e + sizeof(exec) - 1 == len, "%s does not end with a whole MULTI/EXEC "
                "block", path);
  bool held = false;
  for (size_t i = m; i + strlen(must_hold) <= e && !held; i++)
    held = memcmp(aof + i, must_hold, strlen(must_hold)) == 0;
  TT_ASSERT_MSG(held, "the last block of %s is not the create of %s", path, must_hold);
  free(aof);
  TT_ASSERT(truncate(path, (off_t)e - 1) == 0); /* the last command loses its final \n */
}

static void torn_transaction_is_not_half_applied(void) {
  if (!tr_env_redis()) tt_skip("Redis's AOF (LMDB's atomicity: kill9_under_write_load)");
  memset(&g, 0, sizeof(g));
  g.redis = true;
  g.extra[0] = "--redis-timeout", g.extra[1] = "2000"; /* the deadline is not under test */
  td_start(&g.d, g.extra);
  tessera_client *c = client_of(&g.d);
  json_t *kept = call_ok(c, "session.create", json_pack("{s:s}", "sub", "kept"));
  json_t *torn = call_ok(c, "session.create", json_pack("{s:s}", "sub", "torn"));
  tessera_close(c);
  td_kill9(&g.d);
  tr_kill9(&g.d.redis);
  tear_last_transaction(g.d.redis.dir, "746f726e"); /* "torn" in hex: its t:{u:<hex>} keys */
  restart_on_redis(true);
  TT_ASSERT_MSG(g.d.redis.aof_fixed == 1, "redis-check-aof found no torn write to cut");
  c = client_of(&g.d);
  json_t *next = call_ok(c, "session.create", json_pack("{s:s}", "sub", "next"));
  tessera_close(c);
  td_kill9(&g.d);
  tr_kill9(&g.d.redis);
  restart_on_redis(true);
  c = client_of(&g.d);
  json_t *params = json_pack("{s:s}", "sid", str_of(torn, "sid"));
  tessera_error err = {{0}, {0}};
  int rc = tessera_call(c, "session.validate", params, CALL_MS, NULL, &err);
  json_decref(params);
  TT_ASSERT_MSG(rc == TESSERA_EREMOTE && strcmp(err.code, "unauthenticated") == 0,
                "the torn create came back half-applied: its session validates");
  json_t *l = call_ok(c, "session.list", json_pack("{s:s}", "sub", "torn"));
  TT_ASSERT_MSG(json_array_size(json_object_get(l, "sessions")) == 0, "the torn session is "
                "listed");
  json_decref(l);
  json_decref(call_ok(c, "session.validate", json_pack("{s:s}", "sid", str_of(kept, "sid"))));
  json_decref(call_ok(c, "session.validate", json_pack("{s:s}", "sid", str_of(next, "sid"))));
  json_t *st = call_ok(c, "sys.stats", NULL);
  TT_ASSERT_MSG(stat_of(st, "sessions") == 2, "sys.stats counts %lld sessions, not 2",
                stat_of(st, "sessions"));
  json_decref(st);
  tessera_close(c);
  json_decref(kept);
  json_decref(torn);
  json_decref(next);
  TT_ASSERT(WIFEXITED(td_stop(&g.d)));
  td_cleanup(&g.d);
}

static const tt_case cases[] = {
    TT_CASE(stale_reader_slot_cleared_at_start),
    TT_CASE(kill9_under_write_load),
    TT_CASE(torn_transaction_is_not_half_applied),
};
TT_MAIN(cases)
