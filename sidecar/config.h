/* sidecar/config.h: tesserad's settings, from flags and TESSERA_<NAME> environment variables.
 *
 * One table (config.c) lists every option: its flag, type, default and help text; --help is
 * printed from it and the environment name is derived from the flag (--max-message ->
 * TESSERA_MAX_MESSAGE). A flag beats the environment, which beats the default. */
#ifndef TS_CONFIG_H
#define TS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TS_CONFIG_MAX_IDS 16

typedef struct ts_idlist {
  unsigned n;
  uint32_t ids[TS_CONFIG_MAX_IDS];
} ts_idlist;

typedef struct ts_config {
  /* paths */
  char *socket_path;
  char *data_dir;
  char *keys_dir;
  /* the door */
  ts_idlist allow_uids;
  ts_idlist allow_gids;
  ts_idlist admin_uids;
  int log_level;
  /* limits (PROTOCOL.md) */
  size_t max_message;
  unsigned max_depth;
  unsigned max_inflight;
  unsigned max_connections;
  int64_t message_timeout_ms;
  size_t max_write_queue;
  int64_t shutdown_timeout_ms;
  /* store */
  char *store;    /* "lmdb" or a Redis URL (store/backend.c) */
  int64_t redis_timeout_ms;
  unsigned session_cache;    /* session cache slots (0: none) */
  char *redis_password_file; /* "": none */
  size_t max_store_bytes;
  int durability; /* TS_DURABILITY_* */
  int64_t sweep_interval_ms;
  /* sessions (seconds) */
  int64_t session_ttl, session_idle_ttl, max_session_ttl;
  int bind_policy; /* TS_BIND_* */
  char *cookie_name;
  char *cookie_samesite;
  /* tokens (seconds) */
  char *issuer;
  char *audience; /* "" : none expected by default */
  int64_t leeway;
  int64_t access_ttl, max_access_ttl;
  int64_t purpose_ttl, max_purpose_ttl;
  int64_t refresh_ttl, max_refresh_ttl;
  int64_t refresh_max_lifetime; /* a family's absolute lifetime, from its token.pair */
  int64_t refresh_grace;
  int64_t jwks_max_age;
  /* the HTTP edge (sidecar/http/, proto/HTTP.md) and the audit stream */
  char *http_listen;          /* "" : off; HOST:PORT or unix:PATH */
  char *http_trusted_proxies; /* comma-separated CIDRs whose X-Forwarded-* are believed */
  char *http_login_url;       /* "" : deny with 401, never redirect */
  char *http_header_prefix;   /* identity headers: <prefix>Sub, Handle, Scope, Anomalies */
  char *http_renew_cookie;    /* "off" | "rolling" */
  size_t http_max_header;
  unsigned http_max_requests;
  int64_t http_idle_timeout_ms;
  char *audit_log;            /* "" : off; a path or "stderr" */
} ts_config;

enum { TS_DURABILITY_FULL = 0, TS_DURABILITY_RELAXED = 1 };
enum { TS_BIND_REPORT = 0, TS_BIND_ENFORCE = 1 };

/* Fills c with defaults, then the environment, then argv. Returns 0; 1 when --help or
 * --version was printed (exit 0); or TS_ECONFIG after printing the reason to stderr. The
 * strings in c are owned by c: release with ts_config_free. */
int ts_config_load(ts_config *c, int argc, char **argv);
void ts_config_free(ts_config *c);
bool ts_idlist_has(const ts_idlist *l, uint32_t id);
/* The longest life any token of ours may have (the largest of --max-access-ttl,
 * --max-refresh-ttl and --max-purpose-ttl), without the leeway. */
int64_t ts_config_longest_ttl(const ts_config *c);

#endif
