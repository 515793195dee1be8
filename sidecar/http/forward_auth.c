/* sidecar/http/forward_auth.c: /auth, one handler for every proxy's forward-auth dialect.
 *
 * Owner: the HTTP edge. The original request (for the login redirect and the client bound to
 * the session) is read, in this order, from:
 *   nginx   X-Original-Method, X-Original-URI, X-Original-Host, X-Original-Proto
 *   Traefik, Caddy  X-Forwarded-Method, -Uri, -Host, -Proto
 *   Envoy   the request itself: its method, its path after the /auth prefix, Host
 * The first two only from a trusted peer (--http-trusted-proxies); from anyone else they are
 * ignored. The client's address: X-Real-IP, else the last X-Forwarded-For entry, from a
 * trusted peer; else the peer itself. Its user agent: User-Agent (proxies pass the client's).
 *
 * Credentials: the session cookie (--cookie-name, in any Cookie header), else
 * `Authorization: Bearer <access token>`. A cookie goes to session.validate {sid, client},
 * a bearer token to token.verify {token, check_revoked: true}, both internal calls
 * (sidecar/internal.h): anomalies, --bind-policy and revocation apply exactly as on the socket.
 *
 * Answers: 200, empty, with <prefix>Sub, Handle, Scope, Anomalies (values percent-encoded:
 * nothing from a user can break a header line) and, with --http-renew-cookie rolling, a
 * Set-Cookie of the same sid whose Max-Age runs to the session's idle expiry; 401 to deny
 * (WWW-Authenticate: Bearer); 302 to --http-login-url?rd=<original URL> instead of 401 when
 * a login URL is set, the dialect is X-Forwarded-* (proxies that pass a redirect through),
 * the original method is GET or HEAD and the credential was not a bearer token (an API client
 * wants a 401, not a login page); 503 when the store cannot answer (a proxy then fails
 * closed). Every answer has Cache-Control: no-store. Nothing here logs a credential. */
#include "hconn.h"

#include "error.h"
#include "internal.h"
#include "rpc.h"
#include "wipe.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

enum { D_NGINX, D_FORWARDED, D_ENVOY };

typedef struct fa_call {
  ts_hconn *c;
  bool bearer;
  bool redirect_ok;
  const char *sid; /* into the request's arena, valid until the answer is sent */
  size_t sid_len;
} fa_call;

static const char *hdr(const ts_hreq *r, const char *name, size_t *len) {
  return ts_hreq_header(r, name, len);
}

/* The value of cookie `name` in the request's Cookie headers, or NULL. */
static const char *find_cookie(const ts_hreq *r, const char *name, size_t *len) {
  size_t nl = strlen(name);
  for (unsigned i = 0; i < r->n; i++) {
    const ts_hheader *h = &r->h[i];
    if (h->name_len != 6 || strncasecmp(r->arena + h->name_off, "Cookie", 6) != 0) continue;
    const char *p = r->arena + h->val_off, *end = p + h->val_len;
    while (p < end) {
      while (p < end && (*p == ' ' || *p == '\t' || *p == ';')) p++;
      const char *semi = memchr(p, ';', (size_t)(end - p));
      const char *pair_end = semi ? semi : end;
      const char *eq = memchr(p, '=', (size_t)(pair_end - p));
      if (eq && (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
        const char *v = eq + 1, *ve = pair_end;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (ve - v >= 2 && *v == '"' && ve[-1] == '"') v++, ve--;
        *len = (size_t)(ve - v);
        return v;
      }
      p = pair_end;
    }
  }
  return NULL;
}

static void count(ts_hconn *c, int result) { c->http->forward_auth[result]++; }

static void add_common(ts_hbuf *hd) { ts_hbuf_str(hd, "Cache-Control: no-store\r\n"); }

static void deny(ts_hconn *c, bool bearer, int err) {
  ts_hbuf hd = {0};
  add_common(&hd);
  if (bearer && err) ts_hbuf_str(&hd, "WWW-Authenticate: Bearer realm=\"tessera\", "
                                      "error=\"invalid_token\"\r\n");
  else ts_hbuf_str(&hd, "WWW-Authenticate: Bearer realm=\"tessera\"\r\n");
  count(c, TS_FA_DENY);
  ts_hconn_send(c, 401, &hd, NULL, 0);
  ts_hbuf_free(&hd);
}

/* The original URL for ?rd=: proto://host/uri, from the trusted X-Forwarded-* headers. */
static void redirect(ts_hconn *c) {
  const ts_hreq *r = ts_hconn_req(c);
  size_t pl, hl, ul;
  const char *proto = hdr(r, "X-Forwarded-Proto", &pl);
  const char *host = hdr(r, "X-Forwarded-Host", &hl);
  const char *uri = hdr(r, "X-Forwarded-Uri", &ul);
  if (!host) host = hdr(r, "Host", &hl);
  const char *login = c->http->cfg->http_login_url;
  ts_hbuf url = {0};
  if (proto) ts_hbuf_add(&url, proto, pl);
  else ts_hbuf_str(&url, "http");
  ts_hbuf_str(&url, "://");
  if (host) ts_hbuf_add(&url, host, hl);
  if (uri) ts_hbuf_add(&url, uri, ul);
  ts_hbuf hd = {0};
  add_common(&hd);
  ts_hbuf_printf(&hd, "Location: %s%c", login, strchr(login, '?') ? '&' : '?');
  ts_hbuf_str(&hd, "rd=");
  ts_hbuf_pct(&hd, url.p ? url.p : "", url.len, true);
  ts_hbuf_str(&hd, "\r\n");
  ts_hbuf_free(&url);
  count(c, TS_FA_REDIRECT);
  ts_hconn_send(c, 302, &hd, NULL, 0);
  ts_hbuf_free(&hd);
}

static const msgpack_object *get(const msgpack_object *map, const char *key) {
  if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t i = 0; i < map->via.map.size; i++)
    if (ts_mp_str_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
  return NULL;
}

static int64_t get_int(const msgpack_object *v) {
  if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (int64_t)v->via.u64;
  if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return v->via.i64;
  return 0;
}

static void add_identity(ts_hbuf *hd, const char *prefix, const char *name,
                         const msgpack_object *v) {
  if (!v || v->type != MSGPACK_OBJECT_STR) return;
  ts_hbuf_printf(hd, "%s%s: ", prefix, name);
  ts_hbuf_pct(hd, v->via.str.ptr, v->via.str.size, false);
  ts_hbuf_str(hd, "\r\n");
}

static void allow(fa_call *fc, const msgpack_object *res) {
  ts_hconn *c = fc->c;
  const ts_config *cfg = c->http->cfg;
  const char *prefix = cfg->http_header_prefix;
  ts_hbuf hd = {0};
  add_common(&hd);
  if (fc->bearer) {
    const msgpack_object *claims = get(res, "claims");
    add_identity(&hd, prefix, "Sub", get(claims, "sub"));
    add_identity(&hd, prefix, "Scope", get(claims, "scope"));
  } else {
    add_identity(&hd, prefix, "Sub", get(res, "sub"));
    add_identity(&hd, prefix, "Handle", get(res, "handle"));
    const msgpack_object *an = get(res, "anomalies");
    if (an && an->type == MSGPACK_OBJECT_ARRAY && an->via.array.size > 0) {
      ts_hbuf_printf(&hd, "%sAnomalies: ", prefix);
      for (uint32_t i = 0; i < an->via.array.size; i++) {
        const msgpack_object *a = &an->via.array.ptr[i];
        if (a->type != MSGPACK_OBJECT_STR) continue;
        if (i) ts_hbuf_str(&hd, ",");
        ts_hbuf_pct(&hd, a->via.str.ptr, a->via.str.size, false);
      }
      ts_hbuf_str(&hd, "\r\n");
    }
    if (strcmp(cfg->http_renew_cookie, "rolling") == 0) {
      int64_t now = (int64_t)time(NULL);
      int64_t until = get_int(get(res, "idle_expires_at"));
      int64_t exp = get_int(get(res, "expires_at"));
      if (exp && exp < until) until = exp;
      if (until > now) { /* the cookie the sid came in, living until the session goes idle */
        ts_hbuf_printf(&hd, "Set-Cookie: %s=", cfg->cookie_name);
        ts_hbuf_add(&hd, fc->sid, fc->sid_len);
        ts_hbuf_printf(&hd, "; Path=/; Max-Age=%lld; Secure; HttpOnly; SameSite=%s\r\n",
                       (long long)(until - now), cfg->cookie_samesite);
      }
    }
  }
  count(c, TS_FA_ALLOW);
  ts_hconn_send(c, 200, &hd, NULL, 0);
  ts_hbuf_free_wipe(&hd);
}

static void on_reply(void *ctx, int err, const msgpack_object *res) {
  fa_call *fc = ctx;
  ts_hconn *c = fc->c;
  if (!c->closing) {
    if (!err) {
      allow(fc, res);
    } else if (err == TS_EUNAVAILABLE || err == TS_EOVERLOADED || err == TS_EINTERNAL) {
      ts_hbuf hd = {0};
      add_common(&hd);
      count(c, TS_FA_ERROR);
      ts_hconn_send(c, 503, &hd, "unavailable\n", 12);
      ts_hbuf_free(&hd);
    } else if (fc->redirect_ok) {
      redirect(c);
    } else {
      deny(c, fc->bearer, err);
    }
  }
  free(fc);
  ts_hconn_call_done(c);
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n) {
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

void ts_http_forward_auth(ts_hconn *c, size_t prefix_len) {
  (void)prefix_len; /* Envoy's original path: only the redirect would use it, and Envoy gets 401 */
  const ts_hreq *r = ts_hconn_req(c);
  const ts_config *cfg = c->http->cfg;
  size_t n;
  int dialect = D_ENVOY;
  if (c->trusted && (hdr(r, "X-Original-URI", &n) || hdr(r, "X-Original-Method", &n)))
    dialect = D_NGINX;
  else if (c->trusted && (hdr(r, "X-Forwarded-Uri", &n) || hdr(r, "X-Forwarded-Method", &n)))
    dialect = D_FORWARDED;

  fa_call *fc = calloc(1, sizeof(*fc));
  if (!fc) {
    ts_hconn_send(c, 500, NULL, NULL, 0);
    return;
  }
  fc->c = c;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, ts_wipe_sbuffer_write);
  const char *method;
  fc->sid = find_cookie(r, cfg->cookie_name, &fc->sid_len);
  size_t al;
  const char *auth = hdr(r, "Authorization", &al);
  if (fc->sid) {
    /* the client: address and user agent */
    size_t ipl = 0, ual;
    const char *ip = NULL;
    if (c->trusted) {
      ip = hdr(r, "X-Real-IP", &ipl);
      if (!ip && (ip = hdr(r, "X-Forwarded-For", &ipl))) {
        const char *comma = memrchr(ip, ',', ipl);
        if (comma) {
          ipl -= (size_t)(comma + 1 - ip);
          ip = comma + 1;
        }
        while (ipl && (*ip == ' ' || *ip == '\t')) ip++, ipl--;
        while (ipl && (ip[ipl - 1] == ' ' || ip[ipl - 1] == '\t')) ipl--;
      }
    }
    if (!ip && c->peer_ip[0]) {
      ip = c->peer_ip;
      ipl = strlen(ip);
    }
    const char *ua = hdr(r, "User-Agent", &ual);
    if (ipl > 64) ip = NULL; /* not an address; the session is then bound to none */
    msgpack_pack_map(&pk, 2);
    ts_pack_cstr(&pk, "sid");
    pack_str(&pk, fc->sid, fc->sid_len);
    ts_pack_cstr(&pk, "client");
    msgpack_pack_map(&pk, (ip && ipl ? 1 : 0) + (ua ? 1 : 0));
    if (ip && ipl) {
      ts_pack_cstr(&pk, "ip");
      pack_str(&pk, ip, ipl);
    }
    if (ua) {
      ts_pack_cstr(&pk, "ua");
      pack_str(&pk, ua, ual > 1024 ? 1024 : ual);
    }
    method = "session.validate";
  } else if (auth && al > 7 && strncasecmp(auth, "Bearer ", 7) == 0) {
    const char *tok = auth + 7;
    size_t tl = al - 7;
    while (tl && *tok == ' ') tok++, tl--;
    fc->bearer = true;
    msgpack_pack_map(&pk, 2);
    ts_pack_cstr(&pk, "token");
    pack_str(&pk, tok, tl);
    ts_pack_cstr(&pk, "check_revoked");
    msgpack_pack_true(&pk);
    method = "token.verify";
  } else {
    method = NULL;
  }
  const char *orig_method = NULL;
  size_t oml = 0;
  if (dialect == D_FORWARDED) orig_method = hdr(r, "X-Forwarded-Method", &oml);
  bool get_like = orig_method ? (oml == 3 && strncasecmp(orig_method, "GET", 3) == 0) ||
                                    (oml == 4 && strncasecmp(orig_method, "HEAD", 4) == 0)
                              : (r->method == HTTP_GET || r->method == HTTP_HEAD);
  fc->redirect_ok = cfg->http_login_url[0] && dialect == D_FORWARDED && get_like && !fc->bearer;
  if (!method) {
    ts_wipe_sbuffer_destroy(&sb);
    bool redirect_ok = fc->redirect_ok;
    free(fc);
    if (redirect_ok) redirect(c);
    else deny(c, false, 0);
    return;
  }
  c->pending++;
  int rc = ts_internal_call(c->http->server, method, sb.data, sb.size, on_reply, fc);
  ts_wipe_sbuffer_destroy(&sb);
  if (rc != 0) {
    free(fc);
    ts_hconn_call_done(c);
    count(c, TS_FA_ERROR);
    ts_hconn_send(c, 503, NULL, "unavailable\n", 12);
  }
}
