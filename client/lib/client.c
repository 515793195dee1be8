/* client/lib/client.c: libtessera's public API (tessera/tessera.h); design in internal.h.
 *
 * The socket is non-blocking; every wait is a poll() against a CLOCK_MONOTONIC deadline, so a
 * timeout is never stretched by signals (EINTR just loops) or by wall-clock jumps.
 *
 * Writes never deadlock against the daemon's backpressure: while a write waits for room it
 * also reads, stashing replies in the in-flight table, so a caller that pipelines thousands of
 * requests before waiting keeps both directions moving. SIGPIPE is never raised (MSG_NOSIGNAL).
 *
 * A request is registered in the in-flight table before its first byte is written, so running
 * out of memory never happens after the daemon may have acted on a request.
 *
 * Notifications are queued by the reader whenever any call reads; tessera_next_notification
 * is one more pump_until condition ("a note is queued, or one was lost").
 *
 * Secrets: request buffers and the input buffer are wiped before they are freed, and replies
 * nobody took are wiped when dropped (proto/wipe.h). */
#include "internal.h"

#include "error.h"
#include "json.h"
#include "rpc.h"
#include "wipe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- errors --------------------------------------------------------------------------- */

struct err_row {
  const char *name;
  const char *message;
};

static const struct err_row err_rows[] = {
#define TESSERA_ERR_ROW_(name, msg) {#name, msg},
    TESSERA_ERRNO_MAP(TESSERA_ERR_ROW_)
#undef TESSERA_ERR_ROW_
};

static const struct err_row *err_row_of(int err) {
  long i = (long)err - (TESSERA_ERRNO_FIRST_ + 1);
  if (i < 0 || (size_t)i >= sizeof(err_rows) / sizeof(err_rows[0])) return NULL;
  return &err_rows[i];
}

const char *tessera_strerror(int err) {
  if (err == 0) return "success";
  const struct err_row *r = err_row_of(err);
  return r ? r->message : "unknown error";
}

const char *tessera_err_name(int err) {
  if (err == 0) return "OK";
  const struct err_row *r = err_row_of(err);
  return r ? r->name : "EUNKNOWN";
}

static void clear_error(tessera_error *err) {
  if (err) memset(err, 0, sizeof(*err)); /* reserved included (tessera.h, ABI) */
}

/* ---- time ----------------------------------------------------------------------------- */

/* Nanoseconds on the monotonic clock: deadlines keep full precision, so a timeout never ends
 * early (poll() gets the remaining time rounded up). */
static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The deadline for a timeout in ms (< 0: none, represented as -1). */
static int64_t deadline_of(int timeout_ms) {
  return timeout_ms < 0 ? -1 : now_ns() + (int64_t)timeout_ms * 1000000;
}

/* Milliseconds left before deadline, rounded up, for poll(): -1 without a deadline, 0 once it
 * passed. */
static int remaining_ms(int64_t deadline) {
  if (deadline < 0) return -1;
  int64_t left = deadline - now_ns();
  if (left <= 0) return 0;
  left = (left + 999999) / 1000000;
  return left > INT_MAX ? INT_MAX : (int)left;
}

/* ---- connection ----------------------------------------------------------------------- */

const char *tessera_default_socket(void) {
  const char *env = getenv("TESSERA_SOCKET");
  return env && *env ? env : TESSERA_DEFAULT_SOCKET;
}

/* Connects fd to path, then makes it non-blocking. The connect blocks while the daemon's listen
 * backlog is full (as PROTOCOL.md describes), but no longer than timeout_ms (< 0: no limit):
 * for AF_UNIX, SO_SNDTIMEO bounds that wait and connect then fails with EAGAIN; the loop
 * re-arms it with the time left after EINTR or an early EAGAIN, and reports ETIMEDOUT once the
 * deadline passed. Returns 0, or -1 with errno set. */
static int connect_unix(int fd, const char *path, int timeout_ms) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof(sa.sun_path)) {
    errno = n ? ENAMETOOLONG : ENOENT;
    return -1;
  }
  memcpy(sa.sun_path, path, n + 1);
  int64_t deadline = deadline_of(timeout_ms);
  for (;;) {
    int t = remaining_ms(deadline);
    if (t == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    struct timeval tv = {.tv_sec = t < 0 ? 0 : t / 1000, .tv_usec = t < 0 ? 0 : (t % 1000) * 1000};
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) return -1;
    if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EISCONN) break;
    /* AF_UNIX: an interrupted or timed-out connect left the socket unconnected: try again. */
    if (errno != EINTR && errno != EAGAIN) return -1;
  }
  struct timeval none = {0, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none)) != 0) return -1;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  return 0;
}

int tessera_connect_timeout(const char *socket_path, int timeout_ms, tessera_client **out) {
  if (!out) return TESSERA_EINVAL;
  *out = NULL;
  if (!socket_path) socket_path = tessera_default_socket();
  tessera_client *c = calloc(1, sizeof(*c));
  if (!c) return TESSERA_ENOMEM;
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0 || connect_unix(c->fd, socket_path, timeout_ms) < 0) {
    int saved = errno;
    if (c->fd >= 0) close(c->fd);
    free(c);
    errno = saved;
    return TESSERA_ECONNECT;
  }
  c->next_msgid = 1;
  ts_scan_init(&c->scan);
  ts_inflight_init(&c->inflight);
  *out = c;
  return 0;
}

int tessera_connect(const char *socket_path, tessera_client **out) {
  return tessera_connect_timeout(socket_path, TESSERA_CONNECT_TIMEOUT_MS, out);
}

void tessera_close(tessera_client *c) {
  if (!c) return;
  if (c->fd >= 0) close(c->fd);
  ts_inflight_close(&c->inflight);
  ts_note *n;
  while ((n = ts_client_take_note(c))) ts_note_free(n);
  if (c->in) sodium_memzero(c->in, c->in_len); /* unconsumed reply bytes */
  free(c->in);
  free(c);
}

int tessera_fd(const tessera_client *c) {
  return c ? c->fd : -1;
}

/* ---- writing -------------------------------------------------------------------------- */

static int fail_write(tessera_client *c, int err) {
  if (!c->wr_err) c->wr_err = err;
  return c->wr_err;
}

/* Waits until the socket may take more bytes, reading whatever arrives meanwhile. Returns 0
 * (retry the send), TESSERA_ETIMEDOUT, or an error from the read side. */
static int wait_writable(tessera_client *c, int64_t deadline) {
  int t = remaining_ms(deadline);
  if (t == 0) return TESSERA_ETIMEDOUT;
  struct pollfd p = {.fd = c->fd, .events = POLLOUT | POLLIN};
  int n = poll(&p, 1, t);
  if (n < 0) return errno == EINTR ? 0 : TESSERA_EIO;
  if (n == 0) return TESSERA_ETIMEDOUT;
  if (p.revents & POLLIN) {
    int rc = ts_client_read_once(c);
    if (rc < 0) return rc;
  }
  return 0; /* POLLOUT, or POLLERR/POLLHUP: the next send reports the socket's error */
}

/* Writes all of buf. A write that stops part way leaves the stream out of step, so it also
 * ends writing on this connection (sticky TESSERA_EIO unless a better reason is known). */
static int write_all(tessera_client *c, const char *buf, size_t len, int64_t deadline) {
  size_t off = 0;
  while (off < len) {
    ssize_t k = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
    if (k >= 0) {
      off += (size_t)k;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return fail_write(c, errno == EPIPE || errno == ECONNRESET ? TESSERA_ECLOSED : TESSERA_EIO);
    int rc = wait_writable(c, deadline);
    if (rc < 0) {
      if (off > 0) fail_write(c, TESSERA_EIO);
      return rc;
    }
  }
  return 0;
}

/* Packs [0, msgid, method, [] or [params]]. */
static int pack_request(msgpack_packer *pk, uint32_t msgid, const char *method,
                        const json_t *params) {
  if (ts_rpc_pack_request_head(pk, msgid, method) != 0) return TESSERA_ENOMEM;
  if (msgpack_pack_array(pk, params ? 1 : 0) != 0) return TESSERA_ENOMEM;
  if (!params) return 0;
  int rc = ts_json_pack(pk, params);
  if (rc == 0) return 0;
  return rc == TS_ENOMEM ? TESSERA_ENOMEM : TESSERA_EINVAL;
}

static uint32_t next_msgid(tessera_client *c) {
  uint32_t id;
  do {
    id = c->next_msgid++; /* wraps; skips ids still in flight */
  } while (ts_inflight_find(&c->inflight, id));
  return id;
}

/* Sends one request. With msgid_out, registers it in the in-flight table first; without, its
 * reply will be dropped. */
static int send_request(tessera_client *c, const char *method, const json_t *params,
                        int64_t deadline, uint32_t *msgid_out) {
  if (!c || !method || (params && !json_is_object(params))) return TESSERA_EINVAL;
  if (c->wr_err) return c->wr_err;
  uint32_t id = next_msgid(c);
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, ts_wipe_sbuffer_write); /* requests carry sids and tokens */
  int rc = pack_request(&pk, id, method, params);
  if (rc < 0) goto out;
  if (msgid_out && !ts_inflight_add(&c->inflight, id)) {
    rc = TESSERA_ENOMEM;
    goto out;
  }
  rc = write_all(c, sb.data, sb.size, deadline);
  if (rc < 0) {
    if (msgid_out) ts_reply_free(ts_inflight_unlink(&c->inflight, id));
    goto out;
  }
  if (msgid_out) *msgid_out = id;
out:
  ts_wipe_sbuffer_destroy(&sb);
  return rc;
}

int tessera_send(tessera_client *c, const char *method, const json_t *params, uint32_t *msgid) {
  return send_request(c, method, params, -1, msgid);
}

/* ---- waiting -------------------------------------------------------------------------- */

/* Reads until done(c, arg) holds or the deadline passes. Returns 0, TESSERA_ETIMEDOUT, or a
 * read error (the sticky one, or a passing TESSERA_ENOMEM / TESSERA_EIO from poll). What was
 * already received stays usable after a sticky error: done is asked before reading. */
static int pump_until(tessera_client *c, bool (*done)(const tessera_client *, const void *),
                      const void *arg, int64_t deadline) {
  for (;;) {
    if (done(c, arg)) return 0;
    int rc = ts_client_read_once(c);
    if (rc < 0) return rc;
    if (rc > 0) {
      /* Bytes keep coming: still honour the deadline (a flood must not stretch it). */
      if (!done(c, arg) && remaining_ms(deadline) == 0) return TESSERA_ETIMEDOUT;
      continue;
    }
    int t = remaining_ms(deadline);
    if (t == 0) return TESSERA_ETIMEDOUT;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, t) < 0 && errno != EINTR) return TESSERA_EIO;
  }
}

static bool reply_ready(const tessera_client *c, const void *arg) {
  const ts_reply *r = ts_inflight_find(&c->inflight, *(const uint32_t *)arg);
  return r && r->ready;
}

/* Hands the ready reply for msgid to the caller and forgets it. */
static int deliver(tessera_client *c, uint32_t msgid, json_t **result, tessera_error *err) {
  ts_reply *r = ts_inflight_unlink(&c->inflight, msgid);
  int rc = r->rc;
  if (rc == 0 && result) {
    *result = r->result;
    r->result = NULL;
  }
  if (rc == TESSERA_EREMOTE && err) *err = r->err;
  ts_reply_free(r);
  return rc;
}

static int wait_reply(tessera_client *c, uint32_t msgid, int64_t deadline, json_t **result,
                      tessera_error *err) {
  if (!ts_inflight_find(&c->inflight, msgid)) return TESSERA_EINVAL; /* never sent or taken */
  int rc = pump_until(c, reply_ready, &msgid, deadline);
  if (rc == 0) return deliver(c, msgid, result, err);
  if (c->rd_err && rc == c->rd_err) /* the connection is over: this reply can never come */
    ts_reply_free(ts_inflight_unlink(&c->inflight, msgid));
  return rc;
}

int tessera_wait(tessera_client *c, uint32_t msgid, int timeout_ms,
                 json_t **result, tessera_error *err) {
  if (result) *result = NULL;
  clear_error(err);
  if (!c) return TESSERA_EINVAL;
  return wait_reply(c, msgid, deadline_of(timeout_ms), result, err);
}

int tessera_call(tessera_client *c, const char *method, const json_t *params,
                 int timeout_ms, json_t **result, tessera_error *err) {
  if (result) *result = NULL;
  clear_error(err);
  int64_t deadline = deadline_of(timeout_ms);
  uint32_t msgid;
  int rc = send_request(c, method, params, deadline, &msgid);
  if (rc < 0) return rc;
  rc = wait_reply(c, msgid, deadline, result, err);
  /* The caller never saw msgid, so nobody can wait for it again: a reply still to come (after
   * a timeout) is dropped when it arrives instead of being kept forever. */
  ts_reply_free(ts_inflight_unlink(&c->inflight, msgid));
  return rc;
}

/* ---- notifications -------------------------------------------------------------------- */

static bool note_ready(const tessera_client *c, const void *arg) {
  (void)arg;
  return c->notes_head != NULL || c->notes_lost;
}

int tessera_next_notification(tessera_client *c, int timeout_ms,
                              char method[TESSERA_NOTIFY_METHOD_MAX],
                              json_t **args) {
  if (args) *args = NULL;
  if (method) method[0] = '\0';
  if (!c || !method) return TESSERA_EINVAL;
  int rc = pump_until(c, note_ready, NULL, deadline_of(timeout_ms));
  if (rc < 0) return rc;
  if (c->notes_lost) {
    c->notes_lost = false;
    return TESSERA_EOVERFLOW;
  }
  ts_note *n = ts_client_take_note(c);
  memcpy(method, n->method, sizeof(n->method));
  if (args) {
    *args = n->args;
    n->args = NULL;
  }
  ts_note_free(n);
  return 0;
}

size_t tessera_pending_notifications(const tessera_client *c) {
  return c ? c->notes_count : 0;
}
