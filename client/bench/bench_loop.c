/* client/bench/bench_loop.c: the driver: one thread, one epoll set, N non-blocking Unix-socket
 * connections, each keeping D requests in flight. Owned by tessera-bench.
 *
 * The same code drives tesserad and Redis, so a ratio measures the servers, not two clients.
 * Per connection: every reply read frees its slot; then all free slots are refilled in one
 * buffer and sent with one write (pipelining as redis-benchmark does). RPC replies are matched
 * by msgid (the slot number; replies may come in any order, PROTOCOL.md); RESP replies come in
 * order, so its slots are a ring. Latency is send to reply, one clock read per event.
 * Requests answered before the end of the window count; after it nothing new is sent, the ones
 * in flight are drained and not counted. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct conn {
  int fd;
  uint8_t *in;
  size_t in_len, in_cap;
  uint8_t *out;
  size_t out_len, out_off, out_cap;
  double *sent;        /* per slot: when its request went out */
  uint32_t *free_slot; /* RPC: a stack of free slots */
  unsigned n_free;
  unsigned head, in_flight; /* RESP: the ring's oldest slot and its length */
  uint64_t seq;
  bool want_out, done;
} conn;

static int connect_unix(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path)) return -1;
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int conn_init(conn *c, const char *socket, int depth, size_t max_req, uint64_t seq0) {
  memset(c, 0, sizeof(*c));
  c->fd = connect_unix(socket);
  if (c->fd < 0) return -1;
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  c->in_cap = 1 << 16;
  c->out_cap = max_req * (size_t)depth + 64;
  c->in = malloc(c->in_cap);
  c->out = malloc(c->out_cap);
  c->sent = calloc((size_t)depth, sizeof(*c->sent));
  c->free_slot = calloc((size_t)depth, sizeof(*c->free_slot));
  if (!c->in || !c->out || !c->sent || !c->free_slot) return -1;
  for (int i = 0; i < depth; i++) c->free_slot[i] = (uint32_t)(depth - 1 - i);
  c->n_free = (unsigned)depth;
  c->seq = seq0;
  return 0;
}

static void conn_free(conn *c) {
  if (c->fd >= 0) close(c->fd);
  free(c->in);
  free(c->out);
  free(c->sent);
  free(c->free_slot);
}

/* Packs a request into every free slot; the bytes go out with the next flush. */
static void fill(conn *c, const bench_wire *w, int depth, double t) {
  if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
  if (w->proto == BENCH_RPC) {
    while (c->n_free > 0 && c->out_len + w->max_len <= c->out_cap) {
      uint32_t slot = c->free_slot[--c->n_free];
      c->out_len += bench_wire_request(w, c->out + c->out_len, slot, c->seq++);
      c->sent[slot] = t;
    }
  } else {
    while (c->in_flight < (unsigned)depth && c->out_len + w->max_len <= c->out_cap) {
      c->sent[(c->head + c->in_flight) % (unsigned)depth] = t;
      c->in_flight++;
      c->out_len += bench_wire_request(w, c->out + c->out_len, 0, c->seq++);
    }
  }
}

/* Writes what is pending; returns -1 on a broken connection. */
static int flush(conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      return -1;
    }
    c->out_off += (size_t)n;
  }
  c->want_out = c->out_off < c->out_len;
  return 0;
}

static unsigned outstanding(const conn *c, const bench_wire *w, int depth) {
  return w->proto == BENCH_RPC ? (unsigned)depth - c->n_free : c->in_flight;
}

/* Reads once and takes every complete reply; returns -1 on a broken connection. */
static int take_replies(conn *c, const bench_wire *w, int depth, double t, double end,
                        bench_result *r) {
  if (c->in_len == c->in_cap) {
    size_t cap = c->in_cap * 2;
    uint8_t *p = realloc(c->in, cap);
    if (!p) return -1;
    c->in = p;
    c->in_cap = cap;
  }
  ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
  if (n == 0) return -1;
  if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
  c->in_len += (size_t)n;
  size_t off = 0;
  for (;;) {
    uint32_t msgid = 0;
    bool err;
    long len = bench_wire_reply(w, c->in + off, c->in_len - off, &msgid, &err);
    if (len < 0) {
      fprintf(stderr, "tessera-bench: malformed reply\n");
      return -1;
    }
    if (len == 0) break;
    off += (size_t)len;
    double sent;
    if (w->proto == BENCH_RPC) {
      if (msgid >= (uint32_t)depth) return -1;
      sent = c->sent[msgid];
      c->free_slot[c->n_free++] = msgid;
    } else {
      if (c->in_flight == 0) return -1;
      sent = c->sent[c->head];
      c->head = (c->head + 1) % (unsigned)depth;
      c->in_flight--;
    }
    if (t < end) {
      if (err) r->errors++;
      else r->requests++;
      bench_lat_add(&r->lat, (t - sent) * 1e6);
    }
  }
  memmove(c->in, c->in + off, c->in_len - off);
  c->in_len -= off;
  return 0;
}

int bench_loop_run(const bench_loop_cfg *cfg, const bench_wire *w, bench_result *r) {
  int n = cfg->conns, depth = cfg->depth;
  conn *cs = calloc((size_t)n, sizeof(*cs));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int rc = cs && ep >= 0 ? 0 : -1;
  for (int i = 0; i < n && rc == 0; i++) {
    cs[i].fd = -1;
    if (conn_init(&cs[i], cfg->socket, depth, w->max_len, (uint64_t)i * 7919) != 0) {
      fprintf(stderr, "tessera-bench: cannot connect to %s\n", cfg->socket);
      rc = -1;
      break;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
  }
  double start = bench_now(), end = start + cfg->seconds;
  int active = rc == 0 ? n : 0;
  for (int i = 0; i < active; i++) {
    fill(&cs[i], w, depth, start);
    if (flush(&cs[i]) != 0) rc = -1;
  }
  struct epoll_event evs[256];
  while (rc == 0 && active > 0) {
    int k = epoll_wait(ep, evs, 256, 100);
    if (k < 0 && errno != EINTR) rc = -1;
    double t = bench_now();
    if (t > end + 30) {
      fprintf(stderr, "tessera-bench: replies still missing 30 s after the end\n");
      rc = -1;
    }
    for (int e = 0; e < k && rc == 0; e++) {
      conn *c = evs[e].data.ptr;
      if (c->done) continue;
      if (evs[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        t = bench_now();
        if (take_replies(c, w, depth, t, end, r) != 0) {
          fprintf(stderr, "tessera-bench: connection lost\n");
          rc = -1;
          break;
        }
        if (t < end) fill(c, w, depth, t);
      }
      if (flush(c) != 0) {
        rc = -1;
        break;
      }
      if (t >= end && outstanding(c, w, depth) == 0) {
        c->done = true;
        active--;
        continue;
      }
      struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.ptr = c};
      epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
  }
  r->seconds = cfg->seconds;
  for (int i = 0; cs && i < n; i++) conn_free(&cs[i]);
  free(cs);
  if (ep >= 0) close(ep);
  return rc;
}

long bench_loop_once(const char *socket, const bench_wire *w, uint64_t count, int depth) {
  conn c;
  long errors = 0;
  if (conn_init(&c, socket, depth, w->max_len, 0) != 0) {
    conn_free(&c);
    return -1;
  }
  bench_result r = {0};
  uint64_t sent = 0, got = 0;
  int rc = 0;
  while (rc == 0 && got < count) {
    if (sent < count && outstanding(&c, w, depth) < (unsigned)depth) {
      /* fill only what is left to send */
      unsigned room = (unsigned)depth - outstanding(&c, w, depth);
      if (room > count - sent) room = (unsigned)(count - sent);
      if (c.out_off == c.out_len) c.out_off = c.out_len = 0;
      for (unsigned i = 0; i < room; i++) {
        if (w->proto == BENCH_RPC) {
          uint32_t slot = c.free_slot[--c.n_free];
          c.out_len += bench_wire_request(w, c.out + c.out_len, slot, c.seq++);
        } else {
          c.in_flight++;
          c.out_len += bench_wire_request(w, c.out + c.out_len, 0, c.seq++);
        }
      }
      sent += room;
    }
    fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) & ~O_NONBLOCK);
    if (flush(&c) != 0) rc = -1;
    uint64_t before = r.requests + r.errors;
    if (rc == 0 && take_replies(&c, w, depth, 0, 1, &r) != 0) rc = -1;
    got += r.requests + r.errors - before;
  }
  errors = rc == 0 ? (long)r.errors : -1;
  bench_lat_free(&r.lat);
  conn_free(&c);
  return errors;
}
