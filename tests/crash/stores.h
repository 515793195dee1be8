/* tests/crash/stores.h: what the crash harness does with a store besides calling the API
 * (stores.c): LMDB's file scanned with no daemon on it, its reader table, a process holding the
 * environment open. test_crash.c drives the cycles and the API checks. */
#ifndef CRASH_STORES_H
#define CRASH_STORES_H

#include "tt.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Before any failure: kills the daemon at once and says where its files are kept
 * (test_crash.c). Every assertion of the harness goes through it. */
void crash_abort(void);

#undef TT_ASSERT
#undef TT_ASSERT_MSG
#define TT_ASSERT_MSG(cond, ...)                                                          \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      crash_abort();                                                                      \
      tt_fail(__FILE__, __LINE__, __VA_ARGS__);                                           \
    }                                                                                     \
  } while (0)
#define TT_ASSERT(cond) TT_ASSERT_MSG(cond, "assertion failed: %s", #cond)

/* ---- LMDB ---- */

/* Reader slots of pid in `mdb_stat -r` output. */
int lmdb_readers_of(const char *out, pid_t pid);
/* The store in data with no daemon on it: readable in full (mdb_dump -a), every table
 * consistent with the others (mdb_stat -e -a). Returns the reader slots still held by dead_pid.
 * cycle: for the messages. */
int lmdb_scan_offline(const char *data, int cycle, pid_t dead_pid);
/* With the daemon running again: no reader slot of dead_pid is left. */
void lmdb_readers_cleared(const char *data, int cycle, pid_t dead_pid);

/* Another process with the store open: attached (no transaction) or holding a read
 * transaction (its slot goes stale when it is killed). Forked before any load thread runs. */
typedef struct holder {
  pid_t pid;
  int fd; /* closing it ends the holder */
} holder;
void holder_start(holder *h, const char *data, bool read_txn);
/* Ends the holder (if still running) and reaps it. */
void holder_stop(holder *h);

#endif
