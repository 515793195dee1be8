/* sidecar/http/router.c: which handler answers a request.
 *
 * Owner: the HTTP edge. /auth and /auth/<anything> (Envoy's path_prefix puts the original
 * path after it) take any method; the other routes GET and HEAD only (405 with Allow). The
 * request target must be origin-form ("/..."); anything else (absolute-form, CONNECT's
 * authority-form, "*") is 400. Unknown paths are 404. */
#include "hconn.h"

#include <string.h>

static bool path_is(const char *p, size_t n, const char *want) {
  return n == strlen(want) && memcmp(p, want, n) == 0;
}

void ts_http_route(ts_hconn *c) {
  const ts_hreq *r = ts_hconn_req(c);
  size_t ul;
  const char *url = ts_hreq_url(r, &ul);
  if (ul == 0 || url[0] != '/') {
    c->close_after = true;
    ts_hconn_send(c, 400, NULL, "bad request target\n", 19);
    return;
  }
  const char *q = memchr(url, '?', ul);
  size_t pl = q ? (size_t)(q - url) : ul;
  if (pl >= 5 && memcmp(url, "/auth", 5) == 0 && (pl == 5 || url[5] == '/')) {
    ts_http_forward_auth(c, 5);
    return;
  }
  void (*handler)(ts_hconn *) = NULL;
  if (path_is(url, pl, "/.well-known/jwks.json")) handler = ts_http_jwks;
  else if (path_is(url, pl, "/metrics")) handler = ts_http_metrics;
  else if (path_is(url, pl, "/healthz")) handler = ts_http_healthz;
  else if (path_is(url, pl, "/readyz")) handler = ts_http_readyz;
  if (!handler) {
    ts_hconn_send(c, 404, NULL, "not found\n", 10);
    return;
  }
  if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
    ts_hbuf hd = {0};
    ts_hbuf_str(&hd, "Allow: GET, HEAD\r\n");
    ts_hconn_send(c, 405, &hd, "method not allowed\n", 19);
    ts_hbuf_free(&hd);
    return;
  }
  handler(c);
}
