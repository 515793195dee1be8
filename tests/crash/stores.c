/* tests/crash/stores.c: the crash harness's work on a store that does not go through the API
 * (stores.h). test_crash.c keeps the cycle (load, kill, restart, check through the API),
 * load.c the load threads and their records; this file keeps what depends on how a backend
 * keeps its data on disk.
 *
 * LMDB: after a kill, with no daemon running, `mdb_stat -e -a -r` must exit 0 and show every
 * table with entry counts that agree (sessions = handles = by_sub, families = fam_by_sub,
 * expiry = sessions + families + revoked + cutoffs + feed: no record half-written), and
 * `mdb_dump -a` must read every page; the reader table shows the slots a killed process left
 * (`holder` keeps the environment open across a restart so that LMDB does not reset them).
 * The Redis backend has no file of its own to scan: Redis's AOF is Redis's, reloaded by
 * redis-server itself at restart (tests/lib/redis.c), so nothing here is Redis's. */
#include "stores.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Entries of table name in `mdb_stat -a` output, or -1. */
static long long entries_of(const char *out, const char *name) {
  char head[64];
  snprintf(head, sizeof(head), "Status of %s\n", name);
  const char *p = strstr(out, head);
  if (!p) return -1;
  p = strstr(p, "Entries: ");
  long long n = -1;
  if (p) sscanf(p, "Entries: %lld", &n);
  return n;
}

/* Lines "<pid> <thread> <txnid>" after "Reader Table Status". */
int lmdb_readers_of(const char *out, pid_t pid) {
  int n = 0;
  const char *p = strstr(out, "Reader Table Status");
  for (p = p ? strchr(p, '\n') : NULL; p && *p; p = strchr(p + 1, '\n')) {
    int rpid;
    if (sscanf(p + 1, "%d", &rpid) == 1 && rpid == (int)pid) n++;
  }
  return n;
}

int lmdb_scan_offline(const char *data, int cycle, pid_t dead_pid) {
  static char out[65536];
  const char *stat_argv[] = {"mdb_stat", "-e", "-a", "-r", data, NULL};
  int rc = tt_run(stat_argv, NULL, out, sizeof(out), TT_RUN_ERR_TO_OUT);
  TT_ASSERT_MSG(rc == 0, "cycle %d: mdb_stat -e -a -r exited %d:\n%s", cycle, rc, out);
  long long sessions = entries_of(out, "sessions"), handles = entries_of(out, "handles"),
            by_sub = entries_of(out, "by_sub"), families = entries_of(out, "families"),
            fam_by_sub = entries_of(out, "fam_by_sub"), revoked = entries_of(out, "revoked"),
            cutoffs = entries_of(out, "cutoffs"), expiry = entries_of(out, "expiry"),
            feed = entries_of(out, "feed"), meta = entries_of(out, "meta");
  TT_ASSERT_MSG(sessions >= 0 && handles >= 0 && by_sub >= 0 && families >= 0 &&
                    fam_by_sub >= 0 && revoked >= 0 && cutoffs >= 0 && expiry >= 0 && feed >= 0 &&
                    meta >= 3 && meta <= 4, /* schema, store_id, file_id, feed_seq */
                "cycle %d: mdb_stat does not show every table:\n%s", cycle, out);
  TT_ASSERT_MSG(sessions == handles && sessions == by_sub,
                "cycle %d: half-written sessions: sessions %lld, handles %lld, by_sub %lld",
                cycle, sessions, handles, by_sub);
  TT_ASSERT_MSG(families == fam_by_sub, "cycle %d: half-written families: %lld, fam_by_sub %lld",
                cycle, families, fam_by_sub);
  /* Nothing expires during the test, so every record (a revocation feed entry too) has exactly
   * one expiry entry. */
  TT_ASSERT_MSG(expiry == sessions + families + revoked + cutoffs + feed,
                "cycle %d: expiry index %lld != sessions %lld + families %lld + revoked %lld + "
                "cutoffs %lld + feed %lld", cycle, expiry, sessions, families, revoked, cutoffs,
                feed);
  int stale = lmdb_readers_of(out, dead_pid);
  const char *dump_argv[] = {"mdb_dump", "-a", data, NULL};
  rc = tt_run(dump_argv, NULL, NULL, 0, TT_RUN_ERR_TO_OUT);
  TT_ASSERT_MSG(rc == 0, "cycle %d: mdb_dump -a (a full scan) exited %d", cycle, rc);
  return stale;
}

void lmdb_readers_cleared(const char *data, int cycle, pid_t dead_pid) {
  static char out[65536];
  const char *argv[] = {"mdb_stat", "-r", data, NULL};
  /* mdb_stat -r exits 1 after listing: its status is not checked */
  tt_run(argv, NULL, out, sizeof(out), TT_RUN_ERR_TO_OUT);
  TT_ASSERT_MSG(strstr(out, "Reader Table Status") != NULL, "mdb_stat -r: %s", out);
  int left = lmdb_readers_of(out, dead_pid);
  TT_ASSERT_MSG(left == 0, "cycle %d: %d reader slots of the killed daemon (pid %d) remain "
                "after the restart:\n%s", cycle, left, (int)dead_pid, out);
}

void holder_start(holder *h, const char *data, bool read_txn) {
  int ready[2], hold[2];
  TT_ASSERT(pipe2(ready, O_CLOEXEC) == 0 && pipe2(hold, O_CLOEXEC) == 0);
  fflush(stdout);
  fflush(stderr);
  h->pid = fork();
  TT_ASSERT(h->pid >= 0);
  if (h->pid == 0) {
    close(ready[0]);
    close(hold[1]);
    MDB_env *env;
    MDB_txn *txn;
    char ok = mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 16) == 0 &&
              mdb_env_set_maxreaders(env, 126) == 0 &&
              mdb_env_open(env, data, MDB_RDONLY, 0600) == 0 &&
              (!read_txn || mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
    if (write(ready[1], &ok, 1) != 1) _exit(1);
    char b;
    while (read(hold[0], &b, 1) < 0 && errno == EINTR) {}
    _exit(0); /* no mdb_env_close: as if it ended any other way */
  }
  close(ready[1]);
  close(hold[0]);
  char ok = 0;
  TT_ASSERT_MSG(read(ready[0], &ok, 1) == 1 && ok == 1, "a process cannot open the store");
  close(ready[0]);
  h->fd = hold[1];
}

void holder_stop(holder *h) {
  if (h->pid <= 0) return;
  close(h->fd);
  int st;
  while (waitpid(h->pid, &st, 0) < 0 && errno == EINTR) {}
  h->pid = 0;
}
