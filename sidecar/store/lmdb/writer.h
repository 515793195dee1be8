/* sidecar/store/lmdb/writer.h: the writer thread: every durable write goes through it (group commit).
 *
 * The loop thread submits ts_write operations; the writer takes every queued operation (up to a
 * batch limit), applies them in submission order inside one write transaction (each in its own
 * nested transaction, so one failing operation leaves the others alone), commits once, and hands
 * the batch back to the loop thread through uv_async_send. Each operation's done callback runs
 * on the loop thread only after the commit returned, with the operation's status: its apply
 * result, or TS_EUNAVAILABLE when the store was full or the commit failed (then nothing of the
 * batch was written).
 *
 * Ownership: a submitted ts_write belongs to the writer until its done callback runs; done
 * owns it again (and usually frees the struct that embeds it).
 *
 * The loop: while any operation's done callback is owed, the writer keeps the loop alive
 * (uv_run does not return), so done callbacks always run before main shuts the domain down. */
#ifndef TS_WRITER_H
#define TS_WRITER_H

#include "store.h"

#include <stdbool.h>
#include <uv.h>

typedef struct ts_write ts_write;
typedef struct ts_writer ts_writer;

struct ts_write {
  ts_write *next;
  /* Writer thread: does the operation in t. Returns 0, a domain result (e.g. TS_ENOTFOUND:
   * nothing to do) or TS_EMAPFULL / TS_EIO / TS_ENOMEM (the operation is rolled back). */
  int (*apply)(ts_txn *t, ts_write *w);
  /* Loop thread, after the commit: status as above (store failures as TS_EUNAVAILABLE). */
  void (*done)(ts_write *w, int status);
  int status;
};

typedef struct ts_writer_stats {
  uint64_t commits, writes, failed_commits;
} ts_writer_stats;

int ts_writer_start(ts_writer **out, uv_loop_t *loop, ts_store *store, bool relaxed);
/* Loop thread. */
void ts_writer_submit(ts_writer *w, ts_write *op);
/* Applies and completes everything queued, then joins the thread and frees the writer.
 * Called after uv_run returned (the writer is idle then); before the keys and the store close,
 * since done callbacks may sign tokens and read the store. */
void ts_writer_stop(ts_writer *w);
void ts_writer_stats_get(ts_writer *w, ts_writer_stats *out);

#endif
