/* client/bench/bench_stats.c: latencies kept as floats, sorted once at the end; the human line
 * and the --json object (one per run) tessera-bench prints. Owned by tessera-bench. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int lat_reserve(bench_lat *l, size_t more) {
  if (l->n + more <= l->cap) return 0;
  size_t cap = l->cap ? l->cap : 65536;
  while (cap < l->n + more) cap *= 2;
  float *v = realloc(l->v, cap * sizeof(*v));
  if (!v) return -1;
  l->v = v;
  l->cap = cap;
  return 0;
}

void bench_lat_add(bench_lat *l, double us) {
  if (lat_reserve(l, 1) == 0) l->v[l->n++] = (float)us;
}

void bench_lat_append(bench_lat *into, const bench_lat *from) {
  if (from->n == 0 || lat_reserve(into, from->n) != 0) return;
  memcpy(into->v + into->n, from->v, from->n * sizeof(*from->v));
  into->n += from->n;
}

void bench_lat_free(bench_lat *l) {
  free(l->v);
  memset(l, 0, sizeof(*l));
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

static double pct(const bench_lat *l, double q) {
  if (l->n == 0) return 0;
  size_t i = (size_t)(q * (double)l->n);
  return l->v[i < l->n ? i : l->n - 1];
}

void bench_print(bench_result *r, bool json) {
  qsort(r->lat.v, r->lat.n, sizeof(float), cmp_float);
  double rps = r->seconds > 0 ? (double)r->requests / r->seconds : 0;
  double p50 = pct(&r->lat, 0.5), p90 = pct(&r->lat, 0.9), p99 = pct(&r->lat, 0.99),
         p999 = pct(&r->lat, 0.999);
  if (json) {
    printf("{\"workload\": \"%s\", \"target\": \"%s\", \"conns\": %d, \"depth\": %d, "
           "\"keys\": %zu, \"seconds\": %.3f, \"requests\": %llu, \"errors\": %llu, "
           "\"rps\": %.0f, \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
           "\"p999_us\": %.1f}\n",
           r->workload, r->target, r->conns, r->depth, r->keys, r->seconds,
           (unsigned long long)r->requests, (unsigned long long)r->errors, rps, p50, p90, p99,
           p999);
  } else {
    printf("%-21s %10.0f req/s  p50 %8.1f us  p90 %8.1f us  p99 %8.1f us  p99.9 %8.1f us  "
           "(%llu requests, %llu errors, %d conns x depth %d, %s)\n",
           r->workload, rps, p50, p90, p99, p999, (unsigned long long)r->requests,
           (unsigned long long)r->errors, r->conns, r->depth, r->target);
  }
  fflush(stdout);
}
