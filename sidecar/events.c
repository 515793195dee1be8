/* sidecar/events.c: subscribing a connection and the pump that feeds subscribers (see
 * events.h; the events.subscribe method is methods/events.c).
 *
 * A pump reads one chunk at a time through the backend (feed_read). LMDB answers before the
 * call returns; Redis later: while a read is out, c->feed_reading keeps the connection alive
 * (conn.c frees it only after the read came back) and further pump requests set feed_again,
 * so there is one read per subscriber at a time and positions only move forward. */
#include "events.h"

#include "backend.h"
#include "domain.h"
#include "error.h"
#include "log.h"
#include "rpc.h"

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

void ts_events_pack_cursor(msgpack_packer *pk, ts_backend *b, ts_feed_pos pos) {
  char cur[TS_CURSOR_MAX + 1];
  b->ops->cursor_format(b, pos, cur);
  ts_pack_cstr(pk, "cursor");
  ts_pack_cstr(pk, cur);
}

static bool send_revoked(ts_conn *c, const ts_feed_entry *e, size_t n, ts_backend *b) {
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
    ts_events_pack_cursor(pk, b, e[i].pos);
  }
  return note_send(c, &nt);
}

static void on_feed_read(void *ctx, int status, const ts_feed_entry *e, size_t n,
                         ts_feed_pos last, bool more) {
  ts_conn *c = ctx;
  ts_server *s = c->server;
  c->feed_reading = false;
  if (c->closing || !c->subscribed) {
    ts_conn_feed_read_done(c); /* may free c */
    return;
  }
  int rc = status;
  if (rc == 0 && n > 0 && !send_revoked(c, e, n, s->domain->backend)) rc = TS_ENOMEM;
  if (rc) { /* never skip silently: the subscriber resumes from its cursor */
    ts_log(TS_LOG_WARN, "cannot feed a subscriber; disconnected", "{s:I, s:s}", "conn",
           (json_int_t)c->id, "error", ts_strerror(rc));
    ts_conn_close(c, "feed failed");
    ts_conn_feed_read_done(c);
    return;
  }
  s->stats.feed_entries_sent += n;
  if (ts_feed_pos_cmp(last, c->feed_sent) > 0) c->feed_sent = last;
  c->feed_again = c->feed_again || more;
  if (!c->feed_in_call && c->feed_again) ts_events_pump(c); /* an asynchronous answer */
}

/* Sends c what follows its position, while its write queue has room. */
void ts_events_pump(ts_conn *c) {
  ts_server *s = c->server;
  ts_backend *b = s->domain->backend;
  if (c->feed_reading) { /* one read at a time: the answer pumps again */
    c->feed_again = true;
    return;
  }
  c->feed_held = false;
  do {
    if (!c->subscribed || c->closing) return;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) >= s->cfg->max_write_queue) {
      c->feed_held = true; /* resumed by ts_events_writable */
      s->stats.feed_holds++;
      return;
    }
    c->feed_reading = true;
    c->feed_again = false;
    c->feed_in_call = true;
    b->ops->feed_read(b, c->feed_sent, (int64_t)time(NULL), FEED_CHUNK, on_feed_read, c);
    c->feed_in_call = false;
  } while (!c->feed_reading && c->feed_again);
}

void ts_events_published(ts_server *s, ts_feed_pos last) {
  for (ts_conn *c = s->conns, *next; c; c = next) {
    next = c->next; /* pump may close c */
    if (c->subscribed && !c->closing && !c->feed_held && ts_feed_pos_cmp(c->feed_sent, last) < 0)
      ts_events_pump(c);
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

bool ts_events_send_reset(ts_conn *c) {
  note nt;
  msgpack_packer *pk = note_begin(&nt, "reset", 1);
  msgpack_pack_map(pk, 1);
  ts_events_pack_cursor(pk, c->server->domain->backend, (ts_feed_pos){0, 0});
  c->server->stats.feed_resets++;
  return note_send(c, &nt);
}

void ts_events_start(ts_conn *c, ts_feed_pos after) {
  c->subscribed = true;
  c->feed_sent = after;
  c->feed_held = false;
}
