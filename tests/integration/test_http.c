/* tests/integration/test_http.c: the HTTP edge of the real daemon, spoken to with raw HTTP
 * (proto/HTTP.md): probes, JWKS with ETag, forward-auth by cookie and by bearer token in
 * every dialect (allow, deny, redirect, identity headers, anomalies, bind policy, revocation,
 * cookie renewal), /metrics under a strict parser with counters that move, every limit
 * (header size, requests per connection, idle and request time, bodies, garbage, bad
 * methods, versions) closing only the connection at fault, pipelining, the audit stream, no
 * secret in any log, a clean stop with HTTP connections open, and a unix: listener.
 * The proxies in front (nginx, Caddy): test_http_proxies.c.
 *
 * Waiting: replies and EOF are the signals, each with a deadline; timeouts under test are set
 * short by flag and waited for as EOF. */
#include "calls.h"
#include "daemon.h"
#include "hc.h"
#include "tt.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The daemon with --http-listen on a free port plus extra flags (NULL-terminated). */
static int start(td_daemon *d, const char *const *extra) {
  static char listen[64];
  int port = hc_free_port();
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  const char *args[40] = {"--http-listen", listen};
  size_t n = 2;
  for (size_t i = 0; extra && extra[i] && n < 38; i++) args[n++] = extra[i];
  args[n] = NULL;
  td_start(d, args);
  return port;
}

static json_t *create(tessera_client *c, const char *sub, const char *ua) {
  json_t *p = json_pack("{s:s}", "sub", sub);
  if (ua) json_object_set_new(p, "client", json_pack("{s:s}", "ua", ua));
  return tc_call_ok(c, "session.create", p);
}

/* GET /auth with the cookie (may be NULL), user agent and more header lines. */
static void auth(int port, const char *sid, const char *ua, const char *more, hc_resp *r) {
  char h[8192];
  snprintf(h, sizeof(h), "%s%s%s%s%s%s", sid ? "Cookie: theme=dark; __Host-sid=" : "",
           sid ? sid : "", sid ? "\r\n" : "", ua ? "User-Agent: " : "", ua ? ua : "",
           ua ? "\r\n" : "");
  if (more) strncat(h, more, sizeof(h) - strlen(h) - 1);
  hc_get(port, "/auth", h, r);
}

static const char *H(const hc_resp *r, const char *name) {
  static char v[4][4096];
  static int i;
  i = (i + 1) % 4;
  return hc_header(r, name, v[i], sizeof(v[i]));
}

static void probes_and_routes(void) {
  td_daemon d;
  int port = start(&d, NULL);
  hc_resp r;
  hc_get(port, "/healthz", NULL, &r);
  TT_EQ_INT(r.status, 200);
  TT_EQ_STR(r.body, "ok\n");
  hc_get(port, "/readyz", NULL, &r);
  TT_EQ_INT(r.status, 200);
  TT_EQ_STR(r.body, "ready\n");
  hc_get(port, "/nope", NULL, &r);
  TT_EQ_INT(r.status, 404);
  hc_request(port, "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  TT_EQ_INT(r.status, 405);
  TT_EQ_STR(H(&r, "Allow"), "GET, HEAD");
  hc_request(port, "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &r);
  TT_EQ_INT(r.status, 200);
  TT_EQ_STR(H(&r, "Content-Length"), "3");
  TT_EQ_INT(r.body_len, 0);
  hc_request(port, "GET http://evil/healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  TT_EQ_INT(r.status, 400);
  tc_stop_clean(&d);
}

static void jwks_with_etag(void) {
  td_daemon d;
  int port = start(&d, (const char *const[]){"--jwks-max-age", "120", NULL});
  tessera_client *c = tc_client(&d);
  json_t *set = tc_jwks(c);
  hc_resp r;
  hc_get(port, "/.well-known/jwks.json", NULL, &r);
  TT_EQ_INT(r.status, 200);
  TT_EQ_STR(H(&r, "Content-Type"), "application/jwk-set+json");
  TT_EQ_STR(H(&r, "Cache-Control"), "public, max-age=120");
  json_t *got = json_loadb(r.body, r.body_len, 0, NULL);
  TT_ASSERT(got && json_equal(json_object_get(got, "keys"), json_object_get(set, "keys")));
  char etag[64], hdr[128];
  snprintf(etag, sizeof(etag), "%s", H(&r, "ETag"));
  TT_ASSERT(etag[0] == '"');
  snprintf(hdr, sizeof(hdr), "If-None-Match: W/\"x\", %s\r\n", etag);
  hc_get(port, "/.well-known/jwks.json", hdr, &r);
  TT_EQ_INT(r.status, 304);
  TT_EQ_STR(H(&r, "ETag"), etag);
  tc_call_ok(c, "keys.rotate", NULL);
  hc_get(port, "/.well-known/jwks.json", hdr, &r);
  TT_EQ_INT(r.status, 200);
  TT_ASSERT(strcmp(H(&r, "ETag"), etag) != 0);
  json_decref(got);
  json_decref(set);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void forward_auth_by_cookie(void) {
  td_daemon d;
  int port = start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s = create(c, "ann", "Firefox/1");
  hc_resp r;
  auth(port, tc_str(s, "sid"), "Firefox/1", NULL, &r);
  TT_EQ_INT(r.status, 200);
  TT_EQ_INT(r.body_len, 0);
  TT_EQ_STR(H(&r, "X-Auth-Sub"), "ann");
  TT_EQ_STR(H(&r, "X-Auth-Handle"), tc_str(s, "handle"));
  TT_ASSERT(H(&r, "X-Auth-Anomalies") == NULL);
  TT_EQ_STR(H(&r, "Cache-Control"), "no-store");
  auth(port, tc_str(s, "sid"), "Chrome/2", NULL, &r); /* report policy: allowed, flagged */
  TT_EQ_INT(r.status, 200);
  TT_EQ_STR(H(&r, "X-Auth-Anomalies"), "ua_changed");
  auth(port, NULL, "Firefox/1", NULL, &r);
  TT_EQ_INT(r.status, 401);
  TT_ASSERT(H(&r, "WWW-Authenticate") != NULL);
  auth(port, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "Firefox/1", NULL, &r);
  TT_EQ_INT(r.status, 401);
  auth(port, "not a sid at all", "Firefox/1", NULL, &r);
  TT_EQ_INT(r.status, 401);
  /* Envoy's path_prefix: /auth/<original path>, any method */
  char raw[1024];
  snprintf(raw, sizeof(raw), "DELETE /auth/api/items/7?x=1 HTTP/1.1\r\nHost: app\r\n"
           "Cookie: __Host-sid=%s\r\nUser-Agent: Firefox/1\r\n\r\n", tc_str(s, "sid"));
  hc_request(port, raw, &r);
  TT_EQ_INT(r.status, 200);
  TT_EQ_STR(H(&r, "X-Auth-Sub"), "ann");
  /* revoked: refused on the very next request */
  tc_call_ok(c, "session.revoke", json_pack("{s:s}", "handle", tc_str(s, "handle")));
  auth(port, tc_str(s, "sid"), "Firefox/1", NULL, &r);
  TT_EQ_INT(r.status, 401);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void forward_auth_by_bearer(void) {
  td_daemon d;
  int port = start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s, s:s}", "sub", "bo b", "scope",
                                                     "read write"));
  char h[4096];
  snprintf(h, sizeof(h), "Authorization: Bearer %s\r\n", tc_str(t, "token"));
  hc_resp r;
  hc_get(port, "/auth", h, &r);
  TT_EQ_INT(r.status, 200);
  TT_EQ_STR(H(&r, "X-Auth-Sub"), "bo%20b");
  TT_EQ_STR(H(&r, "X-Auth-Scope"), "read%20write");
  TT_ASSERT(H(&r, "X-Auth-Handle") == NULL);
  tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", tc_str(t, "token")));
  hc_get(port, "/auth", h, &r);
  TT_EQ_INT(r.status, 401);
  TT_ASSERT(strstr(H(&r, "WWW-Authenticate"), "invalid_token") != NULL);
  hc_get(port, "/auth", "Authorization: Bearer x.y.z\r\n", &r);
  TT_EQ_INT(r.status, 401);
  hc_get(port, "/auth", "Authorization: Basic YTpi\r\n", &r);
  TT_EQ_INT(r.status, 401);
  json_decref(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void bind_policy_enforce_applies(void) {
  td_daemon d;
  int port = start(&d, (const char *const[]){"--bind-policy", "enforce", NULL});
  tessera_client *c = tc_client(&d);
  json_t *s = create(c, "cy", "Firefox/1");
  hc_resp r;
  auth(port, tc_str(s, "sid"), "Firefox/1", NULL, &r);
  TT_EQ_INT(r.status, 200);
  auth(port, tc_str(s, "sid"), "curl/8", NULL, &r); /* a stolen cookie from elsewhere */
  TT_EQ_INT(r.status, 401);
  auth(port, tc_str(s, "sid"), "Firefox/1", NULL, &r); /* and the session is gone */
  TT_EQ_INT(r.status, 401);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void identity_headers_cannot_be_forged_by_a_sub(void) {
  td_daemon d;
  int port = start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s = create(c, "eve\r\nX-Evil: 1", NULL);
  hc_resp r;
  auth(port, tc_str(s, "sid"), NULL, NULL, &r);
  TT_EQ_INT(r.status, 200);
  TT_EQ_STR(H(&r, "X-Auth-Sub"), "eve%0D%0AX-Evil:%201");
  TT_ASSERT(H(&r, "X-Evil") == NULL);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void login_redirect_for_forwarded_browsers_only(void) {
  td_daemon d;
  int port = start(&d, (const char *const[]){"--http-login-url", "https://id.example/login", NULL});
  hc_resp r;
  const char *fwd = "X-Forwarded-Method: GET\r\nX-Forwarded-Proto: https\r\n"
                    "X-Forwarded-Host: app.example\r\nX-Forwarded-Uri: /a?b=c\r\n";
  hc_get(port, "/auth", fwd, &r);
  TT_EQ_INT(r.status, 302);
  TT_EQ_STR(H(&r, "Location"),
            "https://id.example/login?rd=https%3A%2F%2Fapp.example%2Fa%3Fb%3Dc");
  hc_get(port, "/auth", "X-Forwarded-Method: POST\r\nX-Forwarded-Uri: /a\r\n", &r);
  TT_EQ_INT(r.status, 401); /* never redirect a POST */
  hc_get(port, "/auth", "X-Original-Method: GET\r\nX-Original-URI: /a\r\n", &r);
  TT_EQ_INT(r.status, 401); /* nginx passes only 401/403 */
  hc_get(port, "/auth", NULL, &r);
  TT_EQ_INT(r.status, 401); /* Envoy: only 200 allows; a 401 is its deny */
  char h[512];
  snprintf(h, sizeof(h), "%sAuthorization: Bearer x.y.z\r\n", fwd);
  hc_get(port, "/auth", h, &r);
  TT_EQ_INT(r.status, 401); /* API clients get 401 */
  tc_stop_clean(&d);
  /* X-Forwarded-* from a peer outside --http-trusted-proxies is not believed */
  port = start(&d, (const char *const[]){"--http-login-url", "https://id.example/login",
                                         "--http-trusted-proxies", "10.0.0.0/8", NULL});
  hc_get(port, "/auth", fwd, &r);
  TT_EQ_INT(r.status, 401);
  tc_stop_clean(&d);
}

static void cookie_renewal_rolling(void) {
  td_daemon d;
  int port = start(&d, (const char *const[]){"--http-renew-cookie", "rolling", NULL});
  tessera_client *c = tc_client(&d);
  json_t *s = tc_call_ok(c, "session.create", json_pack("{s:s, s:i}", "sub", "di", "idle_ttl", 600));
  hc_resp r;
  auth(port, tc_str(s, "sid"), NULL, NULL, &r);
  TT_EQ_INT(r.status, 200);
  const char *sc = H(&r, "Set-Cookie");
  TT_ASSERT(sc != NULL);
  char want[256];
  snprintf(want, sizeof(want), "__Host-sid=%s; Path=/; Max-Age=", tc_str(s, "sid"));
  TT_ASSERT_MSG(strncmp(sc, want, strlen(want)) == 0, "Set-Cookie: %s", sc);
  long age = strtol(sc + strlen(want), NULL, 10);
  TT_ASSERT(age > 590 && age <= 600);
  TT_ASSERT(strstr(sc, "; Secure; HttpOnly; SameSite=Lax") != NULL);
  auth(port, NULL, NULL, NULL, &r);
  TT_ASSERT(H(&r, "Set-Cookie") == NULL);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

static char *metrics(int port) {
  hc_resp *r = malloc(sizeof(*r));
  hc_get(port, "/metrics", NULL, r);
  TT_EQ_INT(r->status, 200);
  char ct[128];
  TT_EQ_STR(hc_header(r, "Content-Type", ct, sizeof(ct)), "text/plain; version=0.0.4; charset=utf-8");
  char *text = strndup(r->body, r->body_len);
  free(r);
  const char *bad = hc_prom_check(text);
  TT_ASSERT_MSG(bad == NULL, "/metrics: %s", bad);
  return text;
}

static void metrics_parse_and_move(void) {
  td_daemon d;
  int port = start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *m0 = metrics(port);
  static const char *const must[] = {
      "tessera_build_info{version=\"" TESSERA_VERSION "\"}",
      "tessera_requests_total{method=\"session.validate\",code=\"ok\"}",
      "tessera_request_duration_seconds_count{method=\"session.validate\"}",
      "tessera_forward_auth_total{result=\"allow\"}", "tessera_sessions",
      "tessera_refresh_reuse_detected_total", "tessera_revocations_total{kind=\"session\"}",
      "tessera_store_bytes", "tessera_store_commits_total", "tessera_connections{door=\"http\"}",
      "tessera_store_up",
      "tessera_signing_key_age_seconds", "process_cpu_seconds_total",
      "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"};
  for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
    TT_ASSERT_MSG(hc_prom_value(m0, must[i]) >= 0, "missing %s", must[i]);
  TT_ASSERT(hc_prom_value(m0, "tessera_store_up") == 1);
  TT_ASSERT(hc_prom_value(m0, "tessera_redis_cache_hits_total") < 0); /* LMDB: none */
  TT_ASSERT(hc_prom_value(m0, "tessera_session_cache_hits_total") >= 0);
  TT_ASSERT(hc_prom_value(m0, "tessera_store_disk_short") == 0); /* the disk holds the reserve */
  TT_ASSERT(strstr(m0, "ann") == NULL);
  json_t *s = create(c, "ann", NULL);
  hc_resp r;
  auth(port, tc_str(s, "sid"), NULL, NULL, &r);
  auth(port, tc_str(s, "sid"), NULL, NULL, &r);
  auth(port, NULL, NULL, NULL, &r);
  tc_call_ok(c, "session.revoke", json_pack("{s:s}", "sid", tc_str(s, "sid")));
  /* refresh reuse: rotate twice, then present the first refresh token again */
  json_t *p = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "ann"));
  json_t *p2 = tc_call_ok(c, "token.refresh", json_pack("{s:s}", "refresh_token",
                                                        tc_str(p, "refresh_token")));
  json_decref(tc_call_ok(c, "token.refresh", json_pack("{s:s}", "refresh_token",
                                                       tc_str(p2, "refresh_token"))));
  TT_EQ_STR(tc_call_code(c, "token.refresh", json_pack("{s:s}", "refresh_token",
                                                       tc_str(p, "refresh_token")), NULL),
            "reused");
  char *m1 = metrics(port);
#define PV(text, series) (hc_prom_value(text, series) < 0 ? 0 : hc_prom_value(text, series))
#define MOVED(series) (PV(m1, series) - PV(m0, series))
  TT_EQ_INT(MOVED("tessera_forward_auth_total{result=\"allow\"}"), 2);
  TT_EQ_INT(MOVED("tessera_forward_auth_total{result=\"deny\"}"), 1);
  TT_EQ_INT(MOVED("tessera_requests_total{method=\"session.validate\",code=\"ok\"}"), 2);
  TT_EQ_INT(MOVED("tessera_requests_total{method=\"session.create\",code=\"ok\"}"), 1);
  TT_EQ_INT(MOVED("tessera_revocations_total{kind=\"session\"}"), 1);
  TT_EQ_INT(MOVED("tessera_request_duration_seconds_count{method=\"session.validate\"}"), 2);
  TT_ASSERT(MOVED("tessera_store_commits_total") >= 2);
  /* the two allowed forward-auths: a store lookup that filled the cache, then a hit */
  TT_EQ_INT(MOVED("tessera_session_cache_misses_total"), 1);
  TT_EQ_INT(MOVED("tessera_session_cache_hits_total"), 1);
  TT_ASSERT(strstr(m1, "ann") == NULL); /* no per-user label */
  TT_ASSERT(strstr(m1, tc_str(s, "sid")) == NULL);
  TT_EQ_INT(MOVED("tessera_refresh_reuse_detected_total"), 1);
  TT_EQ_INT(MOVED("tessera_revocations_total{kind=\"family\"}"), 1);
  TT_EQ_INT(MOVED("tessera_requests_total{method=\"token.refresh\",code=\"reused\"}"), 1);
  free(m1);
  free(m0);
  json_decref(s);
  json_decref(p);
  json_decref(p2);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void keep_alive_and_pipelining(void) {
  td_daemon d;
  int port = start(&d, NULL);
  int fd = hc_connect(port);
  hc_send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp r;
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_EQ_STR(r.body, "ok\n");
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_EQ_INT(r.status, 404);
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_EQ_STR(r.body, "ready\n");
  hc_send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); /* still open */
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_EQ_INT(r.status, 200);
  close(fd);
  /* HTTP/1.0 closes unless it asks for keep-alive */
  fd = hc_connect(port);
  hc_send_str(fd, "GET /healthz HTTP/1.0\r\n\r\n");
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_ASSERT(hc_wait_closed(fd, 10000));
  close(fd);
  tc_stop_clean(&d);
}

static void requests_per_connection_limited(void) {
  td_daemon d;
  int port = start(&d, (const char *const[]){"--http-max-requests", "3", NULL});
  int fd = hc_connect(port);
  hc_resp r;
  for (int i = 0; i < 3; i++) {
    hc_send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
    TT_EQ_INT(r.status, 200);
    char v[32];
    bool close_said = hc_header(&r, "Connection", v, sizeof(v)) && strcmp(v, "close") == 0;
    TT_EQ_INT(close_said, i == 2);
  }
  TT_ASSERT(hc_wait_closed(fd, 10000));
  close(fd);
  tc_stop_clean(&d);
}

/* A connection doing bad things, and a good one beside it that must not notice. */
static void hostile(int port, const char *bytes, size_t len, int want_status) {
  int good = hc_connect(port);
  hc_resp r;
  hc_send_str(good, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  TT_EQ_INT(hc_read(good, &r, 10000, false), 0);
  int bad = hc_connect(port);
  hc_send(bad, bytes, len);
  if (want_status) {
    TT_EQ_INT(hc_read(bad, &r, 10000, false), 0);
    TT_EQ_INT(r.status, want_status);
  }
  TT_ASSERT(hc_wait_closed(bad, 10000));
  close(bad);
  hc_send_str(good, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  TT_EQ_INT(hc_read(good, &r, 10000, false), 0);
  TT_EQ_INT(r.status, 200);
  close(good);
}

static void hostile_input_closes_that_connection_only(void) {
  td_daemon d;
  int port = start(&d, NULL);
  /* a cookie-sized header fits (16 KiB by default) */
  static char big[40000];
  char cookie[8001];
  memset(cookie, 'a', sizeof(cookie) - 1);
  cookie[8000] = 0;
  snprintf(big, sizeof(big), "GET /healthz HTTP/1.1\r\nHost: x\r\nCookie: c=%s\r\n\r\n", cookie);
  hc_resp r;
  hc_request(port, big, &r);
  TT_EQ_INT(r.status, 200);
  /* oversized headers */
  size_t n = (size_t)snprintf(big, sizeof(big), "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  while (n < 30000) n += (size_t)snprintf(big + n, sizeof(big) - n, "X-Pad: %0100d\r\n", 0);
  n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
  hostile(port, big, n, 431);
  /* too many headers */
  n = (size_t)snprintf(big, sizeof(big), "GET /healthz HTTP/1.1\r\n");
  for (int i = 0; i < 100; i++) n += (size_t)snprintf(big + n, sizeof(big) - n, "X%d: y\r\n", i);
  n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n");
  hostile(port, big, n, 431);
  /* a body */
  const char *body = "POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
  hostile(port, body, strlen(body), 413);
  body = "POST /auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  hostile(port, body, strlen(body), 413);
  /* garbage, pipelined after a good request */
  body = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage";
  int fd = hc_connect(port);
  hc_send_str(fd, body);
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_EQ_INT(r.status, 200);
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_EQ_INT(r.status, 400);
  TT_ASSERT(hc_wait_closed(fd, 10000));
  close(fd);
  hostile(port, "\x00\x01\x02\r\n\r\n", 6, 400);
  body = "BREW /auth HTTP/1.1\r\nHost: x\r\n\r\n";
  hostile(port, body, strlen(body), 400);
  body = "GET /auth HTTP/2.0\r\nHost: x\r\n\r\n";
  hostile(port, body, strlen(body), 505);
  body = "CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n";
  hostile(port, body, strlen(body), 400);
  body = "GET /auth HTTP/1.1\r\nHost: x\r\nX-Bad\x01: y\r\n\r\n";
  hostile(port, body, strlen(body), 400);
  body = "GET /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
  hostile(port, body, strlen(body), 400);
  tessera_client *c = tc_client(&d); /* the admin socket never noticed */
  tc_call_ok(c, "sys.ping", NULL);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void slow_and_idle_connections_time_out(void) {
  td_daemon d;
  int port = start(&d, (const char *const[]){"--message-timeout", "400ms", "--http-idle-timeout",
                                             "400ms", NULL});
  /* slowloris: headers that never end get 408 and a close, whatever keeps trickling */
  int fd = hc_connect(port);
  hc_send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  hc_resp r;
  long long t0 = tc_mono_ms();
  for (int i = 0; i < 100; i++) { /* a byte every 20 ms until the daemon answers */
    hc_send_str(fd, "X");
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
    char peek;
    if (recv(fd, &peek, 1, MSG_PEEK | MSG_DONTWAIT) >= 0) break;
  }
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_EQ_INT(r.status, 408);
  TT_ASSERT(hc_wait_closed(fd, 10000));
  TT_ASSERT(tc_mono_ms() - t0 >= 350);
  close(fd);
  /* idle keep-alive connections close */
  fd = hc_connect(port);
  hc_send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_ASSERT(hc_wait_closed(fd, 10000));
  close(fd);
  fd = hc_connect(port); /* and ones that never send a byte */
  TT_ASSERT(hc_wait_closed(fd, 10000));
  close(fd);
  tc_stop_clean(&d);
}

/* Starts a daemon with the HTTP edge and --audit-log in its dir, plus one flag and its value;
 * returns the port. audit receives the audit log's path. */
static int start_audited(td_daemon *d, char audit[256], const char *flag, const char *value) {
  static char listen[64];
  td_init(d);
  snprintf(audit, 256, "%s/audit.log", d->dir);
  int port = hc_free_port();
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  td_launch(d, (const char *const[]){"--http-listen", listen, "--audit-log", audit, flag, value,
                                     NULL});
  return port;
}

static void audit_stream_without_secrets(void) {
  td_daemon d;
  char audit[256];
  int port = start_audited(&d, audit, "--log-level", "debug");
  tessera_client *c = tc_client(&d);
  json_t *s = create(c, "ann", NULL);
  hc_resp r;
  auth(port, tc_str(s, "sid"), NULL, NULL, &r);
  TT_EQ_INT(r.status, 200);
  tc_call_ok(c, "session.revoke", json_pack("{s:s}", "sid", tc_str(s, "sid")));
  json_t *s2 = create(c, "ann", NULL);
  tc_call_ok(c, "session.revoke_all", json_pack("{s:s}", "sub", "ann"));
  json_t *p = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "bo"));
  tc_call_ok(c, "token.revoke", json_pack("{s:s}", "family", tc_str(p, "family")));
  tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "cy"));
  char *pt = tc_issue_purpose(c, "di", "reset");
  tc_call_ok(c, "token.consume", json_pack("{s:s, s:s}", "token", pt, "purpose", "reset"));
  tc_call_ok(c, "keys.rotate", NULL);
  tc_stop_ok(&d);
  char *text = td_read_file(audit, NULL);
  static const char *const events[] = {"session.created", "session.revoked",
                                       "session.revoked_all", "token.revoked", "user.revoked",
                                       "purpose_token.consumed", "key.rotated"};
  size_t lines = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    json_t *o = json_loads(line, 0, NULL);
    TT_ASSERT_MSG(o && json_is_true(json_object_get(o, "audit")), "not an audit line: %s", line);
    TT_ASSERT(strstr(line, tc_str(s, "sid")) == NULL && strstr(line, tc_str(s2, "sid")) == NULL);
    TT_ASSERT(strstr(line, tc_str(p, "refresh_token")) == NULL && strstr(line, pt) == NULL);
    json_decref(o);
    lines++;
  }
  free(text);
  text = td_read_file(audit, NULL);
  for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
    char want[64];
    snprintf(want, sizeof(want), "\"event\":\"%s\"", events[i]);
    TT_ASSERT_MSG(strstr(text, want) != NULL, "no %s line", events[i]);
  }
  TT_ASSERT(strstr(text, "\"handle\":\"") != NULL && strstr(text, "\"family\":\"") != NULL);
  TT_ASSERT(lines >= 8);
  char *log = td_read_log(&d);
  TT_ASSERT(strstr(log, tc_str(s, "sid")) == NULL);
  free(log);
  free(text);
  free(pt);
  json_decref(s);
  json_decref(s2);
  json_decref(p);
  tessera_close(c);
  td_cleanup(&d);
}

/* --bind-policy enforce revokes a session inside validate (here through forward-auth, with
 * another browser's user agent): that revocation is an audit event and a counted revocation
 * too, though no revoke method ran. */
static void enforced_revocation_is_audited(void) {
  td_daemon d;
  char audit[256];
  int port = start_audited(&d, audit, "--bind-policy", "enforce");
  tessera_client *c = tc_client(&d);
  json_t *s = create(c, "eve", "Firefox");
  hc_resp r;
  auth(port, tc_str(s, "sid"), "curl", NULL, &r);
  TT_EQ_INT(r.status, 401);
  TT_EQ_STR(tc_validate(c, tc_str(s, "sid"), json_pack("{s:s}", "ua", "Firefox"), NULL),
            "unauthenticated"); /* revoked, not just refused once */
  hc_get(port, "/metrics", NULL, &r);
  TT_EQ_INT(r.status, 200);
  TT_ASSERT_MSG(strstr(r.body, "tessera_revocations_total{kind=\"session\"} 1") != NULL,
                "metrics: %.2000s", r.body);
  tc_stop_ok(&d);
  char *text = td_read_file(audit, NULL);
  char want[128];
  snprintf(want, sizeof(want), "\"handle\":\"%s\"", tc_str(s, "handle"));
  const char *line = strstr(text, "\"event\":\"session.revoked\"");
  TT_ASSERT_MSG(line && strstr(text, "\"reason\":\"bind_policy\"") && strstr(text, want),
                "audit: %s", text);
  TT_ASSERT(strstr(text, tc_str(s, "sid")) == NULL);
  free(text);
  json_decref(s);
  tessera_close(c);
  td_cleanup(&d);
}

static void clean_stop_with_http_connections_open(void) {
  td_daemon d;
  int port = start(&d, NULL);
  int idle = hc_connect(port);
  hc_resp r;
  hc_send_str(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  TT_EQ_INT(hc_read(idle, &r, 10000, false), 0);
  int half = hc_connect(port);
  hc_send_str(half, "GET /heal");
  tc_stop_clean(&d); /* exits 0, not after --shutdown-timeout */
  TT_ASSERT(hc_wait_closed(idle, 1000));
  TT_ASSERT(hc_wait_closed(half, 1000));
  close(idle);
  close(half);
}

static void unix_listener(void) {
  td_daemon d;
  td_init(&d);
  char path[256], flag[300];
  snprintf(path, sizeof(path), "%s/http.sock", d.dir);
  snprintf(flag, sizeof(flag), "unix:%s", path);
  td_launch(&d, (const char *const[]){"--http-listen", flag, NULL});
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  TT_ASSERT(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path) + 1);
  TT_ASSERT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  hc_send_str(fd, "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_resp r;
  TT_EQ_INT(hc_read(fd, &r, 10000, false), 0);
  TT_EQ_STR(r.body, "ready\n");
  close(fd);
  tc_stop_clean(&d);
}

static void off_by_default(void) {
  td_daemon d;
  td_start(&d, NULL);
  char *log = td_read_log(&d);
  TT_ASSERT(strstr(log, "listening for HTTP") == NULL);
  free(log);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(probes_and_routes),
    TT_CASE(jwks_with_etag),
    TT_CASE(forward_auth_by_cookie),
    TT_CASE(forward_auth_by_bearer),
    TT_CASE(bind_policy_enforce_applies),
    TT_CASE(identity_headers_cannot_be_forged_by_a_sub),
    TT_CASE(login_redirect_for_forwarded_browsers_only),
    TT_CASE(cookie_renewal_rolling),
    TT_CASE(metrics_parse_and_move),
    TT_CASE(keep_alive_and_pipelining),
    TT_CASE(requests_per_connection_limited),
    TT_CASE(hostile_input_closes_that_connection_only),
    TT_CASE(slow_and_idle_connections_time_out),
    TT_CASE(audit_stream_without_secrets),
    TT_CASE(enforced_revocation_is_audited),
    TT_CASE(clean_stop_with_http_connections_open),
    TT_CASE(unix_listener),
    TT_CASE(off_by_default),
};
TT_MAIN(cases)
