/* sidecar/http/listener.c: --http-listen: bind, accept, the trusted-proxy check, drain.
 *
 * Owner: the HTTP edge. ADDR is HOST:PORT ([v6]:PORT for IPv6; HOST resolved once at start)
 * or unix:PATH (a stale socket file is replaced; the socket is 0660 like the admin one). The
 * connection cap is --max-connections, counted apart from the Unix socket's: at the cap we do
 * not accept, and clients wait in the backlog. A TCP peer inside --http-trusted-proxies (or
 * any peer of a unix: listener) may tell the original request (X-Forwarded-*, X-Original-*).
 * Draining (SIGTERM): the listener closes, idle connections close, a request being answered
 * finishes with Connection: close. */
#include "hconn.h"

#include "error.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ts_http_parse_cidrs(const char *list, ts_cidr *out, size_t max) {
  char buf[1024];
  if (snprintf(buf, sizeof(buf), "%s", list) >= (int)sizeof(buf)) return -1;
  size_t n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    if (n == max) return -1;
    ts_cidr *c = &out[n];
    char *slash = strchr(tok, '/');
    if (slash) *slash = 0;
    if (inet_pton(AF_INET, tok, c->addr) == 1) c->family = AF_INET;
    else if (inet_pton(AF_INET6, tok, c->addr) == 1) c->family = AF_INET6;
    else return -1;
    unsigned max_prefix = c->family == AF_INET ? 32 : 128;
    c->prefix = max_prefix;
    if (slash) {
      char *end;
      unsigned long p = strtoul(slash + 1, &end, 10);
      if (*end || end == slash + 1 || p > max_prefix) return -1;
      c->prefix = (unsigned)p;
    }
    n++;
  }
  return (int)n;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits) {
  unsigned bytes = bits / 8, rest = bits % 8;
  if (memcmp(a, b, bytes) != 0) return false;
  if (!rest) return true;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (a[bytes] & mask) == (b[bytes] & mask);
}

bool ts_http_cidr_match(const ts_cidr *list, size_t n, const struct sockaddr *sa) {
  uint8_t v4[4], v6[16];
  bool has4 = false, has6 = false;
  if (sa->sa_family == AF_INET) {
    memcpy(v4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    has4 = true;
  } else if (sa->sa_family == AF_INET6) {
    memcpy(v6, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    has6 = true;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(v6, mapped, 12) == 0) { /* ::ffff:a.b.c.d is a.b.c.d */
      memcpy(v4, v6 + 12, 4);
      has4 = true;
    }
  }
  for (size_t i = 0; i < n; i++) {
    if (list[i].family == AF_INET && has4 && prefix_eq(list[i].addr, v4, list[i].prefix))
      return true;
    if (list[i].family == AF_INET6 && has6 && prefix_eq(list[i].addr, v6, list[i].prefix))
      return true;
  }
  return false;
}

static void on_reject_closed(uv_handle_t *hd) { free(hd->data); }

static void accept_one(ts_http *h) {
  h->accept_pending = false;
  ts_hconn *c = calloc(1, sizeof(*c));
  if (!c) return;
  c->http = h;
  c->h.handle.data = c;
  int rc = h->is_unix ? uv_pipe_init(h->loop, &c->h.pipe, 0) : uv_tcp_init(h->loop, &c->h.tcp);
  if (rc != 0) {
    free(c);
    return;
  }
  if (uv_accept(&h->listener.stream, &c->h.stream) != 0) {
    uv_close(&c->h.handle, on_reject_closed);
    return;
  }
  if (h->is_unix) {
    c->trusted = true;
  } else {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
      c->trusted = ts_http_cidr_match(h->proxies, h->n_proxies, (struct sockaddr *)&ss);
      if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer_ip, sizeof(c->peer_ip));
      else
        uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer_ip, sizeof(c->peer_ip));
    }
    uv_tcp_nodelay(&c->h.tcp, 1);
  }
  c->next = h->conns;
  if (h->conns) h->conns->prev = c;
  h->conns = c;
  h->n_conns++;
  h->accepted++;
  ts_hconn_start(c);
}

static void on_connection(uv_stream_t *l, int status) {
  ts_http *h = l->data;
  if (status < 0) {
    ts_log(TS_LOG_WARN, "http accept failed", "{s:s}", "error", uv_strerror(status));
    return;
  }
  if (h->n_conns >= h->cfg->max_connections) {
    h->accept_pending = true;
    return;
  }
  accept_one(h);
}

void ts_http_conn_gone(ts_http *h) {
  if (h->accept_pending && h->on && !h->draining) accept_one(h);
}

static int bind_unix(ts_http *h, const char *path) {
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      ts_log(TS_LOG_ERROR, "--http-listen path exists and is not a socket", "{s:s}", "path", path);
      return TS_ECONFIG;
    }
    unlink(path);
  }
  h->is_unix = true;
  if (uv_pipe_init(h->loop, &h->listener.pipe, 0) != 0) return TS_EINTERNAL;
  mode_t old = umask(0117);
  int rc = uv_pipe_bind(&h->listener.pipe, path);
  umask(old);
  return rc;
}

static int bind_tcp(ts_http *h, const char *addr) {
  char host[256];
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || !colon[1]) return UV_EINVAL;
  size_t hl = (size_t)(colon - addr);
  if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') { /* [v6]:port */
    addr++;
    hl -= 2;
  }
  if (hl >= sizeof(host)) return UV_EINVAL;
  memcpy(host, addr, hl);
  host[hl] = 0;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV};
  uv_getaddrinfo_t req;
  int rc = uv_getaddrinfo(h->loop, &req, NULL, host, colon + 1, &hints);
  if (rc != 0) return rc;
  rc = uv_tcp_init(h->loop, &h->listener.tcp);
  if (rc == 0) rc = uv_tcp_bind(&h->listener.tcp, req.addrinfo->ai_addr, 0);
  uv_freeaddrinfo(req.addrinfo);
  return rc;
}

int ts_http_start(ts_http *h, ts_server *s) {
  memset(h, 0, sizeof(*h));
  h->server = s;
  h->cfg = s->cfg;
  h->loop = s->loop;
  const char *addr = s->cfg->http_listen;
  if (!addr || !*addr) return 0;
  int n = ts_http_parse_cidrs(s->cfg->http_trusted_proxies, h->proxies, TS_HTTP_MAX_PROXIES);
  if (n < 0) {
    ts_log(TS_LOG_ERROR, "--http-trusted-proxies: not a list of CIDRs", "{s:s}", "value",
           s->cfg->http_trusted_proxies);
    return TS_ECONFIG;
  }
  h->n_proxies = (size_t)n;
  int rc = strncmp(addr, "unix:", 5) == 0 ? bind_unix(h, addr + 5) : bind_tcp(h, addr);
  h->listener.handle.data = h;
  if (rc == 0) rc = uv_listen(&h->listener.stream, 511, on_connection);
  if (rc == 0 && h->is_unix) rc = chmod(addr + 5, 0660) == 0 ? 0 : -errno;
  if (rc != 0) {
    ts_log(TS_LOG_ERROR, "cannot listen for HTTP", "{s:s, s:s}", "http_listen", addr, "error",
           uv_strerror(rc));
    if (h->listener.handle.type != UV_UNKNOWN_HANDLE) uv_close(&h->listener.handle, NULL);
    return TS_ECONFIG;
  }
  h->on = true;
  ts_log(TS_LOG_INFO, "listening for HTTP", "{s:s}", "http_listen", addr);
  return 0;
}

void ts_http_drain(ts_http *h) {
  if (!h->on || h->draining) return;
  h->draining = true;
  uv_close(&h->listener.handle, NULL);
  for (ts_hconn *c = h->conns, *next; c; c = next) {
    next = c->next;
    if (c->busy) c->close_after = true; /* its answer says Connection: close */
    else ts_hconn_close(c, "draining");
  }
  free(h->jwks_body);
  h->jwks_body = NULL;
}
