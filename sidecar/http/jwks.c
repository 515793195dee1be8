/* sidecar/http/jwks.c: GET /.well-known/jwks.json, the public keys for remote verifiers.
 *
 * Owner: the HTTP edge. The same set as keys.jwks (the keyring's published keys; keys.c is no
 * storage code). The body is made once per keys_version and kept; ETag is "<keys_version>",
 * If-None-Match with it (or *, or a list holding it, weak or strong) answers 304.
 * Cache-Control: public, max-age=--jwks-max-age. */
#include "hconn.h"

#include "domain.h"
#include "keyring.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether the If-None-Match list v matches etag (quoted). */
static bool etag_matches(const char *v, size_t n, const char *etag) {
  size_t el = strlen(etag);
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == ',' || v[i] == '\t')) i++;
    if (i < n && v[i] == '*') return true;
    if (i + 2 <= n && v[i] == 'W' && v[i + 1] == '/') i += 2;
    size_t start = i;
    while (i < n && v[i] != ',') i++;
    size_t end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
    if (end - start == el && memcmp(v + start, etag, el) == 0) return true;
  }
  return false;
}

void ts_http_jwks(ts_hconn *c) {
  ts_http *h = c->http;
  ts_domain *d = h->server->domain;
  if (!h->jwks_body || h->jwks_version != d->keys.version) {
    json_t *set = NULL;
    if (ts_keyring_jwks(d->keys.ring, &set) != 0) {
      ts_hconn_send(c, 500, NULL, "internal error\n", 15);
      return;
    }
    char *body = json_dumps(set, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(set);
    if (!body) {
      ts_hconn_send(c, 500, NULL, "internal error\n", 15);
      return;
    }
    free(h->jwks_body);
    h->jwks_body = body;
    h->jwks_len = strlen(body);
    h->jwks_version = d->keys.version;
  }
  char etag[32];
  snprintf(etag, sizeof(etag), "\"%lld\"", (long long)h->jwks_version);
  ts_hbuf hd = {0};
  ts_hbuf_printf(&hd, "ETag: %s\r\nCache-Control: public, max-age=%lld\r\n", etag,
                 (long long)h->cfg->jwks_max_age);
  size_t inm_len;
  const char *inm = ts_hreq_header(ts_hconn_req(c), "If-None-Match", &inm_len);
  if (inm && etag_matches(inm, inm_len, etag)) {
    ts_hconn_send(c, 304, &hd, NULL, 0);
  } else {
    ts_hbuf_str(&hd, "Content-Type: application/jwk-set+json\r\n");
    ts_hconn_send(c, 200, &hd, h->jwks_body, h->jwks_len);
  }
  ts_hbuf_free(&hd);
}
