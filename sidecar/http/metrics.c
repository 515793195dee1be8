/* sidecar/http/metrics.c: GET /metrics, the Prometheus text format 0.0.4.
 *
 * Owner: the HTTP edge. Written directly (Debian packages no C client library). Every family
 * has # HELP and # TYPE; names carry base units (seconds, bytes) and counters end in _total.
 * Labels are bounded sets only (method rows, wire codes, results, kinds, doors): never a sub,
 * a handle or anything per user. Sources: ts_stats (the server's counters and observe.c's),
 * ts_domain_stats (the store's gauges, read-only), the HTTP edge's own counters, the keyring
 * (the active key's file age), and /proc/self for process_*. */
#include "hconn.h"

#include "domain.h"
#include "keyring.h"
#include "method.h"
#include "observe.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static void family(ts_hbuf *b, const char *name, const char *type, const char *help) {
  ts_hbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(ts_hbuf *b, const char *name, const char *type, const char *help, double v) {
  family(b, name, type, help);
  ts_hbuf_printf(b, "%s %.17g\n", name, v);
}

static uint64_t stat_of(const ts_stat_list *l, const char *name) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->items[i].name, name) == 0) return l->items[i].value;
  return 0;
}

/* The session cache's series: tessera_<prefix>_{hits_total,misses_total,entries} from the
 * backend's <prefix>_{hits,misses,entries} (redis_cache with Redis, session_cache with LMDB). */
static void cache_metrics(ts_hbuf *b, const ts_stat_list *l, const char *prefix) {
  static const struct {
    const char *stat, *suffix, *type, *help;
  } rows[] = {{"hits", "hits_total", "counter", "Validates answered from the session cache."},
              {"misses", "misses_total", "counter",
               "Validates the session cache could not answer (a store lookup)."},
              {"entries", "entries", "gauge", "Sessions held by the session cache."}};
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    char name[64], stat[64];
    snprintf(name, sizeof(name), "tessera_%s_%s", prefix, rows[i].suffix);
    snprintf(stat, sizeof(stat), "%s_%s", prefix, rows[i].stat);
    one(b, name, rows[i].type, rows[i].help, (double)stat_of(l, stat));
  }
}

static void process_metrics(ts_hbuf *b) {
  long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
  long long rss = 0;
  if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                         "%*d %*d %llu %llu %lld", &utime, &stime, &start, &vsize, &rss) == 5) {
    one(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.",
        (double)(utime + stime) / (double)tick);
    one(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
        (double)rss * (double)page);
    one(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
        (double)vsize);
    unsigned long long btime = 0;
    FILE *s = fopen("/proc/stat", "r");
    char line[256];
    while (s && fgets(line, sizeof(line), s))
      if (sscanf(line, "btime %llu", &btime) == 1) break;
    if (s) fclose(s);
    if (btime)
      one(b, "process_start_time_seconds", "gauge",
          "Start time of the process since unix epoch in seconds.",
          (double)btime + (double)start / (double)tick);
  }
  unsigned fds = 0;
  DIR *d = opendir("/proc/self/fd");
  for (struct dirent *e; d && (e = readdir(d));)
    if (e->d_name[0] != '.') fds++;
  if (d) closedir(d);
  one(b, "process_open_fds", "gauge", "Number of open file descriptors.", fds ? fds - 1 : 0);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    one(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
        (double)rl.rlim_cur);
}

void ts_http_metrics(ts_hconn *c) {
  ts_http *h = c->http;
  ts_server *s = h->server;
  const ts_stats *st = &s->stats;
  ts_hbuf b = {0};

  family(&b, "tessera_build_info", "gauge", "tessera's version; always 1.");
  ts_hbuf_printf(&b, "tessera_build_info{version=\"%s\"} 1\n", TESSERA_VERSION);

  family(&b, "tessera_requests_total", "counter",
         "Protocol requests answered, by method and result code (socket and HTTP edge).");
  for (size_t m = 0; m < ts_method_count(); m++)
    for (size_t k = 0; k < TS_STATS_N_CODES; k++)
      if (k == 0 || st->method_codes[m][k])
        ts_hbuf_printf(&b, "tessera_requests_total{method=\"%s\",code=\"%s\"} %llu\n",
                       ts_method_at(m)->name, ts_observe_code_name(k),
                       (unsigned long long)st->method_codes[m][k]);

  family(&b, "tessera_request_duration_seconds", "histogram",
         "Time from a request's dispatch to its reply, by method.");
  static const double bounds[] = TS_STATS_BUCKETS;
  for (size_t m = 0; m < ts_method_count(); m++) {
    const char *name = ts_method_at(m)->name;
    uint64_t cum = 0, total = 0;
    for (size_t k = 0; k < TS_STATS_N_CODES; k++) total += st->method_codes[m][k];
    for (size_t i = 0; i < TS_STATS_N_BUCKETS; i++) {
      cum += st->method_buckets[m][i];
      ts_hbuf_printf(&b, "tessera_request_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %llu\n",
                     name, bounds[i], (unsigned long long)cum);
    }
    ts_hbuf_printf(&b, "tessera_request_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %llu\n",
                   name, (unsigned long long)total);
    ts_hbuf_printf(&b, "tessera_request_duration_seconds_sum{method=\"%s\"} %.9f\n", name,
                   (double)st->method_ns[m] / 1e9);
    ts_hbuf_printf(&b, "tessera_request_duration_seconds_count{method=\"%s\"} %llu\n", name,
                   (unsigned long long)total);
  }

  family(&b, "tessera_forward_auth_total", "counter", "Forward-auth answers, by result.");
  static const char *const results[TS_FA_N] = {"allow", "deny", "redirect", "error"};
  for (int i = 0; i < TS_FA_N; i++)
    ts_hbuf_printf(&b, "tessera_forward_auth_total{result=\"%s\"} %llu\n", results[i],
                   (unsigned long long)h->forward_auth[i]);

  family(&b, "tessera_revocations_total", "counter",
         "Revocations made, by kind (sessions, refresh families, token ids, users).");
  static const char *const kinds[TS_REVOKE_N_KINDS] = {"session", "family", "jti", "user"};
  for (int i = 0; i < TS_REVOKE_N_KINDS; i++)
    ts_hbuf_printf(&b, "tessera_revocations_total{kind=\"%s\"} %llu\n", kinds[i],
                   (unsigned long long)st->revocations[i]);
  one(&b, "tessera_refresh_reuse_detected_total", "counter",
      "Rotated refresh tokens presented again (each revoked its family).",
      (double)st->refresh_reuse);

  static ts_stat_list l; /* loop thread only */
  l.n = 0;
  ts_domain_stats(s->domain, &l);
  one(&b, "tessera_sessions", "gauge", "Sessions in the store.", (double)stat_of(&l, "sessions"));
  one(&b, "tessera_refresh_families", "gauge", "Refresh token families in the store.",
      (double)stat_of(&l, "families"));
  one(&b, "tessera_store_bytes", "gauge", "Bytes of the store in use.",
      (double)stat_of(&l, "store_bytes"));
  one(&b, "tessera_store_max_bytes", "gauge", "The store's size cap in bytes.",
      (double)stat_of(&l, "store_max_bytes"));
  one(&b, "tessera_store_commits_total", "counter", "Store write transactions committed.",
      (double)stat_of(&l, "store_commits"));
  one(&b, "tessera_store_failed_commits_total", "counter", "Store commits that failed.",
      (double)stat_of(&l, "store_failed_commits"));
  one(&b, "tessera_store_up", "gauge", "1 while the store answers (Redis reachable).",
      (double)stat_of(&l, "store_up"));
  if (strcmp(s->domain->backend->ops->name, "redis") == 0) {
    one(&b, "tessera_redis_timeouts_total", "counter", "Redis requests past their deadline.",
        (double)stat_of(&l, "redis_timeouts"));
    one(&b, "tessera_redis_reconnects_total", "counter", "Redis connections made again.",
        (double)stat_of(&l, "redis_reconnects"));
    cache_metrics(&b, &l, "redis_cache");
  } else {
    one(&b, "tessera_store_disk_short", "gauge",
        "1 while the disk lacks room for the store's reserve (new data refused as at the cap).",
        (double)stat_of(&l, "store_disk_short"));
    cache_metrics(&b, &l, "session_cache");
  }

  family(&b, "tessera_connections", "gauge", "Open connections, by door.");
  ts_hbuf_printf(&b, "tessera_connections{door=\"socket\"} %u\n", s->n_conns);
  ts_hbuf_printf(&b, "tessera_connections{door=\"http\"} %u\n", h->n_conns);
  one(&b, "tessera_http_requests_total", "counter", "HTTP requests received.",
      (double)h->requests);
  family(&b, "tessera_http_connections_closed_total", "counter",
         "HTTP connections closed by a limit, by reason.");
  ts_hbuf_printf(&b, "tessera_http_connections_closed_total{reason=\"max_requests\"} %llu\n",
                 (unsigned long long)h->closed_limit);
  ts_hbuf_printf(&b, "tessera_http_connections_closed_total{reason=\"timeout\"} %llu\n",
                 (unsigned long long)h->closed_timeout);
  ts_hbuf_printf(&b, "tessera_http_connections_closed_total{reason=\"bad_request\"} %llu\n",
                 (unsigned long long)h->closed_bad);

  const ts_key *k = s->domain->keys.ring ? ts_keyring_active(s->domain->keys.ring) : NULL;
  if (k) {
    int64_t age = (int64_t)time(NULL) - k->mtime;
    one(&b, "tessera_signing_key_age_seconds", "gauge",
        "Age of the active signing key (its file's mtime) in seconds.",
        (double)(age > 0 ? age : 0));
  }
  process_metrics(&b);

  if (b.oom) {
    ts_hbuf_free(&b);
    ts_hconn_send(c, 500, NULL, "out of memory\n", 14);
    return;
  }
  ts_hbuf hd = {0};
  ts_hbuf_str(&hd, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                   "Cache-Control: no-store\r\n");
  ts_hconn_send(c, 200, &hd, b.p, b.len);
  ts_hbuf_free(&hd);
  ts_hbuf_free(&b);
}
