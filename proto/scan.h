/* proto/scan.h: the allocation-free pre-scan of a msgpack byte stream.
 *
 * MessagePack-RPC has no length prefix, so the end of a message is only known by walking its
 * structure. The scanner does that walk without allocating and without trusting any length
 * header: before a byte reaches msgpack-c it rejects
 *   - a message longer than the limit,
 *   - containers nested deeper than the limit,
 *   - ext types and the never-used byte 0xc1,
 *   - any str/bin length, or array/map element count, that could not fit in what the message
 *     limit still allows (each element takes at least one byte), so that msgpack-c's unpacker
 *     is never asked to allocate on an unchecked length (`DD FF FF FF FF`).
 * It is resumable: feed it the same buffer again as more bytes arrive, in any split; it picks up
 * where it stopped and never looks at a byte twice. The state is a few hundred bytes, owned by
 * the caller (embedded in a connection). */
#ifndef TS_PROTO_SCAN_H
#define TS_PROTO_SCAN_H

#include <stddef.h>
#include <stdint.h>

#define TS_SCAN_DEPTH_MAX 64 /* hard ceiling of ts_scan_limits.max_depth */

typedef struct ts_scan_limits {
  size_t max_message; /* bytes; at most INT32_MAX / 2 */
  unsigned max_depth; /* containers open at once, the outermost included; <= TS_SCAN_DEPTH_MAX */
} ts_scan_limits;

typedef struct ts_scan {
  size_t pos;     /* bytes of the current message already examined */
  size_t skip;    /* str/bin payload bytes still to pass over */
  unsigned depth; /* containers open */
  uint32_t left[TS_SCAN_DEPTH_MAX]; /* items each open container still expects */
} ts_scan;

/* Readies s for the first byte of a new message. */
void ts_scan_init(ts_scan *s);

/* buf[0..len) holds the bytes of the current message received so far (plus perhaps bytes of
 * the messages after it); each call passes the same start and a len at least as large as before.
 * Returns the length of the message once it is complete (> 0), 0 when more bytes are needed, or a
 * negative TS_E* code (MSGSIZE, DEPTH, EXT, LENGTH, BADBYTE) when the message must be rejected.
 * After a complete message, call ts_scan_init before scanning the next one. */
int ts_scan_feed(ts_scan *s, const uint8_t *buf, size_t len, const ts_scan_limits *lim);

#endif
