/* sidecar/conn.c: one client connection: read, pre-scan, dispatch, write, backpressure.
 *
 * Invariants:
 *   - buf[0..used) holds bytes not yet dispatched; the message being scanned starts at buf[0]
 *     (dispatched messages are moved out by compacting after each pass).
 *   - The message timer runs exactly while buf holds the start of an incomplete message and we
 *     read (not paused for backpressure, not draining, not at EOF); it is (re)started when a
 *     message's first byte is seen, never on later bytes, and afresh when a pause ends.
 *   - reading == uv_read_start is active. We read only while not paused, not draining, not
 *     closing, and not at EOF.
 * The buffer starts small and doubles up to max_message; a complete message never needs more,
 * and an incomplete one that would is rejected by the pre-scan first.
 * Secrets: requests carry sids and tokens, so no byte of them outlives its use: dispatched
 * bytes are wiped when the buffer is compacted, growing copies and wipes the old block, and
 * the buffer is wiped before it is freed (proto/wipe.h). Only bytes that were read are wiped. */
#include "server.h"

#include "error.h"
#include "events.h"
#include "log.h"
#include "wipe.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define CONN_BUF_INITIAL 4096

static void process_buffer(ts_conn *c);
static void update_reading(ts_conn *c);

/* The connection is gone: tell the server, wipe what is left of its input, free it. */
static void conn_free(ts_conn *c) {
  ts_server_conn_gone(c->server, c);
  if (c->buf) sodium_memzero(c->buf, c->used);
  free(c->buf);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  ts_conn *c = h->data;
  if (--c->handles_open > 0) return;
  if (c->in_flight > 0 || c->feed_reading) return; /* the last to finish frees it */
  conn_free(c);
}

void ts_conn_close(ts_conn *c, const char *why) {
  if (c->closing) return;
  c->closing = true;
  c->reading = false;
  ts_log(TS_LOG_DEBUG, "connection closed", "{s:I, s:s}", "conn", (json_int_t)c->id, "why", why);
  uv_timer_stop(&c->message_timer);
  uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
  uv_close((uv_handle_t *)&c->message_timer, on_handle_closed);
}

/* A reply to c was written: a subscriber's feed held on a full write queue may go on. */
void ts_conn_wrote(ts_conn *c) {
  if (c->feed_held && !c->closing) ts_events_writable(c);
}

void ts_conn_feed_read_done(ts_conn *c) {
  if (c->closing && c->in_flight == 0 && c->handles_open == 0) conn_free(c);
}

/* A request of c finished (its reply written, or dropped because c is closing). */
void ts_conn_request_done(ts_conn *c) {
  c->in_flight--;
  if (c->internal) return; /* the pseudo-connection of internal calls: nothing to read */
  if (c->closing) {
    if (c->in_flight == 0 && c->handles_open == 0 && !c->feed_reading) conn_free(c);
    return;
  }
  process_buffer(c);
}

static void on_message_timeout(uv_timer_t *t) {
  ts_conn *c = t->data;
  c->server->stats.closed_timeout++;
  ts_log(TS_LOG_INFO, "message not complete in time; connection closed", "{s:I, s:I}", "conn",
         (json_int_t)c->id, "bytes", (json_int_t)c->used);
  ts_conn_close(c, "message timeout");
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  (void)suggested;
  ts_conn *c = h->data;
  size_t max = c->server->cfg->max_message;
  if (c->used == c->cap && c->cap < max) {
    size_t ncap = c->cap ? c->cap * 2 : CONN_BUF_INITIAL;
    if (ncap > max) ncap = max;
    (void)ts_wipe_grow(&c->buf, &c->cap, c->used, ncap); /* out of memory: no room, ENOBUFS */
  }
  *out = uv_buf_init((char *)c->buf + c->used, (unsigned)(c->cap - c->used));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  ts_conn *c = stream->data;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF) {
      c->eof = true;
      update_reading(c);
      if (c->in_flight == 0) ts_conn_close(c, "eof");
      return;
    }
    ts_conn_close(c, nread == UV_ENOBUFS ? "no buffer" : uv_strerror((int)nread));
    return;
  }
  if (c->used == 0) uv_timer_start(&c->message_timer, on_message_timeout,
                                   (uint64_t)c->server->cfg->message_timeout_ms, 0);
  c->used += (size_t)nread;
  process_buffer(c);
}

static bool backpressured(const ts_conn *c) {
  const ts_config *cfg = c->server->cfg;
  return c->in_flight >= cfg->max_inflight ||
         uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe) > cfg->max_write_queue;
}

static void update_reading(ts_conn *c) {
  bool want = !c->closing && !c->eof && !c->server->draining && !backpressured(c);
  if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->pipe);
    if (!c->closing && !c->eof && !c->server->draining) c->server->stats.read_pauses++;
  } else if (want && !c->reading) {
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  }
  c->reading = want;
  /* The message clock times the client, not us. While reading is paused for backpressure, the
   * rest of an incomplete message may be waiting in the socket, and buf may hold complete
   * messages not yet dispatched: stop the clock, and start a fresh one when reading resumes.
   * Draining or at EOF, an incomplete message never completes: the connection closes once its
   * last reply is written (or at the shutdown timeout), not with replies still owed. */
  if (!want && !c->closing) {
    uv_timer_stop(&c->message_timer);
    c->paused = !c->eof && !c->server->draining;
  } else if (want && c->paused) {
    c->paused = false;
    if (c->used > 0)
      uv_timer_start(&c->message_timer, on_message_timeout,
                     (uint64_t)c->server->cfg->message_timeout_ms, 0);
  }
}

/* Dispatches every complete message in buf while backpressure allows, then compacts. */
static void process_buffer(ts_conn *c) {
  const ts_config *cfg = c->server->cfg;
  const ts_scan_limits lim = {cfg->max_message, cfg->max_depth + 2 /* the envelope's arrays */};
  size_t off = 0;
  while (!c->closing && off < c->used && !backpressured(c)) {
    int n = ts_scan_feed(&c->scan, c->buf + off, c->used - off, &lim);
    if (n == 0) break;
    if (n < 0) {
      c->server->stats.closed_protocol++;
      ts_log(TS_LOG_INFO, "protocol violation; connection closed", "{s:I, s:s}", "conn",
             (json_int_t)c->id, "error", ts_strerror(n));
      ts_conn_close(c, ts_strerror(n));
      return;
    }
    ts_scan_init(&c->scan);
    int rc = ts_dispatch_message(c, c->buf + off, (size_t)n);
    off += (size_t)n;
    if (rc < 0) {
      c->server->stats.closed_protocol++;
      ts_log(TS_LOG_INFO, "protocol violation; connection closed", "{s:I, s:s}", "conn",
             (json_int_t)c->id, "error", ts_strerror(rc));
      ts_conn_close(c, ts_strerror(rc));
      return;
    }
    /* The next message's first byte, if here, starts its own clock, but only while we read:
     * paused, update_reading starts it when reading resumes; draining or at EOF, the message
     * will never complete and the connection closes once its last reply is written. */
    uv_timer_stop(&c->message_timer);
    if (off < c->used && c->reading)
      uv_timer_start(&c->message_timer, on_message_timeout, (uint64_t)cfg->message_timeout_ms, 0);
  }
  if (c->closing) return;
  if (off > 0) {
    /* [used - off, used) is then stale: dispatched bytes, or a copy of the ones moved. */
    memmove(c->buf, c->buf + off, c->used - off);
    sodium_memzero(c->buf + c->used - off, off);
    c->used -= off;
  }
  if (c->server->draining) {
    /* Finish what was read; an incomplete message will never complete. */
    bool complete_waiting = c->used > 0 && backpressured(c);
    if (c->in_flight == 0 && !complete_waiting) ts_conn_close(c, "drained");
    return;
  }
  if (c->eof && c->in_flight == 0) {
    ts_conn_close(c, "eof");
    return;
  }
  update_reading(c);
}

void ts_conn_accepted(ts_server *s, ts_conn *c) {
  static uint64_t next_id = 1;
  c->id = next_id++;
  c->pipe.data = c;
  uv_timer_init(s->loop, &c->message_timer);
  c->message_timer.data = c;
  c->handles_open = 2;
  ts_scan_init(&c->scan);
  ts_log(TS_LOG_DEBUG, "connection accepted", "{s:I, s:i, s:i, s:i}", "conn", (json_int_t)c->id,
         "uid", (int)c->uid, "gid", (int)c->gid, "pid", (int)c->pid);
  update_reading(c);
}

void ts_conn_start_drain(ts_conn *c) {
  update_reading(c);
  uv_timer_stop(&c->message_timer);
  process_buffer(c);
}
