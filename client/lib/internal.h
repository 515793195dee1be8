/* client/lib/internal.h: libtessera's private parts (never installed).
 *
 * The client is one non-blocking Unix stream socket plus two pieces of state:
 *   - the input buffer, cut into messages by the allocation-free pre-scan (proto/scan.h) before
 *     msgpack-c sees a byte, so a broken or hostile daemon cannot make us allocate more than
 *     TS_CLIENT_MAX_REPLY (plus msgpack-c's per-object overhead on that many bytes);
 *   - the in-flight table: one entry per request sent and not yet handed to the caller. A reply
 *     fills its entry (converted to JSON at once, so the msgpack zone is freed right away);
 *     tessera_wait takes it out. A reply whose msgid has no pending entry (never sent, already
 *     answered, or abandoned by a timed-out tessera_call) is dropped, so the table only ever
 *     holds what the caller asked for.
 * Server notifications are decoded by one hook (on_notification in reader.c), converted to
 * JSON and appended to a bounded FIFO (the notes below); tessera_next_notification waits on
 * that queue with the same pump loop tessera_wait uses (pump_until in client.c). A note that
 * does not fit is dropped and sets notes_lost, which the next tessera_next_notification
 * reports as TESSERA_EOVERFLOW.
 *
 * Errors that leave the byte stream unusable are sticky: rd_err (EOF, socket error, malformed
 * stream) ends reading and writing; wr_err (a failed or half-done write) ends writing only, so
 * replies to requests already sent can still be read. */
#ifndef TS_CLIENT_INTERNAL_H
#define TS_CLIENT_INTERNAL_H

#include "tessera/tessera.h"

#include "scan.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest reply accepted; a longer one is TESSERA_EPROTO and ends the connection. */
#define TS_CLIENT_MAX_REPLY ((size_t)16 << 20)
/* Deepest nesting accepted in a reply (msgpack-c's own unpacker stops at 32). */
#define TS_CLIENT_MAX_DEPTH 32u

/* ---- the in-flight table (inflight.c) ---------------------------------------------------- */

typedef struct ts_reply {
  uint32_t msgid;
  bool ready;        /* the reply arrived; rc, result and err are set */
  int rc;            /* 0, TESSERA_EREMOTE, or TESSERA_EPROTO (unconvertible reply) */
  json_t *result;    /* owned; NULL unless rc == 0 */
  tessera_error err; /* filled when rc == TESSERA_EREMOTE */
  struct ts_reply *next;
} ts_reply;

typedef struct ts_inflight {
  ts_reply **buckets; /* chained; nbuckets is 0 or a power of two */
  size_t nbuckets;
  size_t count;
} ts_inflight;

void ts_inflight_init(ts_inflight *t);
/* Frees every entry and the results they hold. */
void ts_inflight_close(ts_inflight *t);
/* Adds a pending entry for msgid (which must not be present). Returns it, or NULL on ENOMEM. */
ts_reply *ts_inflight_add(ts_inflight *t, uint32_t msgid);
/* The entry for msgid, or NULL. */
ts_reply *ts_inflight_find(const ts_inflight *t, uint32_t msgid);
/* Unlinks the entry for msgid and returns it (NULL when absent); free it with ts_reply_free. */
ts_reply *ts_inflight_unlink(ts_inflight *t, uint32_t msgid);
/* Frees an unlinked entry and its result. NULL is allowed. */
void ts_reply_free(ts_reply *r);

/* ---- queued server notifications (reader.c) ----------------------------------------------- */

typedef struct ts_note {
  struct ts_note *next;
  char method[TESSERA_NOTIFY_METHOD_MAX];
  json_t *args; /* owned: the params array */
  size_t bytes; /* wire size, counted against TESSERA_NOTIFY_QUEUE_BYTES */
} ts_note;

/* ---- the connection (client.c) ------------------------------------------------------------ */

struct tessera_client {
  int fd;
  uint32_t next_msgid;
  int rd_err; /* sticky: reading and writing are over (0 while fine) */
  int wr_err; /* sticky: writing is over */
  uint8_t *in; /* input buffer: [in_start, in_len) is unconsumed */
  size_t in_cap, in_len, in_start;
  ts_scan scan; /* state of the message starting at in_start */
  ts_inflight inflight;
  ts_note *notes_head, *notes_tail; /* FIFO of notifications not yet taken */
  size_t notes_count, notes_bytes;
  bool notes_lost; /* dropped since the last tessera_next_notification */
};

/* ---- the read side (reader.c) ------------------------------------------------------------ */

/* One recv() on the (non-blocking) socket, then dispatches every complete message. Returns 1
 * when bytes arrived, 0 when none were waiting, or a negative code: the sticky rd_err, or
 * TESSERA_ENOMEM (not sticky) when the buffer could not grow. */
int ts_client_read_once(tessera_client *c);
/* Records err as the sticky read error (ending writes too); returns the sticky error. */
int ts_client_fail_read(tessera_client *c, int err);
/* Unlinks the oldest queued notification (NULL when none); free it with ts_note_free. */
ts_note *ts_client_take_note(tessera_client *c);
/* Frees a note and its args. NULL is allowed. */
void ts_note_free(ts_note *n);

#endif
