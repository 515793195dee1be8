/* sidecar/events.h: the revocation push (PROTOCOL.md "events").
 *
 * A connection that called events.subscribe receives notifications:
 *   [2, "revoked", [{kind, id, until, before?}, ...]]   kind: jti | family | sub | session
 *   [2, "keys", [{keys_version}]]
 * Revocations are published only after their write is durable. A subscriber that does not
 * read (more than --max-write-queue bytes pending) is disconnected: it reconnects and
 * resubscribes (libtessera does), and learns what it missed through its feed-down policy.
 * Loop thread only. */
#ifndef TS_EVENTS_H
#define TS_EVENTS_H

#include "server.h"

#include <stdint.h>

typedef struct ts_event {
  const char *kind; /* "jti" | "family" | "sub" | "session" (static strings) */
  char id[272];
  int64_t until;
  int64_t before;   /* kind "sub": the cut-off; else ignored */
} ts_event;

/* A growing list of events, filled by a write operation (any thread) and published by its
 * done callback once durable. An allocation failure drops the event, never the revocation. */
typedef struct ts_event_list {
  ts_event *items;
  size_t n, cap;
} ts_event_list;

void ts_event_list_add(ts_event_list *l, const char *kind, const char *id, size_t idlen,
                       int64_t until, int64_t before);
void ts_event_list_free(ts_event_list *l);

void ts_events_revoked(ts_server *s, const ts_event *ev, size_t n);
void ts_events_keys(ts_server *s, int64_t keys_version);

void ts_events_subscribe(ts_req *r, const msgpack_object *params);

#endif
