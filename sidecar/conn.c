/* sidecar/conn.c: one client connection: read, pre-scan, dispatch, queue and flush replies,
 * backpressure, the per-turn budget (fairness). Owned by the request path (server.h).
 *
 * Invariants:
 *   - buf[0..used) holds bytes not yet dispatched; the message being scanned starts at buf[0]
 *     (dispatched messages are moved out by compacting after each pass).
 *   - The message clock: msg_since is when the incomplete message at buf[0] began (its first
 *     byte was read, or reading resumed after a pause). The timer is armed lazily, at most once
 *     per pass, never restarted per message: when it fires it closes the connection only if an
 *     incomplete message is still there, we read, and message_timeout has passed since
 *     msg_since; otherwise it re-arms for what is left, or stays off. Paused for backpressure
 *     or the budget, the timer is stopped and the clock starts afresh when reading resumes.
 *   - reading == uv_read_start is active. We read only while not paused (backpressure, or
 *     backlogged: budget spent with messages left), not draining, not closing, not at EOF.
 *   - Replies: out[0..out_len) are queued replies, whole messages; a connection with out_len > 0
 *     is on the server's dirty list. A flush tries one write (uv_try_write); what the socket
 *     does not take moves, block and all, into a uv_write of its own (writes_out counts them),
 *     and out starts afresh. So in the steady state a connection writes once per loop turn
 *     from a buffer it keeps, and nothing is allocated.
 *   - A connection is closed at EOF or while draining only once it owes nothing: no request in
 *     flight, no reply queued, no write of ours in flight.
 * The input buffer starts small and doubles up to max_message; a complete message never needs
 * more, and an incomplete one that would is rejected by the pre-scan first.
 * Secrets: requests and replies carry sids and tokens, so no byte of them outlives its use:
 * dispatched bytes are wiped when the buffer is compacted, written reply bytes are wiped,
 * growing copies and wipes the old block, and buffers are wiped before they are freed
 * (proto/wipe.h). Only bytes that were used are wiped. */
#include "server.h"

#include "error.h"
#include "events.h"
#include "log.h"
#include "wipe.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define CONN_BUF_INITIAL 4096
#define CONN_OUT_INITIAL 4096
#define CONN_OUT_KEEP 16384 /* a larger output buffer is freed once it is flushed */

typedef struct out_write {
  uv_write_t req;
  ts_conn *conn;
  uint8_t *block; /* the bytes [0, len) it writes; wiped and freed when done */
  size_t len;
  unsigned replies; /* how many replies they hold */
} out_write;

static void process_buffer(ts_conn *c);
static void update_reading(ts_conn *c);
static void conn_flush(ts_conn *c);

static bool owes(const ts_conn *c) {
  return c->in_flight > 0 || c->out_len > 0 || c->writes_out > 0;
}

/* The connection is gone: tell the server, wipe what is left of its input, free it. */
static void conn_free(ts_conn *c) {
  ts_server_conn_gone(c->server, c);
  if (c->buf) sodium_memzero(c->buf, c->used);
  free(c->buf);
  if (c->out) sodium_memzero(c->out, c->out_len);
  free(c->out);
  free(c);
}

static void dirty_remove(ts_conn *c) {
  if (!c->dirty) return;
  for (ts_conn **p = &c->server->dirty; *p; p = &(*p)->dirty_next)
    if (*p == c) {
      *p = c->dirty_next;
      break;
    }
  c->dirty = false;
}

static void backlog_remove(ts_conn *c) {
  if (!c->backlogged) return;
  ts_server *s = c->server;
  ts_conn *prev = NULL;
  for (ts_conn *p = s->backlog; p; prev = p, p = p->backlog_next)
    if (p == c) {
      if (prev) prev->backlog_next = c->backlog_next;
      else s->backlog = c->backlog_next;
      if (s->backlog_tail == c) s->backlog_tail = prev;
      break;
    }
  c->backlogged = false;
  if (!s->backlog) uv_idle_stop(&s->backlog_idle);
}

static void on_idle(uv_idle_t *h) { (void)h; } /* only keeps the poll from blocking */

static void maybe_free(ts_conn *c) {
  if (c->closing && c->in_flight == 0 && c->handles_open == 0 && !c->feed_reading &&
      c->writes_out == 0)
    conn_free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  ts_conn *c = h->data;
  --c->handles_open;
  maybe_free(c); /* else the last request, feed read or write to finish frees it */
}

void ts_conn_close(ts_conn *c, const char *why) {
  if (c->closing) return;
  c->closing = true;
  c->reading = false;
  dirty_remove(c);
  backlog_remove(c);
  if (c->out_len) sodium_memzero(c->out, c->out_len); /* replies nobody will read */
  c->out_len = 0;
  c->unwritten -= c->out_replies;
  c->out_replies = 0;
  ts_log(TS_LOG_DEBUG, "connection closed", "{s:I, s:s}", "conn", (json_int_t)c->id, "why", why);
  uv_timer_stop(&c->message_timer);
  uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
  uv_close((uv_handle_t *)&c->message_timer, on_handle_closed);
}

/* A reply to c was written: a subscriber's feed held on a full write queue may go on. */
void ts_conn_wrote(ts_conn *c) {
  if (c->feed_held && !c->closing) ts_events_writable(c);
}

void ts_conn_feed_read_done(ts_conn *c) { maybe_free(c); }

/* Output moved on (a write finished, or a request was answered): resume what waited for it. */
static void resume(ts_conn *c) {
  if (c->closing) {
    maybe_free(c);
    return;
  }
  if (!c->in_process && !c->backlogged) process_buffer(c);
}

/* A request of c finished (its reply queued, or dropped because c is closing). */
void ts_conn_request_done(ts_conn *c) {
  c->in_flight--;
  if (c->internal) return; /* the pseudo-connection of internal calls: nothing to read */
  resume(c);
}

int ts_conn_queue(ts_conn *c, const void *bytes, size_t n) {
  if (c->closing) return 0;
  if (c->out_len + n > c->out_cap) {
    size_t ncap = c->out_cap ? c->out_cap : CONN_OUT_INITIAL;
    while (ncap < c->out_len + n) ncap *= 2;
    if (ts_wipe_grow(&c->out, &c->out_cap, c->out_len, ncap) != 0) return TS_ENOMEM;
  }
  memcpy(c->out + c->out_len, bytes, n);
  c->out_len += n;
  c->out_replies++;
  c->unwritten++;
  if (c->subscribed) {
    conn_flush(c); /* keeps its place before the feed's next notification */
  } else if (!c->dirty) {
    c->dirty = true;
    c->dirty_next = c->server->dirty;
    c->server->dirty = c;
  }
  return 0;
}

static void on_out_written(uv_write_t *w, int status) {
  out_write *ow = (out_write *)w;
  ts_conn *c = ow->conn;
  sodium_memzero(ow->block, ow->len);
  free(ow->block);
  c->writes_out--;
  c->unwritten -= ow->replies;
  free(ow);
  /* a failed write means the peer went away; its read side will notice */
  if (status == 0) ts_conn_wrote(c);
  resume(c);
}

/* Hands the queued replies to the socket: one write, and a uv_write for what it left. */
static void conn_flush(ts_conn *c) {
  dirty_remove(c);
  if (c->closing || c->out_len == 0) return;
  uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
  int n = uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    ts_conn_close(c, uv_strerror(n));
    return;
  }
  if ((size_t)n == c->out_len) {
    sodium_memzero(c->out, c->out_len);
    c->out_len = 0;
    c->unwritten -= c->out_replies;
    c->out_replies = 0;
    if (c->out_cap > CONN_OUT_KEEP) { /* a burst's buffer is not kept by an idle connection */
      free(c->out);
      c->out = NULL;
      c->out_cap = 0;
    }
    ts_conn_wrote(c);
    return;
  }
  /* The rest goes out with a uv_write that owns the block; out starts afresh. */
  out_write *ow = malloc(sizeof(*ow));
  if (!ow) {
    ts_conn_close(c, "out of memory");
    return;
  }
  sodium_memzero(c->out, (size_t)n);
  ow->conn = c;
  ow->block = c->out;
  ow->len = c->out_len;
  ow->replies = c->out_replies;
  c->out_replies = 0;
  c->out = NULL;
  c->out_len = c->out_cap = 0;
  uv_buf_t rest = uv_buf_init((char *)ow->block + n, (unsigned)(ow->len - (size_t)n));
  if (uv_write(&ow->req, (uv_stream_t *)&c->pipe, &rest, 1, on_out_written) != 0) {
    c->unwritten -= ow->replies;
    sodium_memzero(ow->block, ow->len);
    free(ow->block);
    free(ow);
    ts_conn_close(c, "write failed");
    return;
  }
  c->writes_out++;
}

static void flush_all(ts_server *s) {
  while (s->dirty) {
    ts_conn *c = s->dirty;
    conn_flush(c); /* takes c off the list */
    if (!c->closing && (c->eof || s->draining || c->paused)) process_buffer(c);
  }
}

static void backlog_add(ts_conn *c) {
  ts_server *s = c->server;
  if (c->backlogged) return;
  c->backlogged = true;
  c->backlog_next = NULL;
  if (s->backlog_tail) s->backlog_tail->backlog_next = c;
  else s->backlog = c;
  s->backlog_tail = c;
  uv_idle_start(&s->backlog_idle, on_idle);
}

/* Each backlogged connection gets one more pass (with its budget), in turn. */
static void serve_backlog(ts_server *s) {
  ts_conn *c = s->backlog;
  s->backlog = s->backlog_tail = NULL;
  uv_idle_stop(&s->backlog_idle);
  while (c) {
    ts_conn *next = c->backlog_next;
    c->backlogged = false;
    c->backlog_next = NULL;
    if (!c->closing) process_buffer(c);
    c = next;
  }
}

static void on_message_timeout(uv_timer_t *t) {
  ts_conn *c = t->data;
  if (c->closing || c->used == 0 || !c->reading) return; /* nothing incomplete to time */
  uint64_t limit = (uint64_t)c->server->cfg->message_timeout_ms;
  uint64_t waited = uv_now(c->server->loop) - c->msg_since;
  if (waited < limit) {
    uv_timer_start(&c->message_timer, on_message_timeout, limit - waited, 0);
    return;
  }
  c->server->stats.closed_timeout++;
  ts_log(TS_LOG_INFO, "message not complete in time; connection closed", "{s:I, s:I}", "conn",
         (json_int_t)c->id, "bytes", (json_int_t)c->used);
  ts_conn_close(c, "message timeout");
}

/* An incomplete message is at buf[0] and we read: make sure its clock runs. fresh: it began
 * now (else it began at msg_since). */
static void clock_message(ts_conn *c, bool fresh) {
  if (fresh) c->msg_since = uv_now(c->server->loop);
  if (!uv_is_active((uv_handle_t *)&c->message_timer))
    uv_timer_start(&c->message_timer, on_message_timeout,
                   (uint64_t)c->server->cfg->message_timeout_ms, 0);
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
      if (!owes(c) && !c->backlogged) ts_conn_close(c, "eof");
      return;
    }
    ts_conn_close(c, nread == UV_ENOBUFS ? "no buffer" : uv_strerror((int)nread));
    return;
  }
  if (c->used == 0) c->msg_since = uv_now(c->server->loop);
  c->used += (size_t)nread;
  process_buffer(c);
}

static bool backpressured(const ts_conn *c) {
  const ts_config *cfg = c->server->cfg;
  return c->in_flight + c->unwritten >= cfg->max_inflight ||
         c->out_len + uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe) >
             cfg->max_write_queue;
}

static void update_reading(ts_conn *c) {
  bool want = !c->closing && !c->eof && !c->server->draining && !c->backlogged &&
              !backpressured(c);
  bool pressed = !c->closing && !c->eof && !c->server->draining && backpressured(c);
  if (pressed && !c->pressed) c->server->stats.read_pauses++;
  c->pressed = pressed;
  if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->pipe);
  } else if (want && !c->reading) {
    uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  }
  c->reading = want;
  /* The message clock times the client, not us. While reading is paused (backpressure, or a
   * budget spent), the rest of an incomplete message may be waiting in the socket, and buf
   * may hold complete messages not yet dispatched: stop the clock, and start a fresh one when
   * reading resumes. Draining or at EOF, an incomplete message never completes: the
   * connection closes once it owes nothing (or at the shutdown timeout). */
  if (!want && !c->closing) {
    uv_timer_stop(&c->message_timer);
    c->paused = !c->eof && !c->server->draining;
  } else if (want && c->paused) {
    c->paused = false;
    if (c->used > 0) clock_message(c, true);
  }
}

/* Dispatches the complete messages in buf while backpressure and the budget allow, then
 * compacts. A connection with messages left over from its budget goes on the backlog. The
 * budget is per loop turn, not per pass: libuv reads a readable socket up to 32 times in one
 * poll phase, and a small buffer makes each read a small pass. */
static void process_buffer(ts_conn *c) {
  const ts_config *cfg = c->server->cfg;
  const ts_scan_limits lim = {cfg->max_message, cfg->max_depth + 2 /* the envelope's arrays */};
  size_t off = 0;
  if (c->budget_turn != c->server->turn) { /* the first pass of this loop turn */
    c->budget_turn = c->server->turn;
    c->budget_left = TS_CONN_BUDGET;
  }
  bool spent = false;
  c->in_process = true;
  while (!c->closing && off < c->used && !backpressured(c)) {
    if (c->budget_left == 0) {
      spent = true;
      break;
    }
    int n = ts_scan_feed(&c->scan, c->buf + off, c->used - off, &lim);
    if (n == 0) break;
    if (n < 0) {
      c->server->stats.closed_protocol++;
      ts_log(TS_LOG_INFO, "protocol violation; connection closed", "{s:I, s:s}", "conn",
             (json_int_t)c->id, "error", ts_strerror(n));
      ts_conn_close(c, ts_strerror(n));
      break;
    }
    ts_scan_init(&c->scan);
    int rc = ts_dispatch_message(c, c->buf + off, (size_t)n);
    off += (size_t)n;
    c->budget_left--;
    if (rc < 0) {
      c->server->stats.closed_protocol++;
      ts_log(TS_LOG_INFO, "protocol violation; connection closed", "{s:I, s:s}", "conn",
             (json_int_t)c->id, "error", ts_strerror(rc));
      ts_conn_close(c, ts_strerror(rc));
      break;
    }
  }
  c->in_process = false;
  if (c->closing) {
    maybe_free(c);
    return;
  }
  if (off > 0) {
    /* [used - off, used) is then stale: dispatched bytes, or a copy of the ones moved. */
    memmove(c->buf, c->buf + off, c->used - off);
    sodium_memzero(c->buf + c->used - off, off);
    c->used -= off;
  }
  if (spent && c->used > 0) backlog_add(c);
  bool complete_waiting = c->used > 0 && (backpressured(c) || c->backlogged);
  if (c->server->draining || c->eof) {
    /* Finish what was read; an incomplete message will never complete. */
    if (!owes(c) && !complete_waiting) ts_conn_close(c, c->eof ? "eof" : "drained");
    return;
  }
  update_reading(c);
  /* What is left is the start of a message: it began now if a message was dispatched. */
  if (c->used > 0 && c->reading) clock_message(c, off > 0);
}

/* After the poll phase: the connections left over from their budget get their next pass,
 * then every connection with replies is flushed (one write each). */
static void on_check(uv_check_t *h) {
  ts_server *s = h->data;
  s->turn++; /* a new turn: every connection's budget is whole again */
  serve_backlog(s);
  flush_all(s);
}

/* Before the loop sleeps: flush what timers and write callbacks queued since. */
static void on_prepare(uv_prepare_t *h) { flush_all(h->data); }

static void loop_ready(ts_server *s) {
  if (s->loop_ready) return;
  s->loop_ready = true;
  msgpack_zone_init(&s->zone, MSGPACK_ZONE_CHUNK_SIZE);
  s->turn = 1; /* a new connection's budget_turn is 0: its first pass has a whole budget */
  uv_check_init(s->loop, &s->flush_check);
  uv_prepare_init(s->loop, &s->flush_prepare);
  uv_idle_init(s->loop, &s->backlog_idle);
  s->flush_check.data = s->flush_prepare.data = s->backlog_idle.data = s;
  uv_check_start(&s->flush_check, on_check);
  uv_prepare_start(&s->flush_prepare, on_prepare);
  /* They never keep the loop alive by themselves. */
  uv_unref((uv_handle_t *)&s->flush_check);
  uv_unref((uv_handle_t *)&s->flush_prepare);
  uv_unref((uv_handle_t *)&s->backlog_idle);
}

void ts_conn_loop_close(ts_server *s) {
  if (!s->loop_ready) return;
  s->loop_ready = false;
  uv_close((uv_handle_t *)&s->flush_check, NULL);
  uv_close((uv_handle_t *)&s->flush_prepare, NULL);
  uv_close((uv_handle_t *)&s->backlog_idle, NULL);
  ts_dispatch_free_pool(s);
  msgpack_zone_destroy(&s->zone);
}

void ts_conn_accepted(ts_server *s, ts_conn *c) {
  static uint64_t next_id = 1;
  loop_ready(s);
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
