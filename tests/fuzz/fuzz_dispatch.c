/* tests/fuzz/fuzz_dispatch.c: the byte stream into the daemon: sidecar/conn.c, dispatch.c and
 * every method handler, against a real store and keyring.
 *
 * The choice. The target runs tesserad's core in-process, as main.c does minus the listening
 * socket: one ts_domain (LMDB store in a temporary directory, writer and sweeper threads, a
 * managed keyring) and one ts_server on a private libuv loop, set up once. Per input, a
 * socketpair(2) stands in for an accepted client: one end becomes a ts_conn exactly as
 * server.c's accept_one makes it (peer uid = ours, so the door is open and admin methods run),
 * the other end is a libuv pipe that writes the input, shuts down its write side (EOF) and
 * reads every reply. The loop runs until the connection is gone and the peer saw EOF. So the
 * real read path (buffering, pre-scan, backpressure, EOF handling), msgpack-c, the envelope,
 * params, the handlers (reads on the loop thread, writes through the writer thread) and the
 * reply path all run; only the listener and SO_PEERCRED are left out.
 * The simpler alternative (ts_scan_feed + decode + params in a loop) was not taken: it would
 * not reach the handlers, the stores or conn.c's buffer management, where the state is.
 *
 * Determinism: the store persists across inputs (a session created by one input stays), the
 * clock is real and the writer batches on its own thread, so a replay may take a different
 * path than the run that found it; in practice a crash depends on the bytes of one input.
 * The store is capped (--max-store-bytes 64M): when it fills, writes answer `unavailable`,
 * which is itself a path worth fuzzing.
 *
 * Properties, besides the sanitizers: every byte the daemon writes back is a stream of
 * well-formed msgpack-rpc responses and notifications (only the last one may be cut short,
 * when the daemon closes the connection mid-write); an error is [code, message] with a known
 * wire code and a message of valid UTF-8; a success has a nil error; no input takes longer
 * than WATCHDOG_MS (a handler that never replies would hang a client forever).
 *
 * Environment: TMPDIR (the store lives in $TMPDIR/tessera-fuzz-*, removed at exit);
 * FUZZ_LOG=debug|info|warn|error writes the daemon's log lines to stderr (default: none). */
#include "fuzz.h"

#include "backend.h"
#include "config.h"
#include "domain.h"
#include "error.h"
#include "events.h"
#include "log.h"
#include "rpc.h"
#include "scan.h"
#include "server.h"

#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WATCHDOG_MS 30000
#define REPLY_CAP (64u * 1024 * 1024) /* reply bytes kept for checking */

static uv_loop_t loop;
static uv_timer_t watchdog;
static ts_config cfg;
static ts_domain domain;
static ts_server server;
static char root[PATH_MAX];

typedef struct peer {
  uv_pipe_t pipe;
  uv_write_t write;
  uv_shutdown_t shutdown;
  bool closed;
  uint8_t *buf;
  size_t cap, used;
  bool overflow;
} peer;

static void on_keys_changed(void *ctx, int64_t version) { ts_events_keys(ctx, version); }
static void on_published(void *ctx, ts_feed_pos last) { ts_events_published(ctx, last); }

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static void teardown(void) {
  uv_close((uv_handle_t *)&watchdog, NULL);
  ts_domain_close(&domain); /* every queued write applied, threads joined */
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  ts_config_free(&cfg);
  if (root[0]) nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  signal(SIGPIPE, SIG_IGN); /* as main.c: a peer gone mid-write is an error code, not a death */
  FUZZ_CHECK(sodium_init() >= 0);
  const char *tmp = getenv("TMPDIR");
  snprintf(root, sizeof(root), "%s/tessera-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  FUZZ_CHECK(mkdtemp(root) != NULL);
  char data[PATH_MAX + 8], keys[PATH_MAX + 8], sock[PATH_MAX + 8];
  snprintf(data, sizeof(data), "%s/data", root);
  snprintf(keys, sizeof(keys), "%s/keys", root);
  snprintf(sock, sizeof(sock), "%s/sock", root);
  char *args[] = {"fuzz_dispatch", "--data", data, "--keys", keys, "--socket", sock,
                  "--durability", "relaxed", "--max-store-bytes", "64M", "--log-level", "debug"};
  FUZZ_CHECK(ts_config_load(&cfg, (int)(sizeof(args) / sizeof(args[0])), args) == 0);
  const char *level = getenv("FUZZ_LOG");
  ts_log_set_level(level && *level ? ts_log_parse_level(level) : TS_LOG_ERROR + 1);

  FUZZ_CHECK(uv_loop_init(&loop) == 0);
  FUZZ_CHECK(uv_timer_init(&loop, &watchdog) == 0);
  FUZZ_CHECK(ts_domain_open(&domain, &cfg, &loop) == 0);
  server.loop = &loop;
  server.cfg = &cfg;
  server.domain = &domain;
  server.started_ms = uv_now(&loop);
  domain.keys.on_change = on_keys_changed;
  domain.keys.on_change_ctx = &server;
  domain.backend->on_published = on_published;
  domain.backend->published_ctx = &server;
  atexit(teardown);
  return 0;
}

/* ---- the client side ---- */

static void peer_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  (void)suggested;
  peer *p = h->data;
  if (p->cap - p->used < 65536 && p->cap < REPLY_CAP) {
    size_t ncap = p->cap ? p->cap * 2 : 65536;
    uint8_t *nb = realloc(p->buf, ncap);
    FUZZ_CHECK(nb != NULL);
    p->buf = nb;
    p->cap = ncap;
  }
  if (p->cap - p->used < 4096) { /* full: keep reading, stop keeping */
    p->overflow = true;
    p->used = 0;
  }
  *out = uv_buf_init((char *)p->buf + p->used, (unsigned)(p->cap - p->used));
}

static void peer_closed(uv_handle_t *h) { ((peer *)h->data)->closed = true; }

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  peer *p = s->data;
  if (n > 0) p->used += (size_t)n;
  else if (n < 0 && !uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, peer_closed);
}

static void peer_shut(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status;
}

static void peer_written(uv_write_t *w, int status) {
  peer *p = w->data;
  /* All sent: EOF. (An error means the daemon closed first; its EOF reaches peer_read.) */
  if (status == 0 && !uv_is_closing((uv_handle_t *)&p->pipe))
    uv_shutdown(&p->shutdown, (uv_stream_t *)&p->pipe, peer_shut);
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  fprintf(stderr, "fuzz_dispatch: the daemon did not finish within %d ms\n", WATCHDOG_MS);
  abort();
}

/* ---- checking what came back ---- */

static bool known_code(const msgpack_object *o) {
  static const char *const codes[] = {"bad_request", "unknown_method", "unauthenticated",
                                      "expired", "revoked", "reused", "forbidden",
                                      "overloaded", "unavailable", "internal"};
  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
    if (ts_mp_str_eq(o, codes[i])) return true;
  return false;
}

static bool utf8_str(const msgpack_object *o) {
  if (o->type != MSGPACK_OBJECT_STR) return false;
  json_t *j = json_stringn(o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
  json_decref(j);
  return j != NULL;
}

static void check_replies(const uint8_t *buf, size_t len) {
  static const ts_scan_limits lim = {1u << 30, 31};
  size_t off = 0;
  while (off < len) {
    ts_scan s;
    ts_scan_init(&s);
    int n = ts_scan_feed(&s, buf + off, len - off, &lim);
    if (n == 0) return; /* cut short: the daemon closed while writing */
    FUZZ_CHECK(n > 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t used = 0;
    FUZZ_CHECK(msgpack_unpack_next(&up, (const char *)buf + off, (size_t)n, &used) ==
               MSGPACK_UNPACK_SUCCESS);
    ts_rpc_msg m;
    FUZZ_CHECK(ts_rpc_decode_reply(&up.data, &m) == 0);
    if (m.kind == TS_RPC_RESPONSE) {
      if (m.err->type == MSGPACK_OBJECT_NIL) {
        FUZZ_CHECK(m.result->type != MSGPACK_OBJECT_NIL);
      } else {
        FUZZ_CHECK(m.err->type == MSGPACK_OBJECT_ARRAY && m.err->via.array.size == 2);
        FUZZ_CHECK(known_code(&m.err->via.array.ptr[0]));
        FUZZ_CHECK(utf8_str(&m.err->via.array.ptr[1]));
        FUZZ_CHECK(m.result->type == MSGPACK_OBJECT_NIL);
      }
    }
    msgpack_unpacked_destroy(&up);
    off += (size_t)n;
  }
}

/* ---- one input: one connection ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int sv[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);

  /* The daemon's end, as server.c accept_one sets up an allowed peer. */
  ts_conn *c = calloc(1, sizeof(*c));
  FUZZ_CHECK(c != NULL);
  FUZZ_CHECK(uv_pipe_init(&loop, &c->pipe, 0) == 0);
  FUZZ_CHECK(uv_pipe_open(&c->pipe, sv[0]) == 0);
  c->uid = (uint32_t)geteuid();
  c->gid = (uint32_t)getegid();
  c->pid = (int32_t)getpid();
  c->admin = ts_idlist_has(&cfg.admin_uids, c->uid);
  c->server = &server;
  c->next = server.conns;
  if (server.conns) server.conns->prev = c;
  server.conns = c;
  server.n_conns++;
  server.stats.accepted++;
  ts_conn_accepted(&server, c);

  /* The client's end. */
  peer p;
  memset(&p, 0, sizeof(p));
  FUZZ_CHECK(uv_pipe_init(&loop, &p.pipe, 0) == 0);
  FUZZ_CHECK(uv_pipe_open(&p.pipe, sv[1]) == 0);
  p.pipe.data = &p;
  p.write.data = &p;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)size);
  FUZZ_CHECK(uv_write(&p.write, (uv_stream_t *)&p.pipe, &b, 1, peer_written) == 0);
  FUZZ_CHECK(uv_read_start((uv_stream_t *)&p.pipe, peer_alloc, peer_read) == 0);

  /* The watchdog also keeps the loop alive while only the writer thread has work. */
  uv_timer_start(&watchdog, on_watchdog, WATCHDOG_MS, 0);
  while (server.n_conns > 0 || !p.closed) uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&watchdog);

  if (!p.overflow) check_replies(p.buf, p.used);
  free(p.buf);
  return 0;
}
