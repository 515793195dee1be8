/* proto/b64url.c: see b64url.h. A character maps to its value by arithmetic on range masks
 * (all ones when the character lies in a range, from the signs of two differences), so the
 * work is the same for every character. Eight characters are mapped at once in the bytes of
 * a 64-bit word (bytes kept below 0x80 so no difference borrows across them); the values are
 * then packed four at a time into three bytes. Which branch runs depends on the length only.
 * Invalid characters are collected in one flag checked once at the end. */
#include "b64url.h"

#include <sodium.h>
#include <string.h>

#define REP(b) (0x0101010101010101ull * (uint8_t)(b))
#define HIGH REP(0x80)

/* The bytes of x (each below 0x80) within [lo, hi]: 0xff there, 0 elsewhere. */
static uint64_t bytes_in(uint64_t x, unsigned lo, unsigned hi) {
  uint64_t y = x | HIGH;
  uint64_t in = (y - REP(lo)) & ~(y - REP(hi + 1)) & HIGH;
  return (in >> 7) * 0xff;
}

/* Eight characters to their values, byte for byte; *bad gets bits for any invalid one. */
static uint64_t values8(uint64_t x, uint64_t *bad) {
  uint64_t high = x & HIGH;
  x &= ~HIGH; /* a byte >= 0x80 is invalid (high); keep the arithmetic within its byte */
  uint64_t up = bytes_in(x, 'A', 'Z'), low = bytes_in(x, 'a', 'z'), dig = bytes_in(x, '0', '9');
  uint64_t dash = bytes_in(x, '-', '-'), under = bytes_in(x, '_', '_');
  *bad |= high | (~(up | low | dig | dash | under) & HIGH);
  /* value - character, mod 256, per range: A-Z -65, a-z -71, 0-9 +4, '-' +17, '_' -32 */
  uint64_t off = (up & REP(0xbf)) | (low & REP(0xb9)) | (dig & REP(0x04)) | (dash & REP(0x11)) |
                 (under & REP(0xe0));
  return ((x & ~HIGH) + (off & ~HIGH)) ^ ((x ^ off) & HIGH); /* bytewise add, no carries */
}

bool ts_b64url_decode_exact(uint8_t *out, size_t n, const char *s, size_t len) {
  uint8_t v[TS_B64URL_CHARS(64)];
  if (len != TS_B64URL_CHARS(n) || len > sizeof(v)) return false;
  uint64_t bad = 0;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t x, y;
    memcpy(&x, s + i, 8);
    y = values8(x, &bad);
    memcpy(v + i, &y, 8); /* byte order in, byte order out: either endianness */
  }
  if (i < len) { /* the tail, padded with a valid character */
    char tail[8];
    memset(tail, 'A', sizeof(tail));
    memcpy(tail, s + i, len - i);
    uint64_t x, y;
    memcpy(&x, tail, 8);
    y = values8(x, &bad);
    memcpy(tail, &y, 8);
    memcpy(v + i, tail, len - i);
    sodium_memzero(tail, sizeof(tail));
  }
  size_t o = 0;
  for (i = 0; i + 4 <= len; i += 4, o += 3) { /* four values, three bytes */
    uint32_t w = (uint32_t)(v[i] & 63u) << 18 | (uint32_t)(v[i + 1] & 63u) << 12 |
                 (uint32_t)(v[i + 2] & 63u) << 6 | (v[i + 3] & 63u);
    out[o] = (uint8_t)(w >> 16);
    out[o + 1] = (uint8_t)(w >> 8);
    out[o + 2] = (uint8_t)w;
  }
  uint32_t acc = 0; /* the bits past the data: zero when canonical */
  if (len - i == 2) {
    uint32_t w = (uint32_t)(v[i] & 63u) << 6 | (v[i + 1] & 63u);
    out[o] = (uint8_t)(w >> 4);
    acc = w & 15u;
  } else if (len - i == 3) {
    uint32_t w = (uint32_t)(v[i] & 63u) << 12 | (uint32_t)(v[i + 1] & 63u) << 6 | (v[i + 2] & 63u);
    out[o] = (uint8_t)(w >> 10);
    out[o + 1] = (uint8_t)(w >> 2);
    acc = w & 3u;
  }
  sodium_memzero(v, len); /* the values are the secret too */
  return (bad | acc) == 0;
}
