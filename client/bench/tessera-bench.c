/* client/bench/tessera-bench.c: a load generator for tesserad and its anchors (owned by
 * tessera-bench; the parts are listed in bench.h).
 *
 * N connections on one epoll thread, each keeping D requests in flight (pipelining), for S
 * seconds; prints requests/second and latency percentiles (send to reply), as one line or, with
 * --json, one JSON object. Workloads against tesserad (MessagePack-RPC):
 *   ping      sys.ping
 *   validate  session.validate, round robin over K sessions created at start (--keys K), or
 *             over the sids of --sids FILE (the first K of them when --keys is given too)
 *   create    session.create (a durable write: group commit)
 *   verify    token.verify of one access token (signature check in the daemon)
 *   issue     token.issue (a signature)
 *   populate  creates K sessions and prints their sids, one a line (for --sids)
 * against Redis (RESP, --socket is redis-server's unixsocket), for the side by side anchor:
 *   resp-ping   PING
 *   resp-get    GET, round robin over K keys stored first with 100-byte values (--value-size)
 *   resp-set    SET of K keys with 100-byte values
 * the token anchor, raw libsodium on this one thread (the signing input of a token issued by
 * the daemon at --socket, when one answers):
 *   sodium-sign, sodium-verify
 * and through libtessera, one thread per connection:
 *   refresh   token.pair, then a chain of token.refresh (a write each; D is forced to 1)
 *   local-verify          libtessera's in-process verifier on one token (a cache hit)
 *   local-verify-nocache  the same with the verified-token cache off (a signature check each)
 * Numbers vary with the machine and its load: compare workloads measured side by side in one
 * run (tests/bench/compare, tests/bench/run), never against a fixed threshold. */
#include "bench.h"

#include <tessera/tessera.h>
#include <tessera/verifier.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct opts {
  const char *socket, *workload, *sids_file;
  int conns, depth;
  double seconds;
  size_t keys, value_size;
  bool json, keys_set;
} opts;

/* ---- libtessera helpers (setup, threaded workloads) ---- */

static json_t *call(tessera_client *c, const char *method, json_t *params) {
  json_t *r = NULL;
  tessera_error err;
  int rc = tessera_call(c, method, params, 10000, &r, &err);
  if (rc)
    fprintf(stderr, "tessera-bench: %s: %s %s %s\n", method, tessera_strerror(rc), err.code,
            err.message);
  return rc ? NULL : r;
}

static json_t *sub_params(void) { return json_pack("{s:s}", "sub", "bench-user"); }

/* Creates n sessions, 64 in flight; returns their sids (strdup'ed) or NULL. */
static char **create_sessions(const char *socket, size_t n) {
  tessera_client *c;
  if (tessera_connect(socket, &c) != 0) return NULL;
  char **sids = calloc(n ? n : 1, sizeof(*sids));
  json_t *p = sub_params();
  uint32_t ids[64];
  size_t sent = 0, got = 0;
  int bad = !sids;
  while (!bad && got < n) {
    while (sent < n && sent - got < 64) bad |= tessera_send(c, "session.create", p, &ids[sent++ % 64]);
    json_t *r = NULL;
    tessera_error err;
    bad |= tessera_wait(c, ids[got % 64], 10000, &r, &err);
    const char *sid = json_string_value(json_object_get(r, "sid"));
    if (!bad && sid) sids[got] = strdup(sid);
    bad |= !sids[got++];
    json_decref(r);
  }
  json_decref(p);
  tessera_close(c);
  if (bad) {
    fprintf(stderr, "tessera-bench: cannot create %zu sessions\n", n);
    for (size_t i = 0; sids && i < n; i++) free(sids[i]);
    free(sids);
    return NULL;
  }
  return sids;
}

static char **read_lines(const char *path, size_t *n) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t cap = 1024, k = 0;
  char **v = malloc(cap * sizeof(*v));
  char line[512];
  while (v && fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0]) continue;
    if (k == cap) {
      char **nv = realloc(v, (cap *= 2) * sizeof(*v));
      if (!nv) break;
      v = nv;
    }
    v[k++] = strdup(line);
  }
  fclose(f);
  *n = k;
  return v;
}

/* A token issued by the daemon (NULL when none answers). */
static char *issue_token(const char *socket) {
  tessera_client *c;
  if (tessera_connect(socket, &c) != 0) return NULL;
  json_t *p = sub_params();
  json_t *r = call(c, "token.issue", p);
  json_decref(p);
  const char *t = json_string_value(json_object_get(r, "token"));
  char *tok = t ? strdup(t) : NULL;
  json_decref(r);
  tessera_close(c);
  return tok;
}

typedef struct thread_worker {
  const opts *o;
  tessera_verifier *verifier;
  const char *token;
  pthread_t thread;
  bench_result r;
  int failed;
} thread_worker;

/* refresh: a chain, each reply's refresh token feeds the next call. */
static void run_refresh(thread_worker *w, tessera_client *c, double end) {
  json_t *p0 = sub_params();
  json_t *pair = call(c, "token.pair", p0);
  json_decref(p0);
  while (pair && bench_now() < end) {
    json_t *p = json_pack("{s:O}", "refresh_token", json_object_get(pair, "refresh_token"));
    double t0 = bench_now();
    json_t *next = call(c, "token.refresh", p);
    json_decref(p);
    if (!next) {
      w->r.errors++;
      break;
    }
    bench_lat_add(&w->r.lat, (bench_now() - t0) * 1e6);
    w->r.requests++;
    json_decref(pair);
    pair = next;
  }
  json_decref(pair);
}

static void *thread_work(void *arg) {
  thread_worker *w = arg;
  double end = bench_now() + w->o->seconds;
  if (w->verifier) {
    size_t len = strlen(w->token);
    while (bench_now() < end) {
      double t0 = bench_now();
      if (tessera_verifier_verify(w->verifier, w->token, len, NULL, NULL) != 0) {
        w->r.errors++;
        break;
      }
      bench_lat_add(&w->r.lat, (bench_now() - t0) * 1e6);
      w->r.requests++;
    }
    return NULL;
  }
  tessera_client *c;
  if (tessera_connect(w->o->socket, &c) != 0) {
    w->failed = 1;
    return NULL;
  }
  run_refresh(w, c, end);
  tessera_close(c);
  return NULL;
}

static int run_threaded(const opts *o, bench_result *r) {
  tessera_verifier *v = NULL;
  char *token = NULL;
  if (strncmp(o->workload, "local-verify", 12) == 0) {
    token = issue_token(o->socket);
    tessera_verifier_options vo;
    tessera_verifier_options_init(&vo);
    vo.socket_path = o->socket;
    if (strcmp(o->workload, "local-verify-nocache") == 0) vo.cache_entries = 0;
    if (!token || tessera_verifier_new(&vo, &v, NULL) != 0) {
      fprintf(stderr, "tessera-bench: cannot set up %s\n", o->workload);
      free(token);
      return -1;
    }
  }
  thread_worker *ws = calloc((size_t)o->conns, sizeof(*ws));
  for (int i = 0; i < o->conns; i++) {
    ws[i].o = o;
    ws[i].verifier = v;
    ws[i].token = token;
    pthread_create(&ws[i].thread, NULL, thread_work, &ws[i]);
  }
  for (int i = 0; i < o->conns; i++) {
    pthread_join(ws[i].thread, NULL);
    r->requests += ws[i].r.requests;
    r->errors += ws[i].r.errors + (uint64_t)ws[i].failed;
    bench_lat_append(&r->lat, &ws[i].r.lat);
    bench_lat_free(&ws[i].r.lat);
  }
  r->seconds = o->seconds;
  free(ws);
  tessera_verifier_free(v);
  free(token);
  return 0;
}

/* ---- the epoll workloads ---- */

static char **resp_keys(size_t n) {
  char **k = calloc(n, sizeof(*k));
  for (size_t i = 0; k && i < n; i++) {
    char b[32];
    snprintf(b, sizeof(b), "key:%08zu", i);
    k[i] = strdup(b);
  }
  return k;
}

/* Builds the workload's requests (and what they need: sessions, a token, stored keys). */
static int prepare_wire(const opts *o, bench_wire *w) {
  const char *wl = o->workload;
  if (strcmp(wl, "ping") == 0) return bench_wire_rpc(w, "sys.ping", NULL, NULL, 0);
  if (strcmp(wl, "create") == 0) return bench_wire_rpc_fixed(w, "session.create", "sub", "bench-user");
  if (strcmp(wl, "issue") == 0) return bench_wire_rpc_fixed(w, "token.issue", "sub", "bench-user");
  if (strcmp(wl, "verify") == 0) {
    char *t = issue_token(o->socket);
    int rc = t ? bench_wire_rpc_fixed(w, "token.verify", "token", t) : -1;
    free(t);
    return rc;
  }
  if (strcmp(wl, "validate") == 0) {
    size_t n = o->keys;
    char **sids = o->sids_file ? read_lines(o->sids_file, &n) : create_sessions(o->socket, n);
    if (!sids || n == 0) return -1;
    while (o->sids_file && o->keys_set && n > o->keys) free(sids[--n]); /* the first K */
    return bench_wire_rpc(w, "session.validate", "sid", sids, n);
  }
  if (strcmp(wl, "resp-ping") == 0) return bench_wire_resp(w, "PING", NULL, 0, 0);
  if (strcmp(wl, "resp-set") == 0)
    return bench_wire_resp(w, "SET", resp_keys(o->keys), o->keys, o->value_size);
  if (strcmp(wl, "resp-get") == 0) {
    bench_wire set;
    if (bench_wire_resp(&set, "SET", resp_keys(o->keys), o->keys, o->value_size) != 0) return -1;
    long bad = bench_loop_once(o->socket, &set, o->keys, 64);
    bench_wire_free(&set);
    if (bad != 0) {
      fprintf(stderr, "tessera-bench: cannot store %zu keys at %s\n", o->keys, o->socket);
      return -1;
    }
    return bench_wire_resp(w, "GET", resp_keys(o->keys), o->keys, 0);
  }
  fprintf(stderr, "tessera-bench: unknown workload %s\n", wl);
  return -1;
}

static void usage(void) {
  fprintf(stderr,
          "usage: tessera-bench [--socket PATH] [--connections N] [--depth D] [--seconds S]\n"
          "                     [--keys K] [--value-size B] [--sids FILE] [--json] WORKLOAD\n"
          "  WORKLOAD: ping | validate | create | verify | issue | populate      (tesserad)\n"
          "            resp-ping | resp-get | resp-set               (Redis on --socket)\n"
          "            sodium-sign | sodium-verify                   (raw libsodium, one core)\n"
          "            refresh | local-verify | local-verify-nocache (libtessera threads)\n"
          "Prints one line (or with --json one object): requests/s, p50/p90/p99/p99.9 in us.\n");
}

int main(int argc, char **argv) {
  opts o = {tessera_default_socket(), NULL, NULL, 4, 16, 5.0, 1000, 100, false};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool v = i + 1 < argc;
    if (strcmp(a, "--socket") == 0 && v) o.socket = argv[++i];
    else if (strcmp(a, "--connections") == 0 && v) o.conns = atoi(argv[++i]);
    else if (strcmp(a, "--depth") == 0 && v) o.depth = atoi(argv[++i]);
    else if (strcmp(a, "--seconds") == 0 && v) o.seconds = atof(argv[++i]);
    else if (strcmp(a, "--keys") == 0 && v) o.keys = (size_t)atol(argv[++i]), o.keys_set = true;
    else if (strcmp(a, "--value-size") == 0 && v) o.value_size = (size_t)atol(argv[++i]);
    else if (strcmp(a, "--sids") == 0 && v) o.sids_file = argv[++i];
    else if (strcmp(a, "--json") == 0) o.json = true;
    else if (a[0] != '-' && !o.workload) o.workload = a;
    else {
      usage();
      return 2;
    }
  }
  if (!o.workload || o.conns < 1 || o.depth < 1 || o.seconds <= 0 || o.keys < 1 ||
      o.value_size < 1) {
    usage();
    return 2;
  }
  const char *wl = o.workload;
  if (strcmp(wl, "populate") == 0) {
    char **sids = create_sessions(o.socket, o.keys);
    if (!sids) return 1;
    for (size_t i = 0; i < o.keys; i++) {
      puts(sids[i]);
      free(sids[i]);
    }
    free(sids);
    return 0;
  }
  if (strcmp(wl, "refresh") == 0) o.depth = 1;
  bench_result r = {.workload = wl, .target = "tesserad", .conns = o.conns, .depth = o.depth};
  int rc;
  if (strncmp(wl, "sodium-", 7) == 0) {
    r.target = "libsodium";
    r.conns = r.depth = 1;
    char *t = issue_token(o.socket);
    const char *msg = t ? t : "tessera-bench: a stand-in for a token's signing input of about "
                              "the usual size, when no daemon answers to issue a real one ....";
    const char *dot = strrchr(msg, '.');
    size_t len = t && dot ? (size_t)(dot - msg) : strlen(msg);
    rc = bench_sodium_run(strcmp(wl, "sodium-verify") == 0, (const uint8_t *)msg, len,
                          o.seconds, &r);
    free(t);
  } else if (strcmp(wl, "refresh") == 0 || strncmp(wl, "local-verify", 12) == 0) {
    rc = run_threaded(&o, &r);
  } else {
    bench_wire w;
    if (strncmp(wl, "resp-", 5) == 0) r.target = "redis";
    if (strcmp(wl, "validate") == 0 || strcmp(wl, "resp-get") == 0 || strcmp(wl, "resp-set") == 0)
      r.keys = o.keys;
    rc = prepare_wire(&o, &w);
    if (rc == 0) {
      bench_loop_cfg cfg = {o.socket, o.conns, o.depth, o.seconds};
      rc = bench_loop_run(&cfg, &w, &r);
      if (strcmp(wl, "validate") == 0) r.keys = w.n_vals;
      bench_wire_free(&w);
    }
  }
  if (rc != 0) return 1;
  bench_print(&r, o.json);
  bench_lat_free(&r.lat);
  return r.errors ? 1 : 0;
}
