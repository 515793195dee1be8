/* sidecar/events.c: subscribing a connection and the pump that feeds subscribers (see
 * events.h; the events.subscribe method is methods/events.c). */
#include "events.h"

#include "domain.h"
#include "error.h"
#include "feed.h"
#include "log.h"
#include "rpc.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FEED_CHUNK 256 /* entries per "revoked" notification */

typedef struct note_write {
  uv_write_t req;
  uv_buf_t buf;
  ts_conn *conn;
} note_write;

static void on_note_written(uv_write_t *w, int status) {
  note_write *n = (note_write *)w;
  if (status == 0 && !n->conn->closing) ts_events_writable(n->conn);
  free(n->buf.base);
  free(n);
}

/* A notification being packed: [2, method, [entries...]]. */
typedef struct note {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} note;

static msgpack_packer *note_begin(note *n, const char *method, size_t entries) {
  msgpack_sbuffer_init(&n->sb);
  msgpack_packer_init(&n->pk, &n->sb, msgpack_sbuffer_write);
  ts_rpc_pack_notification_head(&n->pk, method);
  msgpack_pack_array(&n->pk, entries);
  return &n->pk;
}

static bool send_note(ts_conn *c, msgpack_sbuffer *sb);

/* Queues the packed notification on c and frees it. False when it could not be queued. */
static bool note_send(ts_conn *c, note *n) {
  bool ok = n->sb.data && send_note(c, &n->sb);
  msgpack_sbuffer_destroy(&n->sb);
  return ok;
}

/* Queues one notification on c; takes sb's bytes. False when it could not be queued. */
static bool send_note(ts_conn *c, msgpack_sbuffer *sb) {
  note_write *n = malloc(sizeof(*n));
  if (!n) return false;
  n->conn = c;
  n->buf = uv_buf_init(sb->data, (unsigned)sb->size);
  sb->data = NULL;
  sb->size = sb->alloc = 0;
  if (uv_write(&n->req, (uv_stream_t *)&c->pipe, &n->buf, 1, on_note_written) != 0) {
    free(n->buf.base);
    free(n);
    return false;
  }
  return true;
}

void ts_events_pack_cursor(msgpack_packer *pk, uint64_t store_id, uint64_t seq) {
  char cur[TS_CURSOR_CHARS + 1];
  ts_cursor_format(cur, store_id, seq);
  ts_pack_cstr(pk, "cursor");
  ts_pack_cstr(pk, cur);
}

static bool send_revoked(ts_conn *c, const ts_feed_entry *e, size_t n, uint64_t store_id) {
  note nt;
  msgpack_packer *pk = note_begin(&nt, "revoked", n);
  for (size_t i = 0; i < n; i++) {
    bool sub = e[i].kind == 's';
    msgpack_pack_map(pk, sub ? 5 : 4);
    ts_pack_cstr(pk, "kind");
    ts_pack_cstr(pk, ts_feed_kind_name(e[i].kind));
    ts_pack_cstr(pk, "id");
    msgpack_pack_str(pk, e[i].id_len);
    msgpack_pack_str_body(pk, e[i].id, e[i].id_len);
    ts_pack_cstr(pk, "until");
    msgpack_pack_int64(pk, e[i].until);
    if (sub) {
      ts_pack_cstr(pk, "before");
      msgpack_pack_int64(pk, e[i].before);
    }
    ts_events_pack_cursor(pk, store_id, e[i].seq);
  }
  return note_send(c, &nt);
}

/* Sends c what follows its position, while its write queue has room. */
void ts_events_pump(ts_conn *c) {
  static ts_feed_entry chunk[FEED_CHUNK]; /* loop thread only */
  ts_server *s = c->server;
  ts_domain *d = s->domain;
  c->feed_held = false;
  while (c->subscribed && !c->closing) {
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) >= s->cfg->max_write_queue) {
      c->feed_held = true; /* resumed by ts_events_writable */
      s->stats.feed_holds++;
      return;
    }
    ts_txn *t;
    size_t n = 0;
    uint64_t last = c->feed_sent;
    bool more = false;
    int rc = ts_store_read(d->store, &t);
    if (rc == 0) {
      rc = ts_feed_read(t, c->feed_sent, (int64_t)time(NULL), chunk, FEED_CHUNK, &n, &last, &more);
      ts_store_abort(t);
    }
    if (rc == 0 && n > 0 && !send_revoked(c, chunk, n, d->store_id)) rc = TS_ENOMEM;
    if (rc) { /* never skip silently: the subscriber resumes from its cursor */
      ts_log(TS_LOG_WARN, "cannot feed a subscriber; disconnected", "{s:I, s:s}", "conn",
             (json_int_t)c->id, "error", ts_strerror(rc));
      ts_conn_close(c, "feed failed");
      return;
    }
    s->stats.feed_entries_sent += n;
    c->feed_sent = last;
    if (!more) return;
  }
}

void ts_events_published(ts_server *s, uint64_t last) {
  if (last == 0) return;
  for (ts_conn *c = s->conns, *next; c; c = next) {
    next = c->next; /* pump may close c */
    if (c->subscribed && !c->closing && !c->feed_held && c->feed_sent < last) ts_events_pump(c);
  }
}

void ts_events_writable(ts_conn *c) {
  if (c->feed_held && c->subscribed && !c->closing) ts_events_pump(c);
}

void ts_events_keys(ts_server *s, int64_t keys_version) {
  for (ts_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (!c->subscribed || c->closing) continue;
    note nt;
    msgpack_packer *pk = note_begin(&nt, "keys", 1);
    msgpack_pack_map(pk, 1);
    ts_pack_cstr(pk, "keys_version");
    msgpack_pack_int64(pk, keys_version);
    if (!note_send(c, &nt)) ts_conn_close(c, "cannot queue a keys notification");
  }
}

static bool send_reset(ts_conn *c, uint64_t store_id) {
  note nt;
  msgpack_packer *pk = note_begin(&nt, "reset", 1);
  msgpack_pack_map(pk, 1);
  ts_events_pack_cursor(pk, store_id, 0);
  return note_send(c, &nt);
}

int ts_events_subscribe(ts_conn *c, const char *since, size_t since_len, uint64_t *latest) {
  ts_domain *d = c->server->domain;
  uint64_t after;
  ts_txn *t;
  *latest = 0;
  int rc = ts_store_read(d->store, &t);
  if (rc == 0) {
    rc = ts_feed_latest(t, latest);
    ts_store_abort(t);
  }
  if (rc) return TS_EUNAVAILABLE;
  after = *latest; /* without since: what follows now */
  if (since && !ts_cursor_resume(since, since_len, d->store_id, *latest, &after)) {
    c->server->stats.feed_resets++;
    if (!send_reset(c, d->store_id)) return TS_ENOMEM;
  }
  c->subscribed = true;
  c->feed_sent = after;
  c->feed_held = false;
  return 0;
}
