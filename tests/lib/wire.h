/* tests/lib/wire.h: raw socket helpers for tests that speak bytes, not the client library. */
#ifndef TT_WIRE_H
#define TT_WIRE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Connects to a Unix socket; fails the test on error. */
int tw_connect(const char *path);
/* Writes all bytes; returns false if the peer closed. */
bool tw_send(int fd, const void *buf, size_t len);
/* Packs and sends [0, msgid, method, []]. */
bool tw_send_request(int fd, uint32_t msgid, const char *method);
/* True when the peer closes the connection (EOF or reset) within timeout_ms, discarding any
 * bytes read before that. */
bool tw_closed_within(int fd, int timeout_ms);

/* Reads msgpack objects from fd. */
typedef struct tw_reader {
  int fd;
  msgpack_unpacker up;
  msgpack_unpacked msg;
} tw_reader;
void tw_reader_init(tw_reader *r, int fd);
void tw_reader_destroy(tw_reader *r);
/* Next object, waiting up to timeout_ms; NULL on EOF or time out. Valid until the next call. */
const msgpack_object *tw_next(tw_reader *r, int timeout_ms);
/* Reads one response; fills msgid, and whether it is an error (code copied to code). */
bool tw_read_response(tw_reader *r, int timeout_ms, uint32_t *msgid, char *code, size_t cap);

/* On a new connection: sends [0, id, method (method_len raw bytes, any bytes), [params]] where
 * params is one msgpack map already packed (NULL: []), reads the reply into code ("" on
 * success, else the error code), checks the connection still answers sys.ping, closes it. */
void tw_call_raw(const char *socket_path, const char *method, size_t method_len,
                 const void *params, size_t params_len, char *code, size_t cap);

#endif
