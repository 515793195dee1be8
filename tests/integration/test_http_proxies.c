/* tests/integration/test_http_proxies.c: real proxies in front of tesserad's forward-auth:
 * Debian's nginx (auth_request) with deploy/nginx/tessera-auth.conf and tessera-protect.conf,
 * and Caddy (forward_auth) with deploy/caddy/Caddyfile, the very example files, each in
 * front of a tiny upstream that echoes the request headers it receives. Checked through each
 * proxy: allow, deny (nginx 401; Caddy passes the 302 to --http-login-url), the identity
 * headers reaching the upstream (and ones the client forged not reaching it), cookie renewal
 * (nginx), and a revoked session refused on the very next request.
 *
 * Everything listens on loopback ports picked at run time; configs, pid files and logs live
 * in the daemon's temp dir. Waits: for a port to accept, for replies, each with a deadline.
 * A machine without nginx or caddy fails here: deploy/debian-deps test installs both. */
#include "calls.h"
#include "daemon.h"
#include "hc.h"
#include "tt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct env {
  td_daemon d;
  tessera_client *c;
  int http, app, proxy;
  pid_t upstream, proxy_pid;
  char dir[512];
} env;

static void setup(env *e, bool caddy) {
  TT_ASSERT_MSG(hc_have(caddy ? "/usr/bin/caddy" : "/usr/sbin/nginx"),
                "%s is not installed (deploy/debian-deps test)", caddy ? "caddy" : "nginx");
  e->http = hc_free_port();
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", e->http);
  td_start(&e->d, (const char *const[]){"--http-listen", listen, "--http-login-url",
                                        "https://id.example/login", "--http-renew-cookie",
                                        "rolling", NULL});
  e->c = tc_client(&e->d);
  e->app = hc_free_port();
  e->upstream = hc_upstream(e->app);
  e->proxy = hc_free_port();
  snprintf(e->dir, sizeof(e->dir), "%s/%s", e->d.dir, caddy ? "caddy" : "nginx");
  char cmd[1400];
  snprintf(cmd, sizeof(cmd), "mkdir -p %s && chmod 755 %s %s", e->dir, e->d.dir, e->dir);
  TT_ASSERT(system(cmd) == 0);
  e->proxy_pid = caddy ? hc_start_caddy(e->dir, e->proxy, e->http, e->app)
                       : hc_start_nginx(e->dir, e->proxy, e->http, e->app);
}

static void teardown(env *e) {
  hc_stop(e->proxy_pid);
  hc_stop(e->upstream);
  tessera_close(e->c);
  tc_stop_clean(&e->d);
}

static void get(env *e, const char *sid, const char *more, hc_resp *r) {
  char h[4096];
  snprintf(h, sizeof(h), "User-Agent: Firefox/1\r\n%s%s%s%s", sid ? "Cookie: __Host-sid=" : "",
           sid ? sid : "", sid ? "\r\n" : "", more ? more : "");
  hc_get(e->proxy, "/app/page?x=1", h, r);
}

static const char *H(const hc_resp *r, const char *name) {
  static char v[2][4096];
  static int i;
  i ^= 1;
  return hc_header(r, name, v[i], sizeof(v[i]));
}

/* The upstream's echo of the header block it received holds this line. */
static bool upstream_saw(const hc_resp *r, const char *line) {
  char want[512];
  snprintf(want, sizeof(want), "\r\n%s\r\n", line);
  return strstr(r->body, want) != NULL;
}

static void through_proxy(bool caddy) {
  env e;
  setup(&e, caddy);
  json_t *s = tc_call_ok(e.c, "session.create",
                         json_pack("{s:s, s:{s:s}}", "sub", "ann", "client", "ua", "Firefox/1"));
  const char *sid = tc_str(s, "sid");
  hc_resp r;
  /* allow: the upstream gets the identity, not what the client claimed */
  get(&e, sid, "X-Auth-Sub: mallory\r\nX-Auth-Scope: admin\r\n", &r);
  TT_EQ_INT(r.status, 200);
  TT_ASSERT_MSG(upstream_saw(&r, "X-Auth-Sub: ann") || upstream_saw(&r, "x-auth-sub: ann"),
                "upstream saw: %s", r.body);
  char line[128];
  snprintf(line, sizeof(line), "X-Auth-Handle: %s", tc_str(s, "handle"));
  TT_ASSERT_MSG(upstream_saw(&r, line), "upstream saw: %s", r.body);
  TT_ASSERT_MSG(strstr(r.body, "mallory") == NULL, "forged identity reached the upstream: %s",
                r.body);
  TT_ASSERT_MSG(strstr(r.body, "X-Auth-Scope: admin") == NULL,
                "forged scope reached the upstream: %s", r.body);
  if (!caddy) { /* nginx passes the renewed cookie back to the browser */
    const char *sc = H(&r, "Set-Cookie");
    TT_ASSERT(sc && strstr(sc, sid) && strstr(sc, "Max-Age=") && strstr(sc, "HttpOnly"));
  }
  /* deny */
  get(&e, NULL, NULL, &r);
  if (caddy) {
    TT_EQ_INT(r.status, 302); /* Caddy passes the login redirect through */
    char want[256];
    snprintf(want, sizeof(want), "https://id.example/login?rd=http%%3A%%2F%%2F127.0.0.1%%3A%d"
             "%%2Fapp%%2Fpage%%3Fx%%3D1", e.proxy);
    TT_EQ_STR(H(&r, "Location"), want);
  } else {
    TT_EQ_INT(r.status, 401);
  }
  TT_ASSERT(strstr(r.body, "Host: ") == NULL); /* the upstream never answered */
  /* a bearer token */
  char *tok = tc_issue_sub(e.c, "bo");
  char auth[2048];
  snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", tok);
  get(&e, NULL, auth, &r);
  TT_EQ_INT(r.status, 200);
  TT_ASSERT_MSG(upstream_saw(&r, "X-Auth-Sub: bo"), "upstream saw: %s", r.body);
  free(tok);
  /* keep-alive through the proxy, then revocation: refused on the next request */
  get(&e, sid, NULL, &r);
  TT_EQ_INT(r.status, 200);
  tc_call_ok(e.c, "session.revoke", json_pack("{s:s}", "sid", sid));
  get(&e, sid, NULL, &r);
  TT_EQ_INT(r.status, caddy ? 302 : 401);
  json_decref(s);
  teardown(&e);
}

static void nginx_auth_request(void) { through_proxy(false); }
static void caddy_forward_auth(void) { through_proxy(true); }

static const tt_case cases[] = {
    TT_CASE(nginx_auth_request),
    TT_CASE(caddy_forward_auth),
};
TT_MAIN(cases)
