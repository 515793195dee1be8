/* sidecar/events.h: the revocation push (PROTOCOL.md "events").
 *
 * A connection that called events.subscribe receives notifications:
 *   [2, "reset", [{cursor}]]                                 when `since` cannot be resumed
 *   [2, "revoked", [{kind, id, until, before?, cursor}, ...]] kind: jti | family | sub
 *   [2, "keys", [{keys_version}]]
 *
 * One path sends revocations, live or replayed: the backend's feed (store/backend.h). Each
 * subscriber has a position, feed_sent, the last entry it was sent. Pumping a subscriber
 * reads the entries after its position and sends them, in chunks, while its write queue
 * holds less than --max-write-queue bytes; when the queue is full it is held, and pumped
 * again once a write to it completes. So a slow subscriber costs at most --max-write-queue
 * bytes of memory, is never disconnected for being slow, and loses nothing.
 *
 * The seam: the backend calls ts_events_published (through its on_published) after entries
 * were committed (LMDB: in commit order, once durable; Redis: when the stream reader saw
 * them). A subscriber's position only moves forward over entries the backend returned, and
 * every entry committed after a read gets a publish call later: so there is no gap, and
 * reading strictly after the position sends nothing twice. Loop thread only. */
#ifndef TS_EVENTS_H
#define TS_EVENTS_H

#include "backend.h"
#include "server.h"

#include <stdbool.h>

/* Entries up to last were committed: pump every subscriber that has not been sent them. */
void ts_events_published(ts_server *s, ts_feed_pos last);
/* A write to c completed: pump it again if it was held on a full write queue. */
void ts_events_writable(ts_conn *c);
void ts_events_keys(ts_server *s, int64_t keys_version);

/* events.subscribe (methods/events.c), around its reply: the backend's feed_resume says where
 * `since` resumes; when it cannot, ts_events_send_reset first; ts_events_start makes c a
 * subscriber from that position; the reply carries ts_events_pack_cursor of the latest
 * position; ts_events_pump, after the reply, sends what followed since. */
bool ts_events_send_reset(ts_conn *c);
void ts_events_start(ts_conn *c, ts_feed_pos after);
/* Packs "cursor": the cursor of pos. */
void ts_events_pack_cursor(msgpack_packer *pk, ts_backend *b, ts_feed_pos pos);
/* Sends c what follows its position, while its write queue has room. */
void ts_events_pump(ts_conn *c);

#endif
