/* client/bench/tessera-bench.c: a load generator for tesserad.
 *
 * N connections (one thread each), each keeping D requests in flight (pipelining), for S
 * seconds. Prints requests/second and latency percentiles (from send to reply) for the chosen
 * workload. Workloads:
 *   ping      sys.ping
 *   validate  session.validate of one session created at start (a store read)
 *   create    session.create (a durable write: group commit)
 *   verify    token.verify of one access token (signature check in the daemon)
 *   issue     token.issue (a signature)
 *   refresh   token.pair, then a chain of token.refresh (a write each; D is forced to 1)
 *   local-verify          libtessera's in-process verifier on one token (a cache hit)
 *   local-verify-nocache  the same with the verified-token cache off (a signature check each)
 * Numbers vary with the machine and its load: compare workloads measured side by side in one
 * run (tests/bench/run does that), never against a fixed threshold. */
#include <tessera/tessera.h>
#include <tessera/verifier.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct bench {
  const char *socket;
  const char *workload;
  int connections, depth;
  double seconds;
  json_t *params; /* the request params for the workload */
  const char *method;
  tessera_verifier *verifier; /* local-verify workloads */
  char *token;                /* local-verify workloads */
} bench;

typedef struct worker {
  const bench *b;
  pthread_t thread;
  uint64_t done, errors;
  double *lat; /* microseconds */
  size_t n_lat, cap_lat;
  int failed;
} worker;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void record(worker *w, double us) {
  if (w->n_lat == w->cap_lat) {
    size_t cap = w->cap_lat ? w->cap_lat * 2 : 4096;
    double *l = realloc(w->lat, cap * sizeof(*l));
    if (!l) return;
    w->lat = l;
    w->cap_lat = cap;
  }
  w->lat[w->n_lat++] = us;
}

static json_t *call(tessera_client *c, const char *method, json_t *params) {
  json_t *r = NULL;
  tessera_error err;
  int rc = tessera_call(c, method, params, 10000, &r, &err);
  if (rc) {
    fprintf(stderr, "tessera-bench: %s: %s %s %s\n", method, tessera_strerror(rc), err.code,
            err.message);
    return NULL;
  }
  return r;
}

/* refresh: a chain, each reply's refresh token feeds the next call. */
static void run_refresh(worker *w, tessera_client *c, double end) {
  json_t *pair = call(c, "token.pair", w->b->params);
  while (pair && now_s() < end) {
    json_t *p = json_pack("{s:O}", "refresh_token", json_object_get(pair, "refresh_token"));
    double t0 = now_s();
    json_t *next = call(c, "token.refresh", p);
    json_decref(p);
    if (!next) {
      w->errors++;
      break;
    }
    record(w, (now_s() - t0) * 1e6);
    w->done++;
    json_decref(pair);
    pair = next;
  }
  json_decref(pair);
}

/* local-verify: in-process verification, no daemon call per verify. */
static void run_local(worker *w, double end) {
  const bench *b = w->b;
  size_t len = strlen(b->token);
  while (now_s() < end) {
    double t0 = now_s();
    if (tessera_verifier_verify(b->verifier, b->token, len, NULL, NULL) != 0) {
      w->errors++;
      break;
    }
    record(w, (now_s() - t0) * 1e6);
    w->done++;
  }
}

static void *work(void *arg) {
  worker *w = arg;
  const bench *b = w->b;
  if (b->verifier) {
    run_local(w, now_s() + b->seconds);
    return NULL;
  }
  tessera_client *c;
  if (tessera_connect(b->socket, &c) != 0) {
    w->failed = 1;
    return NULL;
  }
  double end = now_s() + b->seconds;
  if (strcmp(b->workload, "refresh") == 0) {
    run_refresh(w, c, end);
    tessera_close(c);
    return NULL;
  }
  int depth = b->depth;
  uint32_t *ids = calloc((size_t)depth, sizeof(*ids));
  double *sent = calloc((size_t)depth, sizeof(*sent));
  for (int i = 0; i < depth; i++) {
    tessera_send(c, b->method, b->params, &ids[i]);
    sent[i] = now_s();
  }
  for (int i = 0;; i = (i + 1) % depth) {
    json_t *r = NULL;
    tessera_error err;
    int rc = tessera_wait(c, ids[i], 10000, &r, &err);
    double t = now_s();
    json_decref(r);
    if (rc == 0) {
      w->done++;
      record(w, (t - sent[i]) * 1e6);
    } else {
      w->errors++;
      if (rc != TESSERA_EREMOTE) break;
    }
    if (t >= end) {
      for (int k = 1; k < depth; k++) tessera_wait(c, ids[(i + k) % depth], 10000, NULL, NULL);
      break;
    }
    tessera_send(c, b->method, b->params, &ids[i]);
    sent[i] = now_s();
  }
  free(ids);
  free(sent);
  tessera_close(c);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Prepares the params of the workload (creating a session or a token when it needs one). */
static int prepare(bench *b) {
  tessera_client *c;
  if (tessera_connect(b->socket, &c) != 0) {
    fprintf(stderr, "tessera-bench: cannot connect to %s\n", b->socket);
    return -1;
  }
  const char *w = b->workload;
  json_t *r = NULL;
  if (strcmp(w, "ping") == 0) {
    b->method = "sys.ping";
  } else if (strcmp(w, "create") == 0) {
    b->method = "session.create";
    b->params = json_pack("{s:s}", "sub", "bench-user");
  } else if (strcmp(w, "issue") == 0) {
    b->method = "token.issue";
    b->params = json_pack("{s:s}", "sub", "bench-user");
  } else if (strcmp(w, "refresh") == 0) {
    b->method = "token.refresh";
    b->params = json_pack("{s:s}", "sub", "bench-user");
  } else if (strcmp(w, "validate") == 0) {
    json_t *p = json_pack("{s:s}", "sub", "bench-user");
    r = call(c, "session.create", p);
    json_decref(p);
    b->method = "session.validate";
    if (r) b->params = json_pack("{s:O}", "sid", json_object_get(r, "sid"));
  } else if (strncmp(w, "local-verify", 12) == 0) {
    json_t *p = json_pack("{s:s}", "sub", "bench-user");
    r = call(c, "token.issue", p);
    json_decref(p);
    tessera_verifier_options o;
    tessera_verifier_options_init(&o);
    o.socket_path = b->socket;
    if (strcmp(w, "local-verify-nocache") == 0) o.cache_entries = 0;
    else if (strcmp(w, "local-verify") != 0) r = (json_decref(r), NULL);
    if (r && tessera_verifier_new(&o, &b->verifier, NULL) == 0)
      b->token = strdup(json_string_value(json_object_get(r, "token")));
    if (!b->token) {
      fprintf(stderr, "tessera-bench: cannot set up %s\n", w);
      json_decref(r);
      tessera_close(c);
      return -1;
    }
  } else if (strcmp(w, "verify") == 0) {
    json_t *p = json_pack("{s:s}", "sub", "bench-user");
    r = call(c, "token.issue", p);
    json_decref(p);
    b->method = "token.verify";
    if (r) b->params = json_pack("{s:O}", "token", json_object_get(r, "token"));
  } else {
    fprintf(stderr, "tessera-bench: unknown workload %s\n", w);
    tessera_close(c);
    return -1;
  }
  json_decref(r);
  tessera_close(c);
  return 0;
}

static void usage(void) {
  fprintf(stderr,
          "usage: tessera-bench [--socket PATH] [--connections N] [--depth D] [--seconds S]\n"
          "                     WORKLOAD   (ping | validate | create | verify | issue | refresh |\n"
          "                                 local-verify | local-verify-nocache)\n"
          "Prints one line: workload, requests/s, p50/p90/p99 latency in microseconds.\n");
}

int main(int argc, char **argv) {
  bench b = {tessera_default_socket(), NULL, 4, 16, 5.0, NULL, NULL};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--socket") == 0 && v) b.socket = argv[++i];
    else if (strcmp(a, "--connections") == 0 && v) b.connections = atoi(argv[++i]);
    else if (strcmp(a, "--depth") == 0 && v) b.depth = atoi(argv[++i]);
    else if (strcmp(a, "--seconds") == 0 && v) b.seconds = atof(argv[++i]);
    else if (a[0] != '-' && !b.workload) b.workload = a;
    else {
      usage();
      return 2;
    }
  }
  if (!b.workload || b.connections < 1 || b.depth < 1 || b.seconds <= 0) {
    usage();
    return 2;
  }
  if (prepare(&b) != 0) return 1;
  worker *ws = calloc((size_t)b.connections, sizeof(*ws));
  double t0 = now_s();
  for (int i = 0; i < b.connections; i++) {
    ws[i].b = &b;
    pthread_create(&ws[i].thread, NULL, work, &ws[i]);
  }
  uint64_t done = 0, errors = 0;
  size_t n = 0;
  for (int i = 0; i < b.connections; i++) {
    pthread_join(ws[i].thread, NULL);
    done += ws[i].done;
    errors += ws[i].errors + (uint64_t)ws[i].failed;
    n += ws[i].n_lat;
  }
  double elapsed = now_s() - t0;
  double *all = malloc((n ? n : 1) * sizeof(*all));
  size_t k = 0;
  for (int i = 0; i < b.connections; i++) {
    memcpy(all + k, ws[i].lat, ws[i].n_lat * sizeof(*all));
    k += ws[i].n_lat;
    free(ws[i].lat);
  }
  qsort(all, n, sizeof(*all), cmp_double);
  double p50 = n ? all[n / 2] : 0, p90 = n ? all[n * 9 / 10] : 0, p99 = n ? all[n * 99 / 100] : 0;
  printf("%-21s %10.0f req/s  p50 %8.1f us  p90 %8.1f us  p99 %8.1f us  (%llu requests, %llu errors, "
         "%d conns x depth %d)\n",
         b.workload, (double)done / elapsed, p50, p90, p99, (unsigned long long)done,
         (unsigned long long)errors, b.connections, b.depth);
  free(all);
  free(ws);
  json_decref(b.params);
  tessera_verifier_free(b.verifier);
  free(b.token);
  return errors ? 1 : 0;
}
