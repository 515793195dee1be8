/* sidecar/store/lmdb/writer.c: see writer.h. Two lists cross threads, each under its own mutex:
 * `queue` (loop -> writer) and `done` (writer -> loop). Nothing else is shared; operations
 * are touched by one thread at a time, handed over with the lists.
 *
 * Lifetime: the async handle is referenced exactly while operations are outstanding
 * (`outstanding`, loop thread only: submitted, done not yet called). So uv_run does not return
 * while a completion is owed: every done callback runs on the loop, with the server and the
 * keys still there, even when the connections that asked were closed at the shutdown timeout. */
#include "writer.h"

#include "error.h"
#include "log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define MAX_BATCH 4096
#define RELAXED_SYNC_MS 1000

struct ts_writer {
  ts_store *store;
  bool relaxed;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  ts_write *queue_head, *queue_tail;
  bool stopping;
  pthread_mutex_t done_lock;
  ts_write *done_head, *done_tail;
  uv_async_t async;
  uint64_t outstanding; /* loop thread: submitted, done not yet called */
  _Atomic uint64_t commits, writes, failed_commits;
};

static void list_append(ts_write **head, ts_write **tail, ts_write *first, ts_write *last) {
  if (*tail) (*tail)->next = first;
  else *head = first;
  *tail = last;
}

static int status_of(int rc) {
  return rc == TS_EMAPFULL || rc == TS_EIO || rc == TS_ENOMEM ? TS_EUNAVAILABLE : rc;
}

/* Applies one batch in one transaction. */
static void apply_batch(ts_writer *w, ts_write *batch) {
  ts_txn *txn;
  int rc = ts_store_write(w->store, &txn);
  unsigned n = 0;
  for (ts_write *op = batch; op; op = op->next) {
    n++;
    if (rc) {
      op->status = TS_EUNAVAILABLE;
      continue;
    }
    ts_txn *child;
    int crc = ts_store_nest(txn, &child);
    if (crc) {
      op->status = status_of(crc);
      continue;
    }
    int arc = op->apply(child, op);
    if (status_of(arc) == TS_EUNAVAILABLE) {
      ts_store_abort(child);
      op->status = TS_EUNAVAILABLE;
    } else {
      crc = ts_store_commit(child);
      op->status = crc ? status_of(crc) : arc;
    }
  }
  if (rc == 0) rc = ts_store_commit(txn);
  if (rc) {
    atomic_fetch_add(&w->failed_commits, 1);
    ts_log(TS_LOG_ERROR, "store commit failed; the batch was not written", "{s:s, s:i}", "error",
           ts_strerror(rc), "writes", (int)n);
    for (ts_write *op = batch; op; op = op->next) op->status = TS_EUNAVAILABLE;
  }
  atomic_fetch_add(&w->commits, 1);
  atomic_fetch_add(&w->writes, n);
}

static void *writer_main(void *arg) {
  ts_writer *w = arg;
  bool dirty = false;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    while (!w->queue_head && !w->stopping) {
      if (w->relaxed && dirty) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += RELAXED_SYNC_MS / 1000;
        if (pthread_cond_timedwait(&w->wake, &w->lock, &until) != 0 && !w->queue_head) {
          pthread_mutex_unlock(&w->lock);
          ts_store_sync(w->store);
          dirty = false;
          pthread_mutex_lock(&w->lock);
        }
      } else {
        pthread_cond_wait(&w->wake, &w->lock);
      }
    }
    if (!w->queue_head && w->stopping) break;
    /* Take up to MAX_BATCH operations. */
    ts_write *batch = w->queue_head, *last = batch;
    unsigned n = 1;
    while (last->next && n < MAX_BATCH) last = last->next, n++;
    w->queue_head = last->next;
    if (!w->queue_head) w->queue_tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(&w->lock);

    apply_batch(w, batch);
    dirty = true;
    pthread_mutex_lock(&w->done_lock);
    list_append(&w->done_head, &w->done_tail, batch, last);
    pthread_mutex_unlock(&w->done_lock);
    uv_async_send(&w->async);

    pthread_mutex_lock(&w->lock);
  }
  pthread_mutex_unlock(&w->lock);
  if (w->relaxed) ts_store_sync(w->store);
  return NULL;
}

static void deliver_done(ts_writer *w) {
  ts_store_snapshot_end(w->store); /* reads from here on see what these commits wrote */
  pthread_mutex_lock(&w->done_lock);
  ts_write *op = w->done_head;
  w->done_head = w->done_tail = NULL;
  pthread_mutex_unlock(&w->done_lock);
  while (op) {
    ts_write *next = op->next;
    /* Before done: a done that submits again takes the reference back itself. */
    if (--w->outstanding == 0) uv_unref((uv_handle_t *)&w->async);
    op->done(op, op->status);
    op = next;
  }
}

static void on_async(uv_async_t *a) { deliver_done(a->data); }

int ts_writer_start(ts_writer **out, uv_loop_t *loop, ts_store *store, bool relaxed) {
  ts_writer *w = calloc(1, sizeof(*w));
  if (!w) return TS_ENOMEM;
  w->store = store;
  w->relaxed = relaxed;
  pthread_mutex_init(&w->lock, NULL);
  pthread_mutex_init(&w->done_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->wake, &ca);
  pthread_condattr_destroy(&ca);
  uv_async_init(loop, &w->async, on_async);
  w->async.data = w;
  uv_unref((uv_handle_t *)&w->async); /* idle, the writer does not keep the loop alive */
  if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
    uv_close((uv_handle_t *)&w->async, NULL);
    free(w); /* the async handle is closed before the loop runs again: main exits */
    return TS_EINTERNAL;
  }
  *out = w;
  return 0;
}

void ts_writer_submit(ts_writer *w, ts_write *op) {
  op->next = NULL;
  if (w->outstanding++ == 0) uv_ref((uv_handle_t *)&w->async); /* the loop waits for done */
  pthread_mutex_lock(&w->lock);
  list_append(&w->queue_head, &w->queue_tail, op, op);
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
}

static void on_async_closed(uv_handle_t *h) { free(h->data); }

void ts_writer_stop(ts_writer *w) {
  pthread_mutex_lock(&w->lock);
  w->stopping = true;
  pthread_cond_signal(&w->wake);
  pthread_mutex_unlock(&w->lock);
  pthread_join(w->thread, NULL);
  deliver_done(w);
  pthread_mutex_destroy(&w->lock);
  pthread_mutex_destroy(&w->done_lock);
  pthread_cond_destroy(&w->wake);
  uv_close((uv_handle_t *)&w->async, on_async_closed);
}

void ts_writer_stats_get(ts_writer *w, ts_writer_stats *out) {
  out->commits = atomic_load(&w->commits);
  out->writes = atomic_load(&w->writes);
  out->failed_commits = atomic_load(&w->failed_commits);
}
