/* sidecar/store/lmdb/feed.h: the revocation feed as the store holds it, with cursors (PROTOCOL.md
 * "events").
 *
 * Every revocation a write operation records is also appended to the feed table under a
 * sequence number taken from a counter in the meta table, inside the operation's own (nested)
 * transaction: an operation that rolls back gives its numbers back, so committed entries are
 * numbered densely and strictly increasing in commit order.
 *   feed[be64 seq] = kind[1] | be64 until | be64 before | id      kind: j f s (see below)
 *   expiry[be64 until+1 | 'q' | be64 seq]: the sweeper's entry
 *   meta["feed_seq"] = u64 latest seq; meta["store_id"] = 8 random bytes;
 *   meta["file_id"] = u64 the data file's inode when store_id was made
 * An entry lives as long as the revocation it announces is in force, so "everything after a
 * cursor that is still in force" is a range read of this table.
 *
 * A cursor names (store_id, seq) as 32 lowercase hex characters; as strings, cursors of one
 * store sort in commit order. "0" is the cursor before every entry of any store. store_id is
 * made anew when the data file is not the one it was made for (a restored backup, a copy):
 * cursors of the old file then ask for a reset instead of resuming on a history that differs.
 *
 * Threads: ts_feed_append runs on the writer thread inside a write transaction; ts_feed_read
 * and ts_feed_latest in any read transaction; ts_feed_open once at start. */
#ifndef TS_FEED_H
#define TS_FEED_H

#include "backend.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_CURSOR_CHARS 32 /* this backend's cursors: store id and seq, in hex */

/* Ensures the store has a store id (a new one when missing or made for another data file).
 * Returns 0 or TS_E*. */
int ts_feed_open(ts_store *s, uint64_t *store_id);

/* Appends one entry; *last is raised to its seq. Writer thread. Uses the store's delete
 * reserve (a revocation must land even in a full store). */
int ts_feed_append(ts_txn *t, uint64_t *last, char kind, const char *id, size_t id_len,
                   int64_t until, int64_t before);

/* The latest seq committed (0 when none). */
int ts_feed_latest(ts_txn *t, uint64_t *seq);

/* Reads entries with seq > after, in order, examining at most max of them; those still in
 * force at now go to out (n of them). *last is the last seq examined (after, when none);
 * *more is true when entries past *last may remain. */
int ts_feed_read(ts_txn *t, uint64_t after, int64_t now, ts_feed_entry *out, size_t max,
                 size_t *n, uint64_t *last, bool *more);

/* The sweeper's half: deletes the feed entry an expiry entry of kind 'q' names, if due.
 * Returns records deleted (0 or 1) or TS_E*. */
int ts_feed_sweep(ts_txn *t, const uint8_t *key, size_t klen, int64_t now);

/* Cursors. */
void ts_cursor_format(char out[TS_CURSOR_CHARS + 1], uint64_t store_id, uint64_t seq);
/* Where a subscriber that sent `since` resumes: *after is the seq after which entries are
 * sent. Returns true when the feed can resume there with no gap, false when it cannot prove
 * completeness (another store or data file, a cursor from the future, not a cursor at all):
 * the subscriber must then be sent a reset, and *after is 0 (everything in force follows). */
bool ts_cursor_resume(const char *since, size_t len, uint64_t store_id, uint64_t latest,
                      uint64_t *after);

#endif
