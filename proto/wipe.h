/* proto/wipe.h: leave no copy of a secret behind in freed memory (STYLE.md 6; issue 9 item 6).
 *
 * Sids and tokens pass through byte buffers on both sides of the socket: the daemon's
 * connection input and reply buffers, the client's input and request buffers, and the JSON
 * values a reply is converted to. Each is wiped with sodium_memzero before it is freed, and a
 * buffer that grows copies its bytes to the new block and wipes the old one (realloc would
 * free the old block as it is). Only bytes that were used are wiped, so the cost is that of the
 * traffic, never of the buffer's capacity. */
#ifndef TS_PROTO_WIPE_H
#define TS_PROTO_WIPE_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

/* A msgpack_sbuffer write callback (for msgpack_packer_init) like msgpack_sbuffer_write, but
 * growing never frees unwiped bytes. Returns 0, or -1 when out of memory (nothing changed). */
int ts_wipe_sbuffer_write(void *sbuffer, const char *buf, size_t len);
/* Wipes the bytes in use and empties sb (keeps its memory). */
void ts_wipe_sbuffer(msgpack_sbuffer *sb);
/* Wipes sb's bytes in use, then destroys it. */
void ts_wipe_sbuffer_destroy(msgpack_sbuffer *sb);

/* Moves the first used bytes of *buf (capacity *cap) into a new block of ncap bytes, wipes and
 * frees the old one. Returns 0, or -1 when out of memory (*buf unchanged). */
int ts_wipe_grow(uint8_t **buf, size_t *cap, size_t used, size_t ncap);

/* Wipes the bytes of every string in v that only v holds (reference count 1 all the way
 * down), in place; call it right before the last json_decref. Shared values are left alone.
 * NULL is allowed. */
void ts_wipe_json(json_t *v);

#endif
