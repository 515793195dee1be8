/* sidecar/http/http.h: the HTTP edge: an HTTP/1.1 listener on the daemon's loop.
 *
 * Owner: the HTTP edge (issue 13; proto/HTTP.md is its contract). Off unless --http-listen.
 * Routes (router.c): /auth[/...] forward-auth (forward_auth.c), /.well-known/jwks.json
 * (jwks.c), /metrics (metrics.c), /healthz and /readyz (health.c). Nothing else: the HTTP door
 * reaches no method that changes state but the session sliding that validate does anyway and
 * the cookie renewal of forward-auth. Everything runs on the loop thread; forward-auth reaches
 * sessions and tokens only through internal calls (sidecar/internal.h). */
#ifndef TS_HTTP_H
#define TS_HTTP_H

#include "server.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define TS_HTTP_MAX_PROXIES 16

typedef struct ts_cidr {
  int family; /* AF_INET or AF_INET6 */
  uint8_t addr[16];
  unsigned prefix;
} ts_cidr;

enum { TS_FA_ALLOW, TS_FA_DENY, TS_FA_REDIRECT, TS_FA_ERROR, TS_FA_N };

typedef struct ts_hconn ts_hconn;

typedef struct ts_http {
  ts_server *server;
  const ts_config *cfg;
  uv_loop_t *loop;
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_stream_t stream;
    uv_handle_t handle;
  } listener;
  bool on;          /* --http-listen given and listening */
  bool is_unix;
  bool draining;
  bool accept_pending;
  ts_hconn *conns;  /* open connections */
  unsigned n_conns;
  size_t n_proxies;
  ts_cidr proxies[TS_HTTP_MAX_PROXIES];
  /* counters for /metrics */
  uint64_t accepted, requests, closed_limit, closed_timeout, closed_bad;
  uint64_t forward_auth[TS_FA_N];
  /* /readyz: the store's commit counters at the last probe */
  uint64_t ready_commits, ready_failed;
  /* jwks.c: the body for keys_version jwks_version */
  char *jwks_body;
  size_t jwks_len;
  int64_t jwks_version;
} ts_http;

/* Listens on --http-listen (nothing when it is empty). Returns 0 or TS_ECONFIG (logged). */
int ts_http_start(ts_http *h, ts_server *s);
/* Stops accepting, closes idle connections, lets busy ones finish their response. */
void ts_http_drain(ts_http *h);

/* Parses "a.b.c.d/n,x::y/n,..." (a bare address is /32 or /128). Returns the count or -1. */
int ts_http_parse_cidrs(const char *list, ts_cidr *out, size_t max);
/* Whether the address (sockaddr_in/in6) is inside one of the CIDRs. */
bool ts_http_cidr_match(const ts_cidr *list, size_t n, const struct sockaddr *sa);

#endif
