/* sidecar/events.h: the revocation push (PROTOCOL.md "events").
 *
 * A connection that called events.subscribe receives notifications:
 *   [2, "reset", [{cursor}]]                                 when `since` cannot be resumed
 *   [2, "revoked", [{kind, id, until, before?, cursor}, ...]] kind: jti | family | sub
 *   [2, "keys", [{keys_version}]]
 *
 * One path sends revocations, live or replayed: the feed table in the store (feed.h). Each
 * subscriber has a position, feed_sent, the last seq it was sent. Pumping a subscriber reads
 * the entries after its position from a read transaction and sends them, in chunks, while its
 * write queue holds less than --max-write-queue bytes; when the queue is full it is held, and
 * pumped again once a write to it completes. So a slow subscriber costs at most
 * --max-write-queue bytes of memory, is never disconnected for being slow, and loses nothing.
 *
 * The seam: an operation's entries are committed before its done callback calls
 * ts_events_published (on the loop thread, in commit order). A subscriber's position only
 * moves forward over entries read from a snapshot, and every entry committed after that
 * snapshot gets a publish call later: so there is no gap, and reading strictly after the
 * position sends nothing twice. Loop thread only. */
#ifndef TS_EVENTS_H
#define TS_EVENTS_H

#include "server.h"

#include <stdint.h>

/* Entries up to seq last were committed: pump every subscriber that has not been sent them. */
void ts_events_published(ts_server *s, uint64_t last);
/* A write to c completed: pump it again if it was held on a full write queue. */
void ts_events_writable(ts_conn *c);
void ts_events_keys(ts_server *s, int64_t keys_version);

/* events.subscribe (methods/events.c), in three steps around its reply: ts_events_subscribe
 * makes c a subscriber from `since` (a cursor; NULL: from now), sending a reset notification
 * first when since cannot be resumed, and gives the latest seq; the reply then carries
 * ts_events_pack_cursor of it; ts_events_pump, after the reply, sends what followed since.
 * Returns 0, or TS_EUNAVAILABLE (the store) / TS_ENOMEM (c is not subscribed). */
int ts_events_subscribe(ts_conn *c, const char *since, size_t since_len, uint64_t *latest);
/* Packs "cursor": the cursor of seq. */
void ts_events_pack_cursor(msgpack_packer *pk, uint64_t store_id, uint64_t seq);
/* Sends c what follows its position, while its write queue has room. */
void ts_events_pump(ts_conn *c);

#endif
