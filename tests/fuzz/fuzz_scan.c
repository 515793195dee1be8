/* tests/fuzz/fuzz_scan.c: the allocation-free pre-scan (proto/scan.h) over a byte stream.
 *
 * The input is a stream of messages, as a connection receives it. For each of a few limit
 * sets (the daemon's default, a tiny one, the deepest msgpack-c can unpack), the stream is
 * scanned message after message three ways: all bytes at once, one byte at a time, and in
 * splits drawn from the input. Properties:
 *   - every split gives the same result (length, 0 or the same error): the scanner is
 *     resumable and never looks at a byte it was not given (the bytes past len are
 *     ASan-poisoned in the split runs, and 0xc1 otherwise);
 *   - a complete message is at most max_message bytes, and msgpack-c's unpacker agrees: it
 *     unpacks exactly those bytes (so what the scanner passes never surprises msgpack-c, and
 *     under -malloc_limit_mb a length the scanner let through that made msgpack-c allocate
 *     hugely is a crash);
 *   - a stream the scanner calls incomplete is incomplete for msgpack-c too. */
#include "fuzz.h"

#include "error.h"
#include "scan.h"

#include <msgpack.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<sanitizer/asan_interface.h>)
#include <sanitizer/asan_interface.h>
#endif
#endif
#ifndef ASAN_POISON_MEMORY_REGION
#define ASAN_POISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size) ((void)(addr), (void)(size))
#endif

#define POISON 0xc1 /* never used in msgpack: a scanner that reads it reports TS_EBADBYTE */

static const ts_scan_limits limits[] = {
    {64 * 1024, 10}, /* tesserad's defaults: --max-message 64K, --max-depth 8 (+2) */
    {256, 3},
    {64 * 1024, 31}, /* msgpack-c unpacks 32 levels; an empty container adds one */
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

typedef struct rng {
  uint64_t s;
} rng;

static uint32_t rng_next(rng *r) {
  r->s ^= r->s << 13;
  r->s ^= r->s >> 7;
  r->s ^= r->s << 17;
  return (uint32_t)(r->s >> 11);
}

/* Feeds msg[0..total) growing len by steps (step 0: random 1..64 bytes) into a copy whose
 * bytes past len are poisoned. Returns the first nonzero result, or 0. */
static int feed_split(const uint8_t *msg, size_t total, const ts_scan_limits *lim, size_t step,
                      rng *r) {
  uint8_t *w = malloc(total + 1);
  FUZZ_CHECK(w != NULL);
  memset(w, POISON, total + 1);
  ASAN_POISON_MEMORY_REGION(w, total + 1);
  ts_scan s;
  ts_scan_init(&s);
  int rc = 0;
  size_t len = 0;
  while (len < total) {
    size_t add = step ? step : 1 + rng_next(r) % 64;
    if (add > total - len) add = total - len;
    ASAN_UNPOISON_MEMORY_REGION(w + len, add);
    memcpy(w + len, msg + len, add);
    len += add;
    rc = ts_scan_feed(&s, w, len, lim);
    if (rc != 0) break;
  }
  ASAN_UNPOISON_MEMORY_REGION(w, total + 1);
  free(w);
  return rc;
}

/* Scans the stream under lim. msgpack-c is asked about the messages from `checked` on (a
 * message an earlier pass already checked has the same bytes and, accepted, the same length;
 * msgpack-c is slow under ASan). Returns how far msgpack-c agreed. */
static size_t check_stream(const uint8_t *data, size_t size, const ts_scan_limits *lim, rng *r,
                           size_t checked) {
  size_t off = 0;
  while (off < size) {
    const uint8_t *msg = data + off;
    size_t have = size - off;
    ts_scan s;
    ts_scan_init(&s);
    int whole = ts_scan_feed(&s, msg, have, lim);
    /* A split run must have answered by the time it was given `whole` bytes. */
    size_t upto = whole > 0 ? (size_t)whole : have;
    FUZZ_CHECK(feed_split(msg, upto, lim, 1, r) == whole);
    FUZZ_CHECK(feed_split(msg, upto, lim, 0, r) == whole);
    if (whole < 0) return off; /* the daemon closes the connection here */
    if (off < checked) {
      FUZZ_CHECK(whole > 0);
      off += (size_t)whole;
      continue;
    }

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t used = 0;
    msgpack_unpack_return ur;
    if (whole == 0) {
      /* Incomplete: msgpack-c must want more too (it may not call it an error). */
      ur = msgpack_unpack_next(&up, (const char *)msg, have, &used);
      FUZZ_CHECK(ur == MSGPACK_UNPACK_CONTINUE);
      msgpack_unpacked_destroy(&up);
      return off;
    }
    FUZZ_CHECK((size_t)whole <= have && (size_t)whole <= lim->max_message);
    ur = msgpack_unpack_next(&up, (const char *)msg, (size_t)whole, &used);
    FUZZ_CHECK(ur == MSGPACK_UNPACK_SUCCESS);
    FUZZ_CHECK(used == (size_t)whole);
    msgpack_unpacked_destroy(&up);
    off += (size_t)whole;
  }
  return off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rng r = {0x9e3779b97f4a7c15ull ^ size};
  for (size_t i = 0; i < size && i < 16; i++) r.s = (r.s ^ data[i]) * 0x100000001b3ull;
  if (r.s == 0) r.s = 1;
  size_t checked = 0;
  for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
    size_t upto = check_stream(data, size, &limits[i], &r, checked);
    if (upto > checked) checked = upto;
  }
  return 0;
}
