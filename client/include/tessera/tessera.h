/* tessera/tessera.h: libtessera, the client of tesserad.
 *
 * A tessera_client is one connection to the daemon's Unix socket. Params and results are
 * jansson JSON values: the library converts them to and from msgpack (PROTOCOL.md describes
 * every method's map). Calls may be pipelined: tessera_send many requests, then tessera_wait
 * for each msgid in any order; replies that arrive for other msgids are kept until waited for.
 *
 * Thread-safety: a tessera_client is not thread-safe. Use one per thread, or guard it with a
 * lock. Distinct clients share nothing.
 *
 * Ownership: params are borrowed (never stolen, never kept after the call returns). Results are
 * new references the caller must json_decref. On any error *result is left NULL.
 *
 * Errors: functions return 0 or a negative TESSERA_E* code. TESSERA_EREMOTE means the daemon
 * answered with an error; its code (PROTOCOL.md: "bad_request", "unauthenticated", ...) and
 * message are in the tessera_error the caller passed (may be NULL when not wanted); every call
 * that takes one clears it first.
 *
 * Errors that leave the connection unusable (ECLOSED, EIO, EPROTO for a malformed stream or a
 * reply over 16 MiB) are sticky: every later call on that client returns them, except that
 * replies already received can still be collected with tessera_wait. Close and reconnect.
 * SIGPIPE is never raised. */
#ifndef TESSERA_TESSERA_H
#define TESSERA_TESSERA_H

#include <jansson.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TESSERA_DEFAULT_SOCKET "/run/tessera/tesserad.sock"

#define TESSERA_ERRNO_MAP(X)                                                  \
  X(EINVAL, "invalid argument")                                              \
  X(ENOMEM, "out of memory")                                                 \
  X(ECONNECT, "cannot connect to the tesserad socket")                      \
  X(ECLOSED, "connection closed by tesserad")                               \
  X(ETIMEDOUT, "timed out waiting for the reply")                           \
  X(EPROTO, "malformed reply from tesserad")                                \
  X(EREMOTE, "tesserad answered with an error")                             \
  X(EIO, "input/output error on the socket")

typedef enum tessera_errno {
  TESSERA_OK = 0,
  TESSERA_ERRNO_FIRST_ = -100,
#define TESSERA_ERRNO_ENUM_(name, msg) TESSERA_##name,
  TESSERA_ERRNO_MAP(TESSERA_ERRNO_ENUM_)
#undef TESSERA_ERRNO_ENUM_
} tessera_errno;

/* A static message for a TESSERA_E* code. */
const char *tessera_strerror(int err);
/* A static name ("ECLOSED") for a TESSERA_E* code. */
const char *tessera_err_name(int err);

/* The daemon's error, filled when a call returns TESSERA_EREMOTE. */
typedef struct tessera_error {
  char code[32];     /* PROTOCOL.md error code, e.g. "unauthenticated" */
  char message[256]; /* human text from the daemon, truncated to fit */
} tessera_error;

typedef struct tessera_client tessera_client;

/* The socket path used when none is given: $TESSERA_SOCKET, else TESSERA_DEFAULT_SOCKET.
 * Static or environment storage; do not free. */
const char *tessera_default_socket(void);

/* Connects to socket_path (NULL: tessera_default_socket()). On success *out is a new client
 * the caller frees with tessera_close. On error *out is NULL; on TESSERA_ECONNECT errno holds
 * the reason (ENOENT, ECONNREFUSED, EACCES, ENAMETOOLONG...). The descriptor is close-on-exec. */
int tessera_connect(const char *socket_path, tessera_client **out);

/* Closes the connection and frees the client and every reply it still held. NULL is allowed. */
void tessera_close(tessera_client *c);

/* The file descriptor of the connection (for poll loops); owned by the client. */
int tessera_fd(const tessera_client *c);

/* One call: sends method with params (NULL or a JSON object, else TESSERA_EINVAL) and waits up
 * to timeout_ms (< 0: forever; the limit covers sending too) for its reply. On success *result
 * is the result value (new reference; result may be NULL to discard it). A reply that arrives
 * after a timeout is dropped. */
int tessera_call(tessera_client *c, const char *method, const json_t *params, int timeout_ms,
                 json_t **result, tessera_error *err);

/* Pipelining: sends a request without waiting; *msgid identifies its reply (msgid may be NULL:
 * the reply is then dropped). While the socket is full it also reads replies and keeps them, so
 * any number of requests can be sent before the first wait. */
int tessera_send(tessera_client *c, const char *method, const json_t *params, uint32_t *msgid);

/* Waits up to timeout_ms (< 0: forever; 0: never blocks) for the reply to
 * msgid, keeping replies to other msgids for later tessera_wait calls. The timeout bounds this
 * call; the reply may still come later. A msgid that is not in flight (never sent, or already
 * returned) is TESSERA_EINVAL. result may be NULL to discard the result. */
int tessera_wait(tessera_client *c, uint32_t msgid, int timeout_ms, json_t **result,
                 tessera_error *err);

#ifdef __cplusplus
}
#endif
#endif
