/* sidecar/store/redis/url.c: --store redis URLs (see redis.h).
 *
 *   redis+unix:///PATH[?db=N]
 *   redis://[[USER]:PASSWORD@]HOST:PORT[/DB]
 *   redis-sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]
 * The password is the URL's, else $TESSERA_REDIS_PASSWORD, else the first line of
 * --redis-password-file. It is a secret: errors name the part that is wrong, never the value,
 * and logs show rb_url_masked. */
#include "redis.h"

#include "error.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool copy(char *out, size_t cap, const char *s, size_t n) {
  if (n >= cap) return false;
  memcpy(out, s, n);
  out[n] = 0;
  return true;
}

static bool parse_port(const char *s, size_t n, int *port) {
  if (n == 0 || n > 5) return false;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *port = v;
  return v > 0 && v < 65536;
}

static bool parse_db(const char *s, size_t n, int *db) {
  if (n == 0 || n > 4) return false;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *db = v;
  return true;
}

/* HOST:PORT (an IPv6 host in brackets). */
static bool parse_hostport(const char *s, size_t n, rb_addr *a) {
  const char *colon = NULL;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close || close + 1 >= s + n || close[1] != ':') return false;
    colon = close + 1;
    return copy(a->host, sizeof(a->host), s + 1, (size_t)(close - s - 1)) && close > s + 1 &&
           parse_port(colon + 1, (size_t)(s + n - colon - 1), &a->port);
  }
  for (size_t i = 0; i < n; i++)
    if (s[i] == ':') colon = s + i;
  if (!colon || colon == s) return false;
  return copy(a->host, sizeof(a->host), s, (size_t)(colon - s)) &&
         parse_port(colon + 1, (size_t)(s + n - colon - 1), &a->port);
}

/* [USER]:PASSWORD@ at the start of the authority; returns the rest. */
static const char *parse_userinfo(rb_url *u, const char *auth, const char *end, bool *ok) {
  const char *at = NULL;
  for (const char *p = auth; p < end; p++)
    if (*p == '@') at = p;
  *ok = true;
  if (!at) return auth;
  const char *colon = memchr(auth, ':', (size_t)(at - auth));
  if (!colon) {
    *ok = false; /* a user without a password: ambiguous, refused */
    return auth;
  }
  *ok = copy(u->user, sizeof(u->user), auth, (size_t)(colon - auth)) &&
        copy(u->password, sizeof(u->password), colon + 1, (size_t)(at - colon - 1));
  return at + 1;
}

static int password_from_file(rb_url *u, const char *path, const char **why) {
  FILE *f = fopen(path, "r");
  if (!f) {
    *why = "cannot read --redis-password-file";
    return TS_ECONFIG;
  }
  char line[sizeof(u->password) + 2];
  size_t n = fread(line, 1, sizeof(line) - 1, f);
  fclose(f);
  line[n] = 0;
  n = strcspn(line, "\r\n");
  bool ok = n > 0 && copy(u->password, sizeof(u->password), line, n);
  sodium_memzero(line, sizeof(line));
  if (!ok) {
    *why = "--redis-password-file holds no usable password (empty, or over 511 bytes)";
    return TS_ECONFIG;
  }
  return 0;
}

int rb_url_parse(rb_url *u, const char *url, const char *password_file, const char **why) {
  memset(u, 0, sizeof(*u));
  *why = NULL;
  static const char unix_p[] = "redis+unix://", tcp_p[] = "redis://",
                    sen_p[] = "redis-sentinel://";
  if (strncmp(url, unix_p, sizeof(unix_p) - 1) == 0) {
    u->mode = RB_UNIX;
    const char *p = url + sizeof(unix_p) - 1;
    const char *q = strchr(p, '?');
    size_t n = q ? (size_t)(q - p) : strlen(p);
    if (n == 0 || p[0] != '/' || !copy(u->path, sizeof(u->path), p, n)) {
      *why = "redis+unix:// needs an absolute socket path (redis+unix:///run/redis.sock)";
      return TS_ECONFIG;
    }
    if (q && (strncmp(q, "?db=", 4) != 0 || !parse_db(q + 4, strlen(q + 4), &u->db))) {
      *why = "redis+unix:// takes only ?db=N";
      return TS_ECONFIG;
    }
  } else if (strncmp(url, tcp_p, sizeof(tcp_p) - 1) == 0 ||
             strncmp(url, sen_p, sizeof(sen_p) - 1) == 0) {
    bool sentinel = url[5] == '-';
    u->mode = sentinel ? RB_SENTINEL : RB_TCP;
    const char *auth = url + (sentinel ? sizeof(sen_p) : sizeof(tcp_p)) - 1;
    const char *slash = strchr(auth, '/');
    const char *end = slash ? slash : auth + strlen(auth);
    bool ok;
    const char *hosts = parse_userinfo(u, auth, end, &ok);
    if (!ok) {
      *why = "the URL's user info must be [USER]:PASSWORD@";
      return TS_ECONFIG;
    }
    const char *path = slash ? slash + 1 : NULL;
    if (!sentinel) {
      if (!parse_hostport(hosts, (size_t)(end - hosts), &u->addr)) {
        *why = "redis:// needs HOST:PORT";
        return TS_ECONFIG;
      }
      if (path && *path && !parse_db(path, strlen(path), &u->db)) {
        *why = "redis://HOST:PORT/DB: DB must be a number";
        return TS_ECONFIG;
      }
    } else {
      for (const char *p = hosts; p < end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        if (u->n_sentinels == RB_MAX_SENTINELS ||
            !parse_hostport(p, (size_t)(e - p), &u->sentinels[u->n_sentinels])) {
          *why = "redis-sentinel:// needs HOST:PORT[,HOST:PORT...] (at most 8)";
          return TS_ECONFIG;
        }
        u->n_sentinels++;
        p = comma ? comma + 1 : end;
      }
      const char *db = path ? strchr(path, '/') : NULL;
      size_t mlen = path ? (db ? (size_t)(db - path) : strlen(path)) : 0;
      if (u->n_sentinels == 0 || mlen == 0 || !copy(u->master, sizeof(u->master), path, mlen)) {
        *why = "redis-sentinel:// needs HOST:PORT[,...]/MASTER";
        return TS_ECONFIG;
      }
      if (db && !parse_db(db + 1, strlen(db + 1), &u->db)) {
        *why = "redis-sentinel://.../MASTER/DB: DB must be a number";
        return TS_ECONFIG;
      }
    }
  } else {
    *why = "--store must be lmdb, redis+unix:///PATH, redis://HOST:PORT[/DB] or "
           "redis-sentinel://HOST:PORT[,...]/MASTER";
    return TS_ECONFIG;
  }
  if (!u->password[0]) {
    const char *env = getenv("TESSERA_REDIS_PASSWORD");
    if (env && *env) {
      if (!copy(u->password, sizeof(u->password), env, strlen(env))) {
        *why = "TESSERA_REDIS_PASSWORD is over 511 bytes";
        return TS_ECONFIG;
      }
    } else if (password_file && *password_file) {
      return password_from_file(u, password_file, why);
    }
  }
  return 0;
}

void rb_url_masked(const char *url, char *out, size_t cap) {
  const char *scheme = strstr(url, "://");
  const char *auth = scheme ? scheme + 3 : url;
  const char *slash = strchr(auth, '/');
  const char *end = slash ? slash : auth + strlen(auth);
  const char *at = NULL;
  for (const char *p = auth; p < end; p++)
    if (*p == '@') at = p;
  if (!at) {
    snprintf(out, cap, "%s", url);
    return;
  }
  const char *colon = memchr(auth, ':', (size_t)(at - auth));
  size_t keep = colon ? (size_t)(colon - url) : (size_t)(auth - url);
  snprintf(out, cap, "%.*s:***%s", (int)keep, url, at);
}

void rb_url_wipe(rb_url *u) { sodium_memzero(u->password, sizeof(u->password)); }
