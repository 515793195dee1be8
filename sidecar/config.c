/* sidecar/config.c: tesserad's settings (see config.h).
 *
 * One table of option rows drives everything: parsing a flag, the TESSERA_<NAME> environment
 * variable derived from it, and --help. Values are checked here, once, at start (sizes,
 * durations, uid/gid lists, enums); the rest of the daemon reads a const ts_config and never
 * validates a setting again. Runs before the loop and any thread exist. */
#include "config.h"

#include "error.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum opt_type {
  OPT_STR, OPT_UINT, OPT_SIZE, OPT_MILLIS, OPT_SECONDS, OPT_UIDS, OPT_GIDS, OPT_LEVEL,
  OPT_DURABILITY, OPT_BIND, OPT_SAMESITE, OPT_STR0, OPT_SECONDS0, OPT_COUNT0
};

typedef struct option_row {
  const char *flag; /* without the leading "--" */
  enum opt_type type;
  size_t offset;    /* into ts_config */
  const char *def;  /* default as text; NULL: computed (uid/gid lists) */
  const char *help;
} option_row;

#define OFF(field) offsetof(ts_config, field)
static const option_row options[] = {
  {"socket", OPT_STR, OFF(socket_path), "/run/tessera/tesserad.sock",
   "Unix socket to listen on; its directory is created 0750, the socket is 0660"},
  {"store", OPT_STR, OFF(store), "lmdb",
   "lmdb (the embedded store in --data) | redis+unix:///PATH[?db=N] | "
   "redis://[user:pass@]HOST:PORT[/DB] | redis-sentinel://HOST:PORT[,HOST:PORT...]/MASTER"},
  {"data", OPT_STR, OFF(data_dir), "/var/lib/tessera", "LMDB data directory"},
  {"redis-timeout", OPT_MILLIS, OFF(redis_timeout_ms), "200ms",
   "deadline of each Redis request; past it the connection is re-established (ms, or s suffix)"},
  {"session-cache", OPT_COUNT0, OFF(session_cache), "64K",
   "sessions kept in memory for validate, coherent with the store (LMDB: this daemon's own "
   "writes; Redis: CLIENT TRACKING) (0: none; up to 16M)"},
  {"redis-password-file", OPT_STR0, OFF(redis_password_file), "",
   "file holding the Redis password (also TESSERA_REDIS_PASSWORD; never logged)"},
  {"keys", OPT_STR, OFF(keys_dir), "/var/lib/tessera/keys", "directory of Ed25519 JWK key files"},
  {"allow-uid", OPT_UIDS, OFF(allow_uids), NULL,
   "comma-separated uids (or user names) allowed to connect (default: the daemon's own uid)"},
  {"allow-gid", OPT_GIDS, OFF(allow_gids), NULL,
   "comma-separated gids (or group names) allowed to connect (default: the daemon's own gid)"},
  {"admin-uid", OPT_UIDS, OFF(admin_uids), NULL,
   "comma-separated uids allowed to call admin methods (default: the daemon's own uid)"},
  {"log-level", OPT_LEVEL, OFF(log_level), "info", "debug | info | warn | error"},
  {"max-message", OPT_SIZE, OFF(max_message), "64K", "largest message accepted (bytes; K/M suffix)"},
  {"max-depth", OPT_UINT, OFF(max_depth), "8", "deepest nesting inside params"},
  {"max-inflight", OPT_UINT, OFF(max_inflight), "1024",
   "requests in flight on one connection before reading pauses"},
  {"max-connections", OPT_UINT, OFF(max_connections), "1024",
   "open connections; more wait in the listen backlog"},
  {"message-timeout", OPT_MILLIS, OFF(message_timeout_ms), "10s",
   "a message must be complete this long after its first byte (ms, or s/m suffix)"},
  {"max-write-queue", OPT_SIZE, OFF(max_write_queue), "4M",
   "unsent reply bytes on one connection before reading pauses"},
  {"shutdown-timeout", OPT_MILLIS, OFF(shutdown_timeout_ms), "10s",
   "on SIGTERM, how long to wait for replies to drain before closing connections"},
  {"max-store-bytes", OPT_SIZE, OFF(max_store_bytes), "1G",
   "size cap of the LMDB store; new data stops at the cap minus a reserve (1/8, 256K..64M) kept for "
   "revocations and deletes, then answers `unavailable`"},
  {"durability", OPT_DURABILITY, OFF(durability), "full",
   "full: a write is acknowledged after fsync | relaxed: no fsync per commit, synced every second"},
  {"sweep-interval", OPT_MILLIS, OFF(sweep_interval_ms), "1s",
   "how often the sweeper deletes expired sessions and revocations"},
  {"session-ttl", OPT_SECONDS, OFF(session_ttl), "8h",
   "default absolute session lifetime (seconds, or m/h/d suffix)"},
  {"session-idle-ttl", OPT_SECONDS, OFF(session_idle_ttl), "30m", "default session idle timeout"},
  {"max-session-ttl", OPT_SECONDS, OFF(max_session_ttl), "30d",
   "largest ttl / idle_ttl a caller may ask for"},
  {"bind-policy", OPT_BIND, OFF(bind_policy), "report",
   "report: flag ip/ua changes in `anomalies` | enforce: a changed, empty or missing user agent "
   "(when one was bound at create) revokes the session"},
  {"cookie-name", OPT_STR, OFF(cookie_name), "__Host-sid", "session cookie name"},
  {"cookie-samesite", OPT_SAMESITE, OFF(cookie_samesite), "Lax", "Strict | Lax | None"},
  {"issuer", OPT_STR, OFF(issuer), "tessera", "the iss claim of every token issued and expected"},
  {"audience", OPT_STR0, OFF(audience), "",
   "default expected audience for token.verify (empty: tokens carrying aud are refused)"},
  {"leeway", OPT_SECONDS0, OFF(leeway), "60", "clock skew allowed on exp, nbf and iat (seconds)"},
  {"access-ttl", OPT_SECONDS, OFF(access_ttl), "15m", "default access token lifetime"},
  {"max-access-ttl", OPT_SECONDS, OFF(max_access_ttl), "24h", "largest access ttl a caller may ask"},
  {"purpose-ttl", OPT_SECONDS, OFF(purpose_ttl), "24h", "default purpose token lifetime"},
  {"max-purpose-ttl", OPT_SECONDS, OFF(max_purpose_ttl), "30d", "largest purpose token ttl"},
  {"refresh-ttl", OPT_SECONDS, OFF(refresh_ttl), "30d", "default refresh token lifetime"},
  {"max-refresh-ttl", OPT_SECONDS, OFF(max_refresh_ttl), "365d", "largest refresh ttl"},
  {"refresh-max-lifetime", OPT_SECONDS, OFF(refresh_max_lifetime), "90d",
   "absolute lifetime of a refresh family from its token.pair: no rotation extends it"},
  {"refresh-grace", OPT_SECONDS0, OFF(refresh_grace), "10",
   "a rotated refresh token presented again within this many seconds gets the same successor"},
  {"jwks-max-age", OPT_SECONDS, OFF(jwks_max_age), "300",
   "seconds a client may cache keys.jwks (max_age)"},
  /* the HTTP edge (proto/HTTP.md) */
  {"http-listen", OPT_STR0, OFF(http_listen), "",
   "serve forward-auth, JWKS, metrics and probes over HTTP/1.1 on HOST:PORT or unix:PATH (off)"},
  {"http-trusted-proxies", OPT_STR0, OFF(http_trusted_proxies), "127.0.0.0/8,::1",
   "comma-separated CIDRs whose X-Forwarded-* and X-Original-* headers are believed "
   "(peers on a unix: listener always are)"},
  {"http-login-url", OPT_STR0, OFF(http_login_url), "",
   "forward-auth answers 302 to this URL (?rd=<original URL>) for a denied browser GET that "
   "came with X-Forwarded-* (Traefik, Caddy); empty: always 401"},
  {"http-header-prefix", OPT_STR, OFF(http_header_prefix), "X-Auth-",
   "prefix of the identity headers forward-auth sets: Sub, Handle, Scope, Anomalies"},
  {"http-renew-cookie", OPT_STR, OFF(http_renew_cookie), "off",
   "off | rolling: forward-auth renews the session cookie on every allow (Max-Age: until the "
   "session would go idle)"},
  {"http-max-header", OPT_SIZE, OFF(http_max_header), "16K",
   "largest request line plus headers (bytes); larger: 431 and the connection closes"},
  {"http-max-requests", OPT_UINT, OFF(http_max_requests), "1000",
   "requests served on one keep-alive connection before it closes"},
  {"http-idle-timeout", OPT_MILLIS, OFF(http_idle_timeout_ms), "60s",
   "a keep-alive connection with no request started for this long closes"},
  {"audit-log", OPT_STR0, OFF(audit_log), "",
   "write one JSON line per security event to this file (appended) or `stderr`; empty: off"},
};
#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static void env_name(const char *flag, char *out, size_t cap) {
  size_t n = snprintf(out, cap, "TESSERA_");
  for (const char *p = flag; *p && n + 1 < cap; p++) out[n++] = *p == '-' ? '_' : (char)toupper(*p);
  out[n] = 0;
}

/* "64K" -> 65536; returns false on junk. */
static bool parse_size(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *s == '-') return false;
  uint64_t mul = 1;
  if (*end == 'K' || *end == 'k') mul = 1024, end++;
  else if (*end == 'M' || *end == 'm') mul = 1024 * 1024, end++;
  else if (*end == 'G' || *end == 'g') mul = 1024ull * 1024 * 1024, end++;
  if (*end) return false;
  *out = v * mul;
  return v <= UINT64_MAX / mul;
}

/* "8h" -> 28800 seconds; "90" -> 90. */
static bool parse_seconds(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v <= 0) return false;
  long long mul = 1;
  if (*end == 0 || strcmp(end, "s") == 0) mul = 1;
  else if (strcmp(end, "m") == 0) mul = 60;
  else if (strcmp(end, "h") == 0) mul = 3600;
  else if (strcmp(end, "d") == 0) mul = 86400;
  else return false;
  if (v > INT64_MAX / mul / 1000) return false;
  *out = v * mul;
  return true;
}

/* "10s" -> 10000, "250" -> 250 (milliseconds), "2m" -> 120000. */
static bool parse_millis(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || v < 0) return false;
  long long mul = 1;
  if (strcmp(end, "ms") == 0 || *end == 0) mul = 1;
  else if (strcmp(end, "s") == 0) mul = 1000;
  else if (strcmp(end, "m") == 0) mul = 60000;
  else if (strcmp(end, "h") == 0) mul = 3600000;
  else return false;
  *out = v * mul;
  return true;
}

static bool parse_id(const char *s, bool group, uint32_t *out) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (!errno && end != s && *end == 0 && *s != '-' && v <= UINT32_MAX) {
    *out = (uint32_t)v;
    return true;
  }
  if (group) {
    struct group *g = getgrnam(s);
    if (g) *out = g->gr_gid;
    return g != NULL;
  }
  struct passwd *p = getpwnam(s);
  if (p) *out = p->pw_uid;
  return p != NULL;
}

static bool parse_ids(const char *s, bool group, ts_idlist *l) {
  char buf[1024];
  snprintf(buf, sizeof(buf), "%s", s);
  l->n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (l->n == TS_CONFIG_MAX_IDS || !parse_id(tok, group, &l->ids[l->n])) return false;
    l->n++;
  }
  return l->n > 0;
}

static bool set_option(ts_config *c, const option_row *o, const char *v) {
  void *field = (char *)c + o->offset;
  uint64_t u;
  switch (o->type) {
  case OPT_STR:
    free(*(char **)field);
    *(char **)field = strdup(v);
    return *(char **)field != NULL && *v;
  case OPT_UINT:
    if (!parse_size(v, &u) || u == 0 || u > 1000000) return false;
    *(unsigned *)field = (unsigned)u;
    return true;
  case OPT_COUNT0: /* zero allowed */
    if (!parse_size(v, &u) || u > (1u << 24)) return false;
    *(unsigned *)field = (unsigned)u;
    return true;
  case OPT_SIZE:
    if (!parse_size(v, &u) || u == 0 || u > (1ull << 40)) return false;
    *(size_t *)field = (size_t)u;
    return true;
  case OPT_MILLIS: return parse_millis(v, (int64_t *)field) && *(int64_t *)field > 0;
  case OPT_SECONDS: return parse_seconds(v, (int64_t *)field);
  case OPT_SECONDS0: /* zero allowed */
    if (strcmp(v, "0") == 0) return (*(int64_t *)field = 0) == 0;
    return parse_seconds(v, (int64_t *)field);
  case OPT_STR0: /* empty allowed */
    free(*(char **)field);
    return (*(char **)field = strdup(v)) != NULL;
  case OPT_DURABILITY:
    if (strcmp(v, "full") && strcmp(v, "relaxed")) return false;
    *(int *)field = strcmp(v, "full") == 0 ? TS_DURABILITY_FULL : TS_DURABILITY_RELAXED;
    return true;
  case OPT_BIND:
    if (strcmp(v, "report") && strcmp(v, "enforce")) return false;
    *(int *)field = strcmp(v, "report") == 0 ? TS_BIND_REPORT : TS_BIND_ENFORCE;
    return true;
  case OPT_SAMESITE:
    if (strcmp(v, "Strict") && strcmp(v, "Lax") && strcmp(v, "None")) return false;
    free(*(char **)field);
    return (*(char **)field = strdup(v)) != NULL;
  case OPT_UIDS: return parse_ids(v, false, (ts_idlist *)field);
  case OPT_GIDS: return parse_ids(v, true, (ts_idlist *)field);
  case OPT_LEVEL: return (*(int *)field = ts_log_parse_level(v)) >= 0;
  }
  return false;
}

static void print_help(void) {
  printf("usage: tesserad [OPTIONS]\n\n"
         "The tessera authentication sidecar: sessions, Ed25519 JWTs and refresh tokens over\n"
         "MessagePack-RPC on a Unix socket. Each option can also be set in the environment as\n"
         "TESSERA_<NAME> (e.g. --max-message as TESSERA_MAX_MESSAGE); a flag wins.\n\n");
  for (size_t i = 0; i < N_OPTIONS; i++) {
    char env[64];
    env_name(options[i].flag, env, sizeof(env));
    printf("  --%-20s %s\n  %-22s [%s; default %s]\n", options[i].flag, options[i].help, "", env,
           options[i].def ? options[i].def : "see above");
  }
  printf("  --%-20s %s\n  --%-20s %s\n", "help", "print this help", "version", "print the version");
}

static const option_row *find_option(const char *flag) {
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (strcmp(options[i].flag, flag) == 0) return &options[i];
  return NULL;
}

static int bad(const char *what, const char *flag, const char *value) {
  fprintf(stderr, "tesserad: %s --%s%s%s\n", what, flag, value ? " " : "", value ? value : "");
  return TS_ECONFIG;
}

int ts_config_load(ts_config *c, int argc, char **argv) {
  memset(c, 0, sizeof(*c));
  c->allow_uids = (ts_idlist){1, {(uint32_t)geteuid()}};
  c->allow_gids = (ts_idlist){1, {(uint32_t)getegid()}};
  c->admin_uids = (ts_idlist){1, {(uint32_t)geteuid()}};
  for (size_t i = 0; i < N_OPTIONS; i++) {
    char env[64];
    env_name(options[i].flag, env, sizeof(env));
    const char *v = getenv(env);
    if (options[i].def && !set_option(c, &options[i], options[i].def))
      return bad("bad default for", options[i].flag, options[i].def);
    if (v && !set_option(c, &options[i], v)) {
      fprintf(stderr, "tesserad: invalid value in %s\n", env);
      return TS_ECONFIG;
    }
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      print_help();
      return 1;
    }
    if (strcmp(a, "--version") == 0) {
      printf("tesserad %s\n", TESSERA_VERSION);
      return 1;
    }
    if (strncmp(a, "--", 2) != 0) return bad("unexpected argument (options start with --):", "", a);
    char flag[64];
    const char *eq = strchr(a + 2, '=');
    const char *value;
    snprintf(flag, sizeof(flag), "%.*s", eq ? (int)(eq - a - 2) : (int)strlen(a + 2), a + 2);
    const option_row *o = find_option(flag);
    if (!o) return bad("unknown option", flag, NULL);
    if (eq) value = eq + 1;
    else if (i + 1 < argc) value = argv[++i];
    else return bad("missing value for", flag, NULL);
    if (!set_option(c, o, value)) return bad("invalid value for", flag, value);
  }
  /* msgpack-c's unpacker stops at 32 nested containers; the envelope takes two. */
  if (c->max_depth > 30) return bad("at most 30 for", "max-depth", NULL);
  if (c->max_message > (1u << 30)) return bad("at most 1G for", "max-message", NULL);
  if (c->access_ttl > c->max_access_ttl || c->purpose_ttl > c->max_purpose_ttl ||
      c->refresh_ttl > c->max_refresh_ttl)
    return bad("a default ttl above its maximum:", "max-*-ttl", NULL);
  if (c->session_ttl > c->max_session_ttl || c->session_idle_ttl > c->max_session_ttl)
    return bad("session ttls above", "max-session-ttl", NULL);
  if (strcmp(c->http_renew_cookie, "off") && strcmp(c->http_renew_cookie, "rolling"))
    return bad("off or rolling for", "http-renew-cookie", c->http_renew_cookie);
  for (const char *p = c->cookie_name; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("!#$%&'*+-.^_`|~", *p))
      return bad("not a cookie name token:", "cookie-name", c->cookie_name);
  return 0;
}

void ts_config_free(ts_config *c) {
  for (size_t i = 0; i < N_OPTIONS; i++)
    if (options[i].type == OPT_STR || options[i].type == OPT_STR0 ||
        options[i].type == OPT_SAMESITE) {
      char **p = (char **)((char *)c + options[i].offset);
      free(*p);
      *p = NULL;
    }
}

bool ts_idlist_has(const ts_idlist *l, uint32_t id) {
  for (unsigned i = 0; i < l->n; i++)
    if (l->ids[i] == id) return true;
  return false;
}

int64_t ts_config_longest_ttl(const ts_config *c) {
  int64_t m = c->max_access_ttl;
  if (c->max_refresh_ttl > m) m = c->max_refresh_ttl;
  if (c->max_purpose_ttl > m) m = c->max_purpose_ttl;
  return m;
}
