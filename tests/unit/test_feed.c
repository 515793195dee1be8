/* tests/unit/test_feed.c: the revocation feed's store half and its cursors (sidecar/store/lmdb/feed.h),
 * on a real LMDB store in a temp dir, without the daemon: sequence numbers rise densely in
 * commit order and roll back with their operation; a reader positioned at a snapshot's latest
 * seq gets exactly what later commits add (the seam: nothing twice, nothing skipped); reads
 * are chunked; what is no longer in force is skipped but passed over; cursors parse only for
 * their own store; the sweeper removes entries once due; a copy of the data file gets a new
 * store id. */
#include "tt.h"

#include "error.h"
#include "feed.h"
#include "store.h"
#include "sweeper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static ts_store *open_store(void) {
  ts_store_options o = {dir, 64u << 20, true};
  ts_store *s = NULL;
  char why[256];
  TT_ASSERT_MSG(ts_store_open(&s, &o, why, sizeof(why)) == 0, "open: %s", why);
  return s;
}

static ts_store *fresh_store(void) {
  snprintf(dir, sizeof(dir), "/tmp/tt-feed-XXXXXX");
  TT_ASSERT(mkdtemp(dir) != NULL);
  return open_store();
}

/* Commits one write transaction appending n jti entries "<prefix><i>" until `until`; returns
 * the last seq. */
static uint64_t append(ts_store *s, const char *prefix, int n, int64_t until) {
  ts_txn *t;
  TT_EQ_INT(ts_store_write(s, &t), 0);
  uint64_t last = 0;
  for (int i = 0; i < n; i++) {
    char id[32];
    int len = snprintf(id, sizeof(id), "%s%d", prefix, i);
    TT_EQ_INT(ts_feed_append(t, &last, 'j', id, (size_t)len, until, 0), 0);
  }
  TT_EQ_INT(ts_store_commit(t), 0);
  return last;
}

static uint64_t latest(ts_store *s) {
  ts_txn *t;
  TT_EQ_INT(ts_store_read(s, &t), 0);
  uint64_t seq;
  TT_EQ_INT(ts_feed_latest(t, &seq), 0);
  ts_store_abort(t);
  return seq;
}

/* Reads everything after `after` in chunks of `chunk`; ids joined with ',' into out. */
static uint64_t read_all(ts_store *s, uint64_t after, int64_t now, size_t chunk, char *out,
                         size_t cap) {
  ts_feed_entry e[8];
  TT_ASSERT(chunk <= 8);
  out[0] = 0;
  bool more = true;
  while (more) {
    ts_txn *t;
    TT_EQ_INT(ts_store_read(s, &t), 0);
    size_t n;
    uint64_t last;
    TT_EQ_INT(ts_feed_read(t, after, now, e, chunk, &n, &last, &more), 0);
    ts_store_abort(t);
    for (size_t i = 0; i < n; i++) {
      TT_ASSERT(e[i].pos.major > after && e[i].pos.major <= last);
      strncat(out, e[i].id, cap - strlen(out) - 2);
      strcat(out, ",");
    }
    TT_ASSERT(last >= after);
    after = last;
  }
  return after;
}

static void cleanup(ts_store *s) {
  ts_store_close(s);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  TT_EQ_INT(system(cmd), 0);
}

static void sequence_is_dense_and_rolls_back(void) {
  ts_store *s = fresh_store();
  int64_t until = (int64_t)time(NULL) + 600;
  TT_EQ_INT(latest(s), 0);
  TT_EQ_INT(append(s, "a", 3, until), 3);
  /* A nested operation that fails gives its numbers back. */
  ts_txn *t, *child;
  TT_EQ_INT(ts_store_write(s, &t), 0);
  TT_EQ_INT(ts_store_nest(t, &child), 0);
  uint64_t last = 0;
  TT_EQ_INT(ts_feed_append(child, &last, 'f', "fam", 3, until, 0), 0);
  TT_EQ_INT(last, 4);
  ts_store_abort(child);
  TT_EQ_INT(ts_store_nest(t, &child), 0);
  last = 0;
  TT_EQ_INT(ts_feed_append(child, &last, 's', "sub", 3, until, 77), 0);
  TT_EQ_INT(last, 4); /* reused: the aborted one never happened */
  TT_EQ_INT(ts_store_commit(child), 0);
  TT_EQ_INT(ts_store_commit(t), 0);
  TT_EQ_INT(latest(s), 4);
  char ids[256];
  read_all(s, 0, until - 600, 8, ids, sizeof(ids));
  TT_EQ_STR(ids, "a0,a1,a2,sub,");
  cleanup(s);
}

/* The seam: a subscriber positioned at the latest seq of its snapshot gets exactly the
 * entries committed after it, however the reads are chunked, and nothing again after that. */
static void reader_at_snapshot_gets_exactly_what_follows(void) {
  ts_store *s = fresh_store();
  int64_t now = (int64_t)time(NULL), until = now + 600;
  append(s, "before", 5, until);
  uint64_t pos = latest(s); /* events.subscribe without since */
  append(s, "x", 3, until);
  append(s, "y", 4, until);
  char ids[512];
  for (size_t chunk = 1; chunk <= 8; chunk++) {
    uint64_t end = read_all(s, pos, now, chunk, ids, sizeof(ids));
    TT_EQ_STR(ids, "x0,x1,x2,y0,y1,y2,y3,");
    TT_EQ_INT(end, latest(s));
    read_all(s, end, now, chunk, ids, sizeof(ids)); /* caught up: nothing twice */
    TT_EQ_STR(ids, "");
  }
  append(s, "z", 1, until);
  read_all(s, pos + 7, now, 2, ids, sizeof(ids));
  TT_EQ_STR(ids, "z0,");
  cleanup(s);
}

/* Entries no longer in force are passed over (the position still moves past them). */
static void lapsed_entries_are_passed_over(void) {
  ts_store *s = fresh_store();
  int64_t now = (int64_t)time(NULL);
  append(s, "old", 3, now - 1);
  append(s, "live", 2, now);
  append(s, "old2", 2, now - 5);
  char ids[256];
  uint64_t end = read_all(s, 0, now, 2, ids, sizeof(ids));
  TT_EQ_STR(ids, "live0,live1,");
  TT_EQ_INT(end, 7);
  cleanup(s);
}

static void cursors_resume_only_their_own_store(void) {
  char cur[TS_CURSOR_CHARS + 1];
  uint64_t after;
  ts_cursor_format(cur, 0xfeedfacecafebeefull, 42);
  TT_EQ_STR(cur, "feedfacecafebeef000000000000002a");
  TT_ASSERT(ts_cursor_resume(cur, strlen(cur), 0xfeedfacecafebeefull, 42, &after));
  TT_EQ_INT(after, 42);
  TT_ASSERT(ts_cursor_resume(cur, strlen(cur), 0xfeedfacecafebeefull, 100, &after));
  TT_EQ_INT(after, 42);
  /* from the future (a restored backup that lost entries), another store, not a cursor */
  TT_ASSERT(!ts_cursor_resume(cur, strlen(cur), 0xfeedfacecafebeefull, 41, &after));
  TT_EQ_INT(after, 0);
  TT_ASSERT(!ts_cursor_resume(cur, strlen(cur), 0xfeedfacecafebeeeull, 42, &after));
  TT_ASSERT(!ts_cursor_resume(cur, strlen(cur) - 1, 0xfeedfacecafebeefull, 42, &after));
  TT_ASSERT(!ts_cursor_resume("FEEDFACECAFEBEEF000000000000002A", 32, 0xfeedfacecafebeefull,
                              42, &after));
  TT_ASSERT(!ts_cursor_resume("", 0, 1, 0, &after));
  TT_ASSERT(!ts_cursor_resume("00", 2, 1, 0, &after));
  TT_ASSERT(ts_cursor_resume("0", 1, 1, 500, &after)); /* "0": from the beginning */
  TT_EQ_INT(after, 0);
  /* As strings, cursors of one store sort in commit order. */
  char a[TS_CURSOR_CHARS + 1], b[TS_CURSOR_CHARS + 1];
  ts_cursor_format(a, 7, 9);
  ts_cursor_format(b, 7, 10);
  TT_ASSERT(strcmp(a, b) < 0);
}

static void sweeper_removes_entries_once_due(void) {
  ts_store *s = fresh_store();
  int64_t now = (int64_t)time(NULL);
  append(s, "due", 3, now - 2);
  append(s, "kept", 2, now + 600);
  uint64_t deleted = 0;
  TT_EQ_INT(ts_sweep_pass(s, now, &deleted), 0);
  TT_EQ_INT(deleted, 3);
  ts_store_info info;
  TT_EQ_INT(ts_store_info_get(s, &info), 0);
  TT_EQ_INT(info.entries[TS_T_FEED], 2);
  TT_EQ_INT(latest(s), 5); /* the counter never goes back */
  cleanup(s);
}

static void copied_data_file_gets_a_new_store_id(void) {
  ts_store *s = fresh_store();
  uint64_t id1, id2, id3;
  TT_EQ_INT(ts_feed_open(s, &id1), 0);
  TT_EQ_INT(ts_feed_open(s, &id2), 0);
  TT_EQ_INT(id1, id2); /* stable while the file is the same */
  ts_store_close(s);
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "cp %s/data.mdb %s/copy && mv %s/copy %s/data.mdb", dir, dir, dir,
           dir);
  TT_EQ_INT(system(cmd), 0);
  s = open_store();
  TT_EQ_INT(ts_feed_open(s, &id3), 0);
  TT_ASSERT(id3 != id1);
  cleanup(s);
}

static const tt_case cases[] = {
    TT_CASE(sequence_is_dense_and_rolls_back),
    TT_CASE(reader_at_snapshot_gets_exactly_what_follows),
    TT_CASE(lapsed_entries_are_passed_over),
    TT_CASE(cursors_resume_only_their_own_store),
    TT_CASE(sweeper_removes_entries_once_due),
    TT_CASE(copied_data_file_gets_a_new_store_id),
};
TT_MAIN(cases)
