/* sidecar/http/hconn.h: one HTTP connection: read, parse, route, answer, keep-alive, limits.
 *
 * Owner: the HTTP edge. Limits, each closing this connection only:
 *   - request line + headers: --http-max-header (431, then close);
 *   - time from a request's first byte to its end: --message-timeout (408, then close:
 *     slowloris);
 *   - time with no request started on a kept-alive connection: --http-idle-timeout (close);
 *   - requests per connection: --http-max-requests (the last answer says Connection: close);
 *   - a body, a bad request line or header, an HTTP major version other than 1: 413/400/505
 *     and close (request.c).
 * One request at a time: the parser pauses after each; bytes after it (pipelining) wait in
 * the input buffer, and reading stops while that buffer is full.
 * Lifetime: the connection is freed once its handles are closed and no internal call it made
 * is pending (pending counts them); a handler finishing on a closed connection answers
 * nothing (ts_hconn_send drops the response). */
#ifndef TS_HTTP_HCONN_H
#define TS_HTTP_HCONN_H

#include "hbuf.h"
#include "http.h"
#include "request.h"

struct ts_hconn {
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
  } h;
  ts_http *http;
  ts_hconn *prev, *next;
  ts_hparse parse;
  char *in;           /* bytes read, not yet given to the parser */
  size_t in_len, in_cap;
  uv_timer_t timer;   /* idle or request timeout */
  int timer_mode;     /* 0 off, 1 idle, 2 request */
  uv_write_t wr;
  ts_hbuf out;        /* the response being written (may hold a Set-Cookie: wiped) */
  unsigned requests;  /* requests started on this connection */
  unsigned handles_open;
  unsigned pending;   /* internal calls not yet answered */
  bool busy;          /* a request is being answered */
  bool in_process;    /* process() is on the stack: an answer written at once is finished there */
  bool sync_done;     /* the answer was written at once (uv_try_write took it all) */
  bool closing, reading, close_after, head;
  bool trusted;       /* the peer may set X-Forwarded-* / X-Original-* */
  char peer_ip[48];   /* "" on a unix: listener */
  uint64_t id;
};

/* listener.c calls this for an accepted connection (h.stream accepted, peer filled). */
void ts_hconn_start(ts_hconn *c);
void ts_hconn_close(ts_hconn *c, const char *why);
/* Answers the current request: status, extra header lines ("Name: value\r\n" each, may be
 * NULL), body (ignored for HEAD; Content-Length is set either way). Wipes and frees nothing of
 * the caller's. On a closed connection, drops it. */
void ts_hconn_send(ts_hconn *c, int status, const ts_hbuf *headers, const char *body,
                   size_t body_len);
/* The request being answered. */
static inline const ts_hreq *ts_hconn_req(const ts_hconn *c) { return &c->parse.req; }

/* An internal call made for c finished (c->pending was raised when it started). */
void ts_hconn_call_done(ts_hconn *c);
/* listener.c: a connection was freed. */
void ts_http_conn_gone(ts_http *h);

/* router.c */
void ts_http_route(ts_hconn *c);
/* The handlers (one file each). */
void ts_http_forward_auth(ts_hconn *c, size_t prefix_len);
void ts_http_jwks(ts_hconn *c);
void ts_http_metrics(ts_hconn *c);
void ts_http_healthz(ts_hconn *c);
void ts_http_readyz(ts_hconn *c);

#endif
