/* client/bench/bench.h: what the parts of tessera-bench share (owned by tessera-bench).
 *
 * tessera-bench is one load generator for tesserad and for its anchors, so both sides of a
 * comparison are driven by the same code path:
 *   bench_loop.c    one epoll thread driving N connections, D requests in flight on each
 *   bench_wire.c    requests and reply framing for MessagePack-RPC (tesserad) and RESP (Redis)
 *   bench_sodium.c  raw libsodium sign/verify on one core (the token anchor)
 *   bench_stats.c   latencies, percentiles, the human line and the --json object
 *   tessera-bench.c options, workload setup through libtessera, the libtessera-threaded
 *                   workloads (refresh, local-verify) */
#ifndef TESSERA_BENCH_H
#define TESSERA_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- latencies and results (bench_stats.c) ---- */
typedef struct bench_lat {
  float *v; /* microseconds */
  size_t n, cap;
} bench_lat;

typedef struct bench_result {
  const char *workload, *target; /* target: tesserad, redis, libsodium */
  int conns, depth;
  size_t keys;
  double seconds; /* the measured window */
  uint64_t requests, errors;
  bench_lat lat;
} bench_result;

void bench_lat_add(bench_lat *l, double us);
void bench_lat_append(bench_lat *into, const bench_lat *from);
void bench_lat_free(bench_lat *l);
/* Prints the result as one line, or as one JSON object when json. Sorts r->lat. */
void bench_print(bench_result *r, bool json);

double bench_now(void); /* monotonic seconds */

/* ---- wire (bench_wire.c) ---- */
enum { BENCH_RPC, BENCH_RESP };

/* One workload's request, built per send: RPC [0, msgid, method, params] where params end in a
 * string chosen round robin from vals (or hold none); RESP a command whose key is chosen
 * round robin from vals (or that has none), then a fixed tail (SET's value). */
typedef struct bench_wire {
  int proto;
  uint8_t *prefix; /* RPC: method and params up to the variable string; RESP: the command head */
  size_t prefix_len;
  char **vals; /* NULL: no variable part */
  size_t n_vals;
  uint8_t *suffix; /* RESP: bytes after the key */
  size_t suffix_len;
  size_t max_len; /* an upper bound of one request's size */
} bench_wire;

/* RPC request for method whose params are {key: val} (key NULL: no params). vals are taken. */
int bench_wire_rpc(bench_wire *w, const char *method, const char *key, char **vals, size_t n);
/* RPC request for method with fixed params {key: value}. */
int bench_wire_rpc_fixed(bench_wire *w, const char *method, const char *key, const char *value);
/* RESP: "PING", "GET" (vals = keys), "SET" (vals = keys, value_len bytes of value). */
int bench_wire_resp(bench_wire *w, const char *cmd, char **vals, size_t n, size_t value_len);
void bench_wire_free(bench_wire *w);
/* Writes request number seq (picks vals[seq % n_vals]) with msgid into out (room: max_len). */
size_t bench_wire_request(const bench_wire *w, uint8_t *out, uint32_t msgid, uint64_t seq);
/* Length of the first complete reply in p[0, n) (0: incomplete, -1: malformed); sets *msgid
 * (RPC only) and *err when the reply is an error. */
long bench_wire_reply(const bench_wire *w, const uint8_t *p, size_t n, uint32_t *msgid, bool *err);

/* ---- the driver (bench_loop.c) ---- */
typedef struct bench_loop_cfg {
  const char *socket;
  int conns, depth;
  double seconds;
} bench_loop_cfg;
/* Runs the workload; fills requests, errors, lat, seconds of r. Returns 0 or -1 (logged). */
int bench_loop_run(const bench_loop_cfg *cfg, const bench_wire *w, bench_result *r);
/* Sends every request of w once (seq 0..count-1) on one connection, depth at a time, and
 * waits for the replies (a preload). Returns the number of error replies, or -1. */
long bench_loop_once(const char *socket, const bench_wire *w, uint64_t count, int depth);

/* ---- libsodium anchor (bench_sodium.c) ---- */
/* sign: crypto_sign_detached of msg; verify: crypto_sign_verify_detached; on this thread. */
int bench_sodium_run(bool verify, const uint8_t *msg, size_t len, double seconds,
                     bench_result *r);

#endif
