/* proto/scan.c: see scan.h. The msgpack format facts used here are from the public
 * MessagePack specification (formats by first byte). */
#include "scan.h"

#include "error.h"

#include <string.h>

void ts_scan_init(ts_scan *s) {
  s->pos = 0;
  s->skip = 0;
  s->depth = 0;
}

static uint32_t be_uint(const uint8_t *p, unsigned n) {
  uint32_t v = 0;
  for (unsigned i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

/* What one msgpack header announces. */
enum item_kind { ITEM_SCALAR, ITEM_BYTES, ITEM_ARRAY, ITEM_MAP };

typedef struct item {
  enum item_kind kind;
  unsigned header;   /* header bytes, type byte included */
  unsigned fixed;    /* fixed payload bytes after the header (numbers) */
  unsigned len_size; /* bytes of the big-endian length/count field (0: none or inline) */
  uint32_t inline_n; /* length/count held in the type byte itself (fix formats) */
} item;

/* Classifies a type byte. Returns 0 or TS_EEXT / TS_EBADBYTE. */
static int classify(uint8_t b, item *it) {
  memset(it, 0, sizeof(*it));
  it->kind = ITEM_SCALAR;
  it->header = 1;
  if (b <= 0x7f || b >= 0xe0) return 0;                     /* fixint */
  if (b <= 0x8f) { it->kind = ITEM_MAP; it->inline_n = b & 0x0f; return 0; }
  if (b <= 0x9f) { it->kind = ITEM_ARRAY; it->inline_n = b & 0x0f; return 0; }
  if (b <= 0xbf) { it->kind = ITEM_BYTES; it->inline_n = b & 0x1f; return 0; }
  switch (b) {
  case 0xc0: case 0xc2: case 0xc3: return 0;                 /* nil, false, true */
  case 0xc1: return TS_EBADBYTE;
  case 0xc4: case 0xd9: it->kind = ITEM_BYTES; it->len_size = 1; break;
  case 0xc5: case 0xda: it->kind = ITEM_BYTES; it->len_size = 2; break;
  case 0xc6: case 0xdb: it->kind = ITEM_BYTES; it->len_size = 4; break;
  case 0xc7: case 0xc8: case 0xc9: return TS_EEXT;          /* ext 8/16/32 */
  case 0xca: it->fixed = 4; break;                           /* float 32 */
  case 0xcb: it->fixed = 8; break;                           /* float 64 */
  case 0xcc: case 0xd0: it->fixed = 1; break;
  case 0xcd: case 0xd1: it->fixed = 2; break;
  case 0xce: case 0xd2: it->fixed = 4; break;
  case 0xcf: case 0xd3: it->fixed = 8; break;
  case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return TS_EEXT; /* fixext */
  case 0xdc: it->kind = ITEM_ARRAY; it->len_size = 2; break;
  case 0xdd: it->kind = ITEM_ARRAY; it->len_size = 4; break;
  case 0xde: it->kind = ITEM_MAP; it->len_size = 2; break;
  case 0xdf: it->kind = ITEM_MAP; it->len_size = 4; break;
  default: return TS_EBADBYTE;
  }
  it->header += it->len_size;
  return 0;
}

/* One item finished: count it against the containers that hold it. Returns 1 when that completed
 * the whole message. */
static int item_done(ts_scan *s) {
  while (s->depth > 0) {
    if (--s->left[s->depth - 1] > 0) return 0;
    s->depth--;
  }
  return 1;
}

int ts_scan_feed(ts_scan *s, const uint8_t *buf, size_t len, const ts_scan_limits *lim) {
  const size_t max = lim->max_message;
  for (;;) {
    if (s->skip > 0) {
      size_t have = len - s->pos;
      size_t n = have < s->skip ? have : s->skip;
      s->pos += n;
      s->skip -= n;
      if (s->skip > 0) return 0;
      if (item_done(s)) return (int)s->pos;
      continue;
    }
    if (s->pos >= max) return TS_EMSGSIZE;
    if (s->pos >= len) return 0;

    item it;
    int rc = classify(buf[s->pos], &it);
    if (rc < 0) return rc;
    if (s->pos + it.header + it.fixed > max) return TS_EMSGSIZE;
    if (s->pos + it.header > len) return 0; /* header not all here yet; no state changed */

    uint64_t n = it.len_size ? be_uint(buf + s->pos + 1, it.len_size) : it.inline_n;
    size_t after = s->pos + it.header; /* message bytes used once the header is passed */
    size_t room = max - after;         /* bytes the limit still allows after the header */

    switch (it.kind) {
    case ITEM_SCALAR:
      if (s->pos + it.header + it.fixed > len) return 0;
      s->pos = after + it.fixed;
      if (item_done(s)) return (int)s->pos;
      break;
    case ITEM_BYTES:
      if (n > room) return TS_ELENGTH;
      s->pos = after;
      s->skip = (size_t)n;
      if (n == 0 && item_done(s)) return (int)s->pos;
      break;
    case ITEM_ARRAY:
    case ITEM_MAP:
      if (it.kind == ITEM_MAP) n *= 2; /* keys and values */
      if (n > room) return TS_ELENGTH;
      s->pos = after;
      if (n == 0) {
        if (item_done(s)) return (int)s->pos;
        break;
      }
      if (s->depth >= lim->max_depth || s->depth >= TS_SCAN_DEPTH_MAX) return TS_EDEPTH;
      s->left[s->depth++] = (uint32_t)n;
      break;
    }
  }
}
