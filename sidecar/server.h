/* sidecar/server.h: the loop thread's world: listener, connections, requests.
 *
 * Threads: everything here runs on the libuv loop thread. Other threads (writer, sweeper)
 * reach it only through uv_async_send; they never touch a ts_conn or ts_req.
 *
 * Lifetimes:
 *   - A ts_conn lives from accept until it is closed AND every request it started has
 *     finished (conn->in_flight == 0). A request finishing on a closed connection frees
 *     itself without writing.
 *   - A ts_req lives from dispatch until its reply was written (or dropped). Its handler must
 *     call exactly one of ts_req_send (after packing a result) or ts_req_fail, now or later.
 *
 * Backpressure: a connection stops reading while it has max_inflight requests unfinished
 * (dispatched, their reply not yet written: in flight, queued, or being written) or more than max_write_queue bytes waiting to be written
 * (buffered replies and writes in flight); messages already in its buffer wait there. Reading
 * resumes when both drain.
 *
 * Writes (issue 11): a reply is appended to its connection's output buffer (ts_conn_queue),
 * and the connection goes on the server's dirty list; before the loop sleeps (a uv_check
 * after the poll phase, a uv_prepare before it) every dirty connection is flushed with one
 * write, whatever produced its replies (a read batch, a writer commit, a backend callback).
 * A subscriber's replies are flushed at once, so they keep their place among the feed's
 * notifications (events.c writes those directly).
 *
 * Fairness: a connection dispatches at most TS_CONN_BUDGET messages per loop turn (the turn
 * counter moves at each check phase), however many reads the poll phase gives it; a
 * connection with more waiting stops reading and goes on the server's backlog list, served
 * again with a whole budget after the other connections' I/O of this loop turn (an idle
 * handle keeps the loop from sleeping meanwhile). */
#ifndef TS_SERVER_H
#define TS_SERVER_H

#include "backend.h"
#include "config.h"
#include "scan.h"
#include "stats.h"

#include <msgpack.h>
#include <stdbool.h>
#include <uv.h>

/* Messages one connection may dispatch per loop turn before the others get theirs. */
#define TS_CONN_BUDGET 32

typedef struct ts_server ts_server;
typedef struct ts_conn ts_conn;
typedef struct ts_req ts_req;
struct ts_method;
struct ts_domain; /* store, writer, keys: owned by main, used by the method handlers */

struct ts_server {
  uv_loop_t *loop;
  const ts_config *cfg;
  struct ts_domain *domain;
  uv_pipe_t listener;
  uv_signal_t sig_term, sig_int, sig_hup;
  uv_timer_t drain_timer;
  ts_conn *conns; /* doubly linked list of open connections */
  unsigned n_conns;
  bool listening;
  bool accept_pending; /* a connection waits in libuv while we are at max_connections */
  bool draining;       /* SIGTERM seen: finish what was read, then stop */
  uint64_t started_ms; /* uv_now at start */
  ts_stats stats;
  ts_conn *dirty;   /* connections with buffered replies to flush before the loop sleeps */
  ts_conn *backlog; /* connections with messages left over from their budget (FIFO) */
  ts_conn *backlog_tail;
  uint64_t turn;    /* loop turns, counted at each check phase: the budget's period */
  uv_check_t flush_check;     /* after the poll phase: serve the backlog, flush */
  uv_prepare_t flush_prepare; /* before the loop sleeps: flush what timers/callbacks wrote */
  uv_idle_t backlog_idle;     /* active while the backlog is not empty: the loop never sleeps */
  ts_req *free_reqs;          /* finished requests kept for reuse (dispatch.c) */
  unsigned n_free_reqs;
  msgpack_zone zone;          /* the unpacked request's objects; cleared after each dispatch */
  bool loop_ready;            /* the three handles and the zone exist (first accept) */
  void (*on_drained)(ts_server *s); /* called once every connection is gone while draining */
  void (*on_reload)(ts_server *s);  /* SIGHUP */
  void (*on_drain)(ts_server *s);   /* draining begins: other doors (the HTTP edge) stop too */
  struct ts_internal *internal;     /* internal calls (internal.c), or NULL */
};

struct ts_conn {
  uv_pipe_t pipe; /* first: the handle's address is the connection's */
  ts_server *server;
  ts_conn *prev, *next;
  uint8_t *buf;   /* bytes read and not yet dispatched; [0, used) */
  size_t cap, used;
  ts_scan scan;   /* pre-scan state of the message starting at buf[0] */
  uv_timer_t message_timer;
  unsigned in_flight; /* requests dispatched whose reply is not yet queued */
  uint8_t *out;       /* replies queued and not yet handed to the socket; [0, out_len) */
  size_t out_len, out_cap;
  unsigned writes_out; /* uv_writes of ours in flight */
  unsigned out_replies, unwritten; /* replies in out; replies in out or in writes_out */
  ts_conn *dirty_next, *backlog_next;
  bool dirty, backlogged, in_process, pressed; /* pressed: reading paused by backpressure */
  uint64_t msg_since; /* uv_now when the incomplete message at buf[0] began */
  uint64_t budget_turn; /* the server turn budget_left belongs to */
  unsigned budget_left; /* messages it may still dispatch in that turn */
  bool reading, eof, closing, paused;
  unsigned handles_open; /* pipe + timer, to free the conn after both close callbacks */
  uint32_t uid, gid;
  int32_t pid;
  uint64_t id;   /* for logs */
  bool admin;    /* peer uid is an admin uid */
  bool subscribed; /* events.subscribe */
  bool internal;   /* the pseudo-connection of internal calls (internal.c): no socket */
  bool feed_held;  /* events.c: its feed waits for the write queue to drain */
  bool feed_reading, feed_again, feed_in_call; /* events.c: a feed read is out, ... */
  ts_feed_pos feed_sent; /* events.c: the last feed position sent (or skipped) */
};

struct ts_req {
  ts_req *next_free; /* on the server's free list */
  ts_conn *conn;
  const struct ts_method *method;
  uint32_t msgid;
  msgpack_sbuffer out; /* the whole reply, head first */
  msgpack_packer pk;
  size_t head_len;     /* bytes of [1, msgid, ...] head in out */
  void *data;          /* for the handler: state across an asynchronous completion */
  /* observe.c: metrics and the audit line of the reply */
  size_t method_index; /* the row's place in methods/list.c, once method is set */
  int err;             /* the error replied (TS_E*), 0 for a result */
  uint64_t started_ns; /* uv_hrtime at dispatch */
  void *audit;         /* observe.c: what the request said that its audit line names */
};

/* Binds, listens and installs signal handlers. Returns 0 or TS_E* (logged). */
int ts_server_start(ts_server *s, uv_loop_t *loop, const ts_config *cfg, struct ts_domain *d);
/* Begins a graceful stop (what SIGTERM does). */
void ts_server_drain(ts_server *s);

/* conn.c */
void ts_conn_accepted(ts_server *s, ts_conn *c);
void ts_conn_close(ts_conn *c, const char *why);
void ts_conn_request_done(ts_conn *c);
void ts_conn_wrote(ts_conn *c);
/* Appends a reply's bytes to c's output (flushed before the loop sleeps). 0 or TS_ENOMEM. */
int ts_conn_queue(ts_conn *c, const void *bytes, size_t n);
/* The request path's loop handles and zone: made at the first accept, closed (with the
 * request pool) once the server drained. */
void ts_conn_loop_close(ts_server *s);
/* events.c: a feed read of c came back; frees c if it was closed meanwhile and is done. */
void ts_conn_feed_read_done(ts_conn *c);
void ts_conn_start_drain(ts_conn *c);

/* Called by conn.c when a connection is fully gone (server.c). */
void ts_server_conn_gone(ts_server *s, ts_conn *c);

/* Replies (dispatch.c). */
/* The packer for the result: pack exactly one object (usually a map) then call ts_req_send. */
msgpack_packer *ts_req_result(ts_req *r);
/* Writes the reply packed so far and finishes the request. */
void ts_req_send(ts_req *r);
/* Replies with an error (discarding any result packed) and finishes the request. detail is a
 * human message (NULL: the code's default); it must never hold a secret. */
void ts_req_fail(ts_req *r, int err, const char *detail);
void ts_req_failf(ts_req *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Replies {key: n}, or the error when err is not 0 (the shape of every revoke method). */
void ts_req_reply_count(ts_req *r, int err, const char *key, uint64_t n);

/* Decodes and dispatches one complete message (dispatch.c). Returns 0, or TS_E* when the
 * connection must be closed. */
int ts_dispatch_message(ts_conn *c, const uint8_t *msg, size_t len);
/* Frees the requests kept for reuse (dispatch.c). */
void ts_dispatch_free_pool(ts_server *s);

/* sd_notify-style readiness/state message to $NOTIFY_SOCKET, if set (server.c). */
void ts_notify(const char *state);

#endif
