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
 * SIGPIPE is never raised.
 *
 * The local verifier (access tokens checked in-process with the daemon's public keys, plus the
 * revocation feed) is declared in tessera/verifier.h; the version in tessera/version.h.
 *
 * Naming. Every public name starts with tessera_ (macros TESSERA_); functions are the object
 * then the verb (tessera_verifier_verify). Each kind of object has one create/destroy pair:
 *   - a connection, an object that is one socket (tessera_client): tessera_connect /
 *     tessera_close, the names of the calls it wraps;
 *   - any other object the library allocates (tessera_verifier): tessera_<type>_new /
 *     tessera_<type>_free;
 *   - a struct the caller allocates (tessera_error, tessera_verifier_options,
 *     tessera_verifier_stats): filled by tessera_<type>_init (options: the defaults) or by the
 *     call that takes it (_get, or any call taking a tessera_error); it owns nothing, so it
 *     has no destroy.
 * Every destroy accepts NULL. The library never uses _open, _load or _destroy.
 *
 * ABI. Only the functions declared with TESSERA_API are exported (the library builds with
 * hidden visibility). Structs the caller allocates keep `reserved` room at their end, so that
 * later minor versions add members without changing their size: a program built against an
 * older header keeps working with a newer library. Reserved members are written as zero
 * (tessera_verifier_options_init and the library do it); never read them. */
#ifndef TESSERA_TESSERA_H
#define TESSERA_TESSERA_H

#include <tessera/version.h>

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks each function of the ABI. The library is compiled with -fvisibility=hidden, so a
 * function is exported exactly when its declaration here carries TESSERA_API; in an
 * application it changes nothing. */
#if defined(__GNUC__) || defined(__clang__)
#define TESSERA_API __attribute__((visibility("default")))
#else
#define TESSERA_API
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
  X(EIO, "input/output error on the socket")                               \
  X(EOVERFLOW, "notifications were lost: the queue was full")              \
  X(EREJECTED, "token refused (unauthenticated, expired or revoked)")      \
  X(EUNAVAILABLE, "no verdict possible: keys or revocation feed unavailable")

typedef enum tessera_errno {
  TESSERA_OK = 0,
  TESSERA_ERRNO_FIRST_ = -100,
#define TESSERA_ERRNO_ENUM_(name, msg) TESSERA_##name,
  TESSERA_ERRNO_MAP(TESSERA_ERRNO_ENUM_)
#undef TESSERA_ERRNO_ENUM_
} tessera_errno;

/* A static message for a TESSERA_E* code. */
TESSERA_API const char *tessera_strerror(int err);
/* A static name ("ECLOSED") for a TESSERA_E* code. */
TESSERA_API const char *tessera_err_name(int err);

/* The daemon's error, filled when a call returns TESSERA_EREMOTE. */
typedef struct tessera_error {
  char code[32];         /* PROTOCOL.md error code, e.g. "unauthenticated" */
  char message[256];     /* human text from the daemon, truncated to fit */
  uint64_t reserved[4];  /* room for later members (see ABI above); zeroed with code, message */
} tessera_error;

typedef struct tessera_client tessera_client;

/* The socket path used when none is given: $TESSERA_SOCKET, else TESSERA_DEFAULT_SOCKET.
 * Static or environment storage; do not free. */
TESSERA_API const char *tessera_default_socket(void);

/* How long tessera_connect waits for a daemon whose listen backlog is full, in ms. */
#define TESSERA_CONNECT_TIMEOUT_MS 2000

/* Connects to socket_path (NULL: tessera_default_socket()), waiting at most
 * TESSERA_CONNECT_TIMEOUT_MS while the daemon's listen backlog is full. On success *out is a
 * new client the caller frees with tessera_close. On error *out is NULL; on TESSERA_ECONNECT
 * errno holds the reason (ENOENT, ECONNREFUSED, EACCES, ENAMETOOLONG, ETIMEDOUT when the
 * backlog stayed full...). The descriptor is close-on-exec. */
TESSERA_API int tessera_connect(const char *socket_path, tessera_client **out);
/* tessera_connect with its own limit: timeout_ms (< 0: wait as long as the backlog is full). */
TESSERA_API int tessera_connect_timeout(const char *socket_path, int timeout_ms,
                                        tessera_client **out);

/* Closes the connection and frees the client and every reply it still held. NULL is allowed. */
TESSERA_API void tessera_close(tessera_client *c);

/* The file descriptor of the connection (for poll loops); owned by the client. */
TESSERA_API int tessera_fd(const tessera_client *c);

/* One call: sends method with params (NULL or a JSON object, else TESSERA_EINVAL) and waits up
 * to timeout_ms (< 0: forever; the limit covers sending too) for its reply. On success *result
 * is the result value (new reference; result may be NULL to discard it). A reply that arrives
 * after a timeout is dropped. */
TESSERA_API int tessera_call(tessera_client *c, const char *method, const json_t *params,
                             int timeout_ms, json_t **result, tessera_error *err);

/* Pipelining: sends a request without waiting; *msgid identifies its reply (msgid may be NULL:
 * the reply is then dropped). While the socket is full it also reads replies and keeps them, so
 * any number of requests can be sent before the first wait. */
TESSERA_API int tessera_send(tessera_client *c, const char *method, const json_t *params,
                             uint32_t *msgid);

/* Waits up to timeout_ms (< 0: forever; 0: never blocks) for the reply to
 * msgid, keeping replies to other msgids for later tessera_wait calls. The timeout bounds this
 * call; the reply may still come later. A msgid that is not in flight (never sent, or already
 * returned) is TESSERA_EINVAL. result may be NULL to discard the result. */
TESSERA_API int tessera_wait(tessera_client *c, uint32_t msgid, int timeout_ms,
                             json_t **result, tessera_error *err);

/* ---- server notifications (PROTOCOL.md, "events") ----------------------------------------
 *
 * After events.subscribe (an ordinary tessera_call) the daemon pushes notifications
 * [2, method, [map, ...]] on that connection. Every call that reads the socket (tessera_call,
 * tessera_wait, tessera_send while it waits for room, tessera_next_notification) queues them in
 * arrival order; nothing is delivered by callback. The queue is bounded
 * (TESSERA_NOTIFY_QUEUE_MAX notifications and TESSERA_NOTIFY_QUEUE_BYTES bytes of wire data):
 * a notification that does not fit, or that cannot be converted to JSON, is dropped and
 * remembered as a loss. A client that never subscribes never queues anything. */

#define TESSERA_NOTIFY_QUEUE_MAX 1024
#define TESSERA_NOTIFY_QUEUE_BYTES ((size_t)16 << 20) /* = the largest message accepted */
#define TESSERA_NOTIFY_METHOD_MAX 32 /* bytes of method[], NUL included */

/* Takes the oldest queued notification, waiting up to timeout_ms for one (< 0: forever; 0:
 * reads what the socket already holds and never blocks). On success method holds its name
 * (NUL-terminated, cut to TESSERA_NOTIFY_METHOD_MAX - 1 bytes at a character boundary) and
 * *args its params array (a JSON array, usually of objects; new reference the caller
 * json_decrefs; args may be NULL to discard it).
 * Returns 0, TESSERA_ETIMEDOUT, TESSERA_EOVERFLOW (notifications were dropped since the last
 * call: reported once, before the ones still queued, so the caller can resynchronise; method
 * is "" and *args NULL), or a connection error (sticky; notifications queued before it are
 * still delivered first). On any error method is "" and *args is NULL. */
TESSERA_API int tessera_next_notification(tessera_client *c, int timeout_ms,
                                          char method[TESSERA_NOTIFY_METHOD_MAX], json_t **args);

/* Notifications queued and not yet taken (0 for NULL). Never reads the socket. */
TESSERA_API size_t tessera_pending_notifications(const tessera_client *c);

#ifdef __cplusplus
}
#endif
#endif
