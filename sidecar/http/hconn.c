/* sidecar/http/hconn.c: an HTTP connection's life (see hconn.h).
 *
 * Owner: the HTTP edge. The loop: on_read appends to `in`, process() feeds the parser while no
 * request is being answered; a complete request goes to the router; ts_hconn_send writes the
 * answer, at once when the socket takes it all (uv_try_write; process() then goes straight on
 * to the next request) or through uv_write, whose on_written resumes the parser
 * (ts_hparse_next) and process() with the bytes left. Input bytes handed to the parser are wiped (they may be cookies or tokens), and so is
 * each response after it was written. */
#include "hconn.h"

#include "log.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IN_CAP 16384

static void process(ts_hconn *c);
static void reading(ts_hconn *c);

static void conn_free(ts_hconn *c) {
  ts_http *h = c->http;
  if (c->prev) c->prev->next = c->next;
  else h->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  h->n_conns--;
  ts_hparse_free(&c->parse);
  if (c->in) sodium_memzero(c->in, c->in_cap);
  free(c->in);
  ts_hbuf_free_wipe(&c->out);
  free(c);
  ts_http_conn_gone(h);
}

static void on_closed(uv_handle_t *hd) {
  ts_hconn *c = hd->data;
  if (--c->handles_open > 0 || c->pending > 0) return;
  conn_free(c);
}

void ts_hconn_close(ts_hconn *c, const char *why) {
  if (c->closing) return;
  c->closing = true;
  ts_log(TS_LOG_DEBUG, "http connection closed", "{s:I, s:s}", "conn", (json_int_t)c->id, "why",
         why);
  uv_timer_stop(&c->timer);
  uv_close(&c->h.handle, on_closed);
  uv_close((uv_handle_t *)&c->timer, on_closed);
}

void ts_hconn_call_done(ts_hconn *c) {
  c->pending--;
  if (c->closing && c->pending == 0 && c->handles_open == 0) conn_free(c);
}

static void on_timeout(uv_timer_t *t) {
  ts_hconn *c = t->data;
  if (c->timer_mode == 2) { /* a request did not complete in time: tell, then close */
    c->timer_mode = 0;
    c->http->closed_timeout++;
    c->close_after = true;
    c->busy = true;
    c->head = false;
    ts_hconn_send(c, 408, NULL, "request timeout\n", 16);
    return;
  }
  ts_hconn_close(c, "idle");
}

static void set_timer(ts_hconn *c, int mode) {
  if (c->timer_mode == mode) return;
  c->timer_mode = mode;
  uv_timer_stop(&c->timer);
  const ts_config *cfg = c->http->cfg;
  if (mode == 1) uv_timer_start(&c->timer, on_timeout, (uint64_t)cfg->http_idle_timeout_ms, 0);
  if (mode == 2) uv_timer_start(&c->timer, on_timeout, (uint64_t)cfg->message_timeout_ms, 0);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *out) {
  (void)suggested;
  ts_hconn *c = hd->data;
  *out = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_cap - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  ts_hconn *c = s->data;
  if (n == 0) return;
  if (n < 0) {
    /* EOF: a request being answered still gets its answer written if the peer reads */
    if (n == UV_EOF && c->busy) {
      c->close_after = true;
      reading(c);
      return;
    }
    ts_hconn_close(c, n == UV_EOF ? "eof" : uv_strerror((int)n));
    return;
  }
  c->in_len += (size_t)n;
  process(c);
}

static void start_read(ts_hconn *c) {
  if (c->reading || c->closing) return;
  c->reading = true;
  uv_read_start(&c->h.stream, on_alloc, on_read);
}

static void reading(ts_hconn *c) {
  bool want = !c->closing && !c->close_after && c->in_len < c->in_cap;
  if (want && !c->reading) start_read(c);
  else if (!want && c->reading) {
    uv_read_stop(&c->h.stream);
    c->reading = false;
  }
}

static void fail(ts_hconn *c, int status) {
  static const char *const bodies[] = {"bad request\n", "request header fields too large\n",
                                       "no request body is accepted\n",
                                       "HTTP/1.x only\n"};
  const char *body = status == 431 ? bodies[1] : status == 413 ? bodies[2]
                     : status == 505 ? bodies[3] : bodies[0];
  c->http->closed_bad++;
  set_timer(c, 0); /* no timeout may answer a second time while this answer is written */
  c->close_after = true;
  c->busy = true;
  c->head = false;
  ts_hconn_send(c, status, NULL, body, strlen(body));
}

/* The answer was written: forget the request, or close when it was the last. */
static void finish(ts_hconn *c, int status) {
  ts_hbuf_reset_wipe(&c->out);
  if (status != 0 || c->close_after) {
    ts_hconn_close(c, status ? "write failed" : "done");
    return;
  }
  c->busy = false;
  ts_hparse_next(&c->parse);
}

static void process(ts_hconn *c) {
  c->in_process = true;
  while (!c->closing && !c->busy && !c->close_after) {
    size_t used = 0;
    int rc = ts_hparse_feed(&c->parse, c->in, c->in_len, &used);
    if (used) { /* consumed bytes are in the arena now: wipe them here */
      memmove(c->in, c->in + used, c->in_len - used);
      sodium_memzero(c->in + c->in_len - used, used);
      c->in_len -= used;
    }
    if (rc == TS_HP_ERROR) {
      c->sync_done = false;
      fail(c, c->parse.status);
      if (c->sync_done) finish(c, 0);
      c->in_process = false;
      return;
    }
    if (rc == TS_HP_MORE) break;
    /* a complete request */
    c->http->requests++;
    c->requests++;
    c->busy = true;
    set_timer(c, 0);
    const ts_hreq *r = &c->parse.req;
    c->head = r->method == HTTP_HEAD;
    if (!r->keep_alive || r->upgrade || c->requests >= c->http->cfg->http_max_requests ||
        c->http->draining) {
      if (c->requests >= c->http->cfg->http_max_requests) c->http->closed_limit++;
      c->close_after = true;
    }
    c->sync_done = false;
    ts_http_route(c);
    if (!c->sync_done) { /* answered later, or still being written: on_written goes on */
      c->in_process = false;
      return;
    }
    finish(c, 0); /* written at once: the next request, without a trip through the loop */
  }
  c->in_process = false;
  if (c->closing || c->busy) return;
  set_timer(c, c->parse.started || c->in_len > 0 ? 2 : 1);
  reading(c);
}

static void on_written(uv_write_t *w, int status) {
  ts_hconn *c = w->data;
  finish(c, status);
  if (!c->closing) process(c);
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

/* "Date: ..." of this second, made once a second. */
static const char *date_line(void) {
  static time_t last;
  static char line[64];
  time_t now = time(NULL);
  if (now != last) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(line, sizeof(line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    last = now;
  }
  return line;
}

void ts_hconn_send(ts_hconn *c, int status, const ts_hbuf *headers, const char *body,
                   size_t body_len) {
  if (c->closing) return;
  ts_hbuf *o = &c->out;
  ts_hbuf_printf(o, "HTTP/1.1 %d %s\r\n", status, reason(status));
  ts_hbuf_str(o, date_line());
  if (status != 304) ts_hbuf_printf(o, "Content-Length: %zu\r\n", body_len);
  if (c->close_after) ts_hbuf_str(o, "Connection: close\r\n");
  else if (c->parse.req.minor == 0) ts_hbuf_str(o, "Connection: keep-alive\r\n");
  if (headers && headers->len) ts_hbuf_add(o, headers->p, headers->len);
  ts_hbuf_str(o, "\r\n");
  if (!c->head && status != 304 && body_len) ts_hbuf_add(o, body, body_len);
  if (o->oom) {
    ts_hconn_close(c, "out of memory");
    return;
  }
  /* Most answers fit the socket buffer: written now, with no write request, no callback and
   * no epoll change; the rest (a slow reader) goes through uv_write. */
  uv_buf_t b = uv_buf_init(o->p, (unsigned)o->len);
  int n = uv_try_write(&c->h.stream, &b, 1);
  if (n == (int)o->len) {
    if (c->in_process) {
      c->sync_done = true;
    } else {
      finish(c, 0);
      if (!c->closing) process(c);
    }
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    ts_hconn_close(c, "write failed");
    return;
  }
  if (n > 0) b = uv_buf_init(o->p + n, (unsigned)(o->len - (size_t)n));
  c->wr.data = c;
  if (uv_write(&c->wr, &c->h.stream, &b, 1, on_written) != 0) ts_hconn_close(c, "write failed");
}

void ts_hconn_start(ts_hconn *c) {
  static uint64_t next_id = 1;
  c->id = next_id++;
  c->h.handle.data = c;
  uv_timer_init(c->http->loop, &c->timer);
  c->timer.data = c;
  c->handles_open = 2;
  c->in_cap = IN_CAP;
  c->in = malloc(c->in_cap);
  if (!c->in || ts_hparse_init(&c->parse, c->http->cfg->http_max_header) != 0) {
    ts_hconn_close(c, "out of memory");
    return;
  }
  set_timer(c, 1);
  reading(c);
}
