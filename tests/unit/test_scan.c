/* tests/unit/test_scan.c: the allocation-free pre-scan (proto/scan.h).
 *
 * Every well-formed message is built with msgpack-c's own packer, so the length the scanner
 * reports is checked against an independent encoder (and against msgpack-c's unpacker). Each
 * message is also fed the way a socket delivers it: one byte at a time and in random splits.
 * The bytes past `len` are always poisoned with 0xc1 (the never-used byte): a scanner that peeked
 * beyond what it was given would report TS_EBADBYTE or a huge length instead of 0. */
#include "error.h"
#include "scan.h"
#include "tt.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KIB 1024u
#define POISON 0xc1

static const ts_scan_limits big = {16u * 1024 * 1024, 16};
static const ts_scan_limits lim64k = {64u * KIB, 10};

/* ---------------------------------------------------------------------------------------------
 * Helpers */

static int scan_once(const uint8_t *buf, size_t len, const ts_scan_limits *lim) {
  ts_scan s;
  ts_scan_init(&s);
  return ts_scan_feed(&s, buf, len, lim);
}

/* A working copy of the first `cap` bytes, poisoned beyond what has been "received". */
static uint8_t *poisoned(size_t cap) {
  uint8_t *w = malloc(cap + 16);
  TT_ASSERT(w != NULL);
  memset(w, POISON, cap + 16);
  return w;
}

/* Feeds msg[0..n) one byte at a time (len 1..n). Every call before the last must return 0; returns
 * what the last call returned. */
static int scan_bytewise(const uint8_t *msg, size_t n, const ts_scan_limits *lim) {
  uint8_t *w = poisoned(n);
  ts_scan s;
  ts_scan_init(&s);
  int rc = 0;
  for (size_t l = 1; l <= n; l++) {
    w[l - 1] = msg[l - 1];
    rc = ts_scan_feed(&s, w, l, lim);
    if (l < n)
      TT_ASSERT_MSG(rc == 0, "len %zu of %zu: got %d before the last byte", l, n, rc);
  }
  free(w);
  return rc;
}

/* Feeds msg[0..n) one byte at a time until the scanner answers anything but 0; returns that
 * answer and stores in *at how many bytes it had been given. */
static int scan_until_answer(const uint8_t *msg, size_t n, const ts_scan_limits *lim, size_t *at) {
  uint8_t *w = poisoned(n);
  ts_scan s;
  ts_scan_init(&s);
  int rc = 0;
  size_t l = 0;
  while (rc == 0 && l < n) {
    w[l] = msg[l];
    l++;
    rc = ts_scan_feed(&s, w, l, lim);
  }
  free(w);
  *at = l;
  return rc;
}

/* Feeds msg[0..n) in random increasing cuts; every call but the last must return 0. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

static int scan_random_splits(const uint8_t *msg, size_t n, const ts_scan_limits *lim) {
  uint8_t *w = poisoned(n);
  ts_scan s;
  ts_scan_init(&s);
  size_t l = 0;
  int rc = 0;
  while (l < n) {
    size_t step = 1 + (size_t)(rng() % (rng() % 4 == 0 ? 4096 : 17));
    size_t next = l + step > n ? n : l + step;
    memcpy(w + l, msg + l, next - l);
    l = next;
    rc = ts_scan_feed(&s, w, l, lim);
    if (l < n) TT_ASSERT_MSG(rc == 0, "len %zu of %zu: got %d before the end", l, n, rc);
  }
  free(w);
  return rc;
}

/* Packs into a fresh sbuffer. */
typedef struct msg {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} msg;

static void msg_init(msg *m) {
  msgpack_sbuffer_init(&m->sb);
  msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void msg_free(msg *m) { msgpack_sbuffer_destroy(&m->sb); }

static void pack_str(msgpack_packer *pk, size_t n, char fill) {
  char *s = malloc(n ? n : 1);
  TT_ASSERT(s != NULL);
  memset(s, fill, n);
  TT_ASSERT(msgpack_pack_str_with_body(pk, s, n) == 0);
  free(s);
}

static void pack_bin(msgpack_packer *pk, size_t n) {
  char *s = malloc(n ? n : 1);
  TT_ASSERT(s != NULL);
  for (size_t i = 0; i < n; i++) s[i] = (char)(i * 7);
  TT_ASSERT(msgpack_pack_bin_with_body(pk, s, n) == 0);
  free(s);
}

/* The length msgpack-c's own unpacker finds for the first message in buf. */
static size_t unpacker_length(const uint8_t *buf, size_t len) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)buf, len, &off);
  msgpack_unpacked_destroy(&u);
  TT_ASSERT_MSG(r == MSGPACK_UNPACK_SUCCESS || r == MSGPACK_UNPACK_EXTRA_BYTES,
                "msgpack-c could not unpack the test message (%d)", (int)r);
  return off;
}

/* The whole battery for one well-formed message: at once, with trailing poison, byte by byte,
 * in random splits; each gives exactly the packer's length. */
static void check_complete(const char *what, const uint8_t *buf, size_t n,
                           const ts_scan_limits *lim) {
  TT_ASSERT_MSG(unpacker_length(buf, n) == n, "%s: msgpack-c disagrees on the length", what);
  int rc = scan_once(buf, n, lim);
  TT_ASSERT_MSG(rc == (int)n, "%s: whole: got %d, expected %zu", what, rc, n);

  uint8_t *w = poisoned(n);
  memcpy(w, buf, n);
  rc = scan_once(w, n + 16, lim); /* trailing bytes of "the next message" */
  free(w);
  TT_ASSERT_MSG(rc == (int)n, "%s: with trailing bytes: got %d, expected %zu", what, rc, n);

  rc = scan_bytewise(buf, n, lim);
  TT_ASSERT_MSG(rc == (int)n, "%s: byte by byte: got %d, expected %zu", what, rc, n);
  for (int i = 0; i < 8; i++) {
    rc = scan_random_splits(buf, n, lim);
    TT_ASSERT_MSG(rc == (int)n, "%s: random splits: got %d, expected %zu", what, rc, n);
  }
}

static void check_msg(const char *what, msg *m, const ts_scan_limits *lim) {
  check_complete(what, (const uint8_t *)m->sb.data, m->sb.size, lim);
}

/* ---------------------------------------------------------------------------------------------
 * Complete messages of many shapes */

static void scalars(void) {
  static const int64_t ints[] = {0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295LL,
                                 4294967296LL, INT64_MAX, -1, -32, -33, -128, -129, -32768,
                                 -32769, -2147483648LL, -2147483649LL, INT64_MIN};
  char what[64];
  for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
    msg m;
    msg_init(&m);
    TT_ASSERT(msgpack_pack_int64(&m.pk, ints[i]) == 0);
    snprintf(what, sizeof(what), "int %lld", (long long)ints[i]);
    check_msg(what, &m, &big);
    msg_free(&m);
  }
  /* Every fixed width explicitly (msgpack-c's pack_fix_* never compacts). */
  msg m;
  msg_init(&m);
  TT_ASSERT(msgpack_pack_fix_uint8(&m.pk, 1) == 0 && m.sb.size == 2);
  check_msg("fix uint8", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_fix_uint16(&m.pk, 1) == 0 && m.sb.size == 3);
  check_msg("fix uint16", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_fix_uint32(&m.pk, 1) == 0 && m.sb.size == 5);
  check_msg("fix uint32", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_fix_uint64(&m.pk, 1) == 0 && m.sb.size == 9);
  check_msg("fix uint64", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_fix_int8(&m.pk, 1) == 0 && m.sb.size == 2);
  check_msg("fix int8", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_fix_int16(&m.pk, 1) == 0 && m.sb.size == 3);
  check_msg("fix int16", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_fix_int32(&m.pk, 1) == 0 && m.sb.size == 5);
  check_msg("fix int32", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_fix_int64(&m.pk, 1) == 0 && m.sb.size == 9);
  check_msg("fix int64", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_float(&m.pk, 1.5f) == 0 && m.sb.size == 5);
  check_msg("float32", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_double(&m.pk, -2.25) == 0 && m.sb.size == 9);
  check_msg("float64", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_nil(&m.pk) == 0);
  check_msg("nil", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_true(&m.pk) == 0);
  check_msg("true", &m, &big);
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_false(&m.pk) == 0);
  check_msg("false", &m, &big);
  msg_free(&m);
}

static void strings_and_bins(void) {
  /* Each size on both sides of a format boundary: fixstr/str8/str16/str32, bin8/16/32. */
  static const size_t sizes[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70000};
  char what[64];
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    msg m;
    msg_init(&m);
    pack_str(&m.pk, sizes[i], 'a');
    snprintf(what, sizeof(what), "str %zu", sizes[i]);
    check_msg(what, &m, &big);
    msg_free(&m);

    msg_init(&m);
    pack_bin(&m.pk, sizes[i]);
    snprintf(what, sizeof(what), "bin %zu", sizes[i]);
    check_msg(what, &m, &big);
    msg_free(&m);
  }
  /* A str payload made of bytes that look like hostile headers is only payload. */
  msg m;
  msg_init(&m);
  static const char evil[] = "\xdd\xff\xff\xff\xff\xc1\xc7\xd4\xdf\xff\xff\xff\xff";
  TT_ASSERT(msgpack_pack_str_with_body(&m.pk, evil, sizeof(evil) - 1) == 0);
  check_msg("str holding hostile bytes", &m, &big);
  msg_free(&m);
}

static void containers(void) {
  /* Arrays and maps on both sides of fix/16/32 boundaries. */
  static const uint32_t counts[] = {0, 1, 15, 16, 65535, 65536};
  char what[64];
  for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    msg m;
    msg_init(&m);
    TT_ASSERT(msgpack_pack_array(&m.pk, counts[i]) == 0);
    for (uint32_t k = 0; k < counts[i]; k++) TT_ASSERT(msgpack_pack_uint32(&m.pk, k) == 0);
    snprintf(what, sizeof(what), "array %u", counts[i]);
    check_msg(what, &m, &big);
    msg_free(&m);

    msg_init(&m);
    TT_ASSERT(msgpack_pack_map(&m.pk, counts[i]) == 0);
    for (uint32_t k = 0; k < counts[i]; k++) {
      TT_ASSERT(msgpack_pack_uint32(&m.pk, k) == 0);
      TT_ASSERT(msgpack_pack_nil(&m.pk) == 0);
    }
    snprintf(what, sizeof(what), "map %u", counts[i]);
    check_msg(what, &m, &big);
    msg_free(&m);
  }
}

/* A realistic request and response, with every kind of item mixed and nested. */
static void rpc_shapes(void) {
  msg m;
  msg_init(&m);
  msgpack_packer *pk = &m.pk;
  TT_ASSERT(msgpack_pack_array(pk, 4) == 0);
  TT_ASSERT(msgpack_pack_uint8(pk, 0) == 0);
  TT_ASSERT(msgpack_pack_uint32(pk, 4000000000u) == 0);
  pack_str(pk, 14, 'm');
  TT_ASSERT(msgpack_pack_array(pk, 1) == 0);
  TT_ASSERT(msgpack_pack_map(pk, 6) == 0);
  pack_str(pk, 3, 's');
  pack_str(pk, 300, 'u');
  pack_str(pk, 3, 't');
  TT_ASSERT(msgpack_pack_int64(pk, 3600) == 0);
  pack_str(pk, 4, 'd');
  TT_ASSERT(msgpack_pack_map(pk, 3) == 0);
  pack_str(pk, 1, 'a');
  TT_ASSERT(msgpack_pack_array(pk, 3) == 0);
  TT_ASSERT(msgpack_pack_true(pk) == 0);
  TT_ASSERT(msgpack_pack_double(pk, 0.1) == 0);
  TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
  pack_str(pk, 1, 'b');
  TT_ASSERT(msgpack_pack_map(pk, 0) == 0);
  pack_str(pk, 1, 'c');
  pack_bin(pk, 40);
  pack_str(pk, 1, 'n');
  TT_ASSERT(msgpack_pack_int64(pk, -5000000000LL) == 0);
  pack_str(pk, 1, 'e');
  pack_str(pk, 0, 'x');
  pack_str(pk, 1, 'f');
  TT_ASSERT(msgpack_pack_float(pk, 2.5f) == 0);
  check_msg("request", &m, &lim64k);
  msg_free(&m);

  msg_init(&m);
  TT_ASSERT(msgpack_pack_array(pk, 4) == 0);
  TT_ASSERT(msgpack_pack_uint8(pk, 1) == 0);
  TT_ASSERT(msgpack_pack_uint32(pk, 7) == 0);
  TT_ASSERT(msgpack_pack_array(pk, 2) == 0);
  pack_str(pk, 11, 'c');
  pack_str(pk, 40, 'x');
  TT_ASSERT(msgpack_pack_nil(pk) == 0);
  check_msg("error response", &m, &lim64k);
  msg_free(&m);
}

static void zero_length_items(void) {
  /* Every encoding of an empty str/bin/array/map, alone and as the last item of an array. */
  static const struct {
    const char *name;
    uint8_t b[5];
    size_t n;
  } empties[] = {
      {"fixstr", {0xa0}, 1},
      {"str8", {0xd9, 0}, 2},
      {"str16", {0xda, 0, 0}, 3},
      {"str32", {0xdb, 0, 0, 0, 0}, 5},
      {"bin8", {0xc4, 0}, 2},
      {"bin16", {0xc5, 0, 0}, 3},
      {"bin32", {0xc6, 0, 0, 0, 0}, 5},
      {"fixarray", {0x90}, 1},
      {"array16", {0xdc, 0, 0}, 3},
      {"array32", {0xdd, 0, 0, 0, 0}, 5},
      {"fixmap", {0x80}, 1},
      {"map16", {0xde, 0, 0}, 3},
      {"map32", {0xdf, 0, 0, 0, 0}, 5},
  };
  for (size_t i = 0; i < sizeof(empties) / sizeof(empties[0]); i++) {
    check_complete(empties[i].name, empties[i].b, empties[i].n, &lim64k);
    uint8_t buf[16] = {0x93, 0x01};
    memcpy(buf + 2, empties[i].b, empties[i].n);
    buf[2 + empties[i].n] = 0xa0; /* and one more empty str after it */
    check_complete(empties[i].name, buf, empties[i].n + 3, &lim64k);
  }
  /* An empty container does not open a level: the items after it belong to the parent. */
  static const uint8_t mixed[] = {0x94, 0x90, 0x80, 0xa0, 0x92, 0x90, 0x80};
  check_complete("[[],{},\"\",[[],{}]]", mixed, sizeof(mixed), &lim64k);
}

/* The first byte alone decides: everything that is whole in one byte completes, every ext byte
 * and 0xc1 is rejected, everything else asks for more. Checked for all 256 values. */
static void every_first_byte(void) {
  for (int b = 0; b < 256; b++) {
    uint8_t buf[1 + 16];
    memset(buf, POISON, sizeof(buf));
    buf[0] = (uint8_t)b;
    int want;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3 || b == 0x80 ||
        b == 0x90 || b == 0xa0)
      want = 1;
    else if (b == 0xc1)
      want = TS_EBADBYTE;
    else if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8))
      want = TS_EEXT;
    else
      want = 0;
    ts_scan s;
    ts_scan_init(&s);
    int rc = ts_scan_feed(&s, buf, 1, &big);
    TT_ASSERT_MSG(rc == want, "first byte 0x%02x: got %d, expected %d", b, rc, want);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Streams */

static void back_to_back(void) {
  msg m;
  msg_init(&m);
  TT_ASSERT(msgpack_pack_array(&m.pk, 4) == 0);
  TT_ASSERT(msgpack_pack_uint8(&m.pk, 0) == 0);
  TT_ASSERT(msgpack_pack_uint8(&m.pk, 1) == 0);
  pack_str(&m.pk, 8, 'p');
  TT_ASSERT(msgpack_pack_array(&m.pk, 0) == 0);
  size_t first = m.sb.size;
  TT_ASSERT(msgpack_pack_array(&m.pk, 4) == 0);
  TT_ASSERT(msgpack_pack_uint8(&m.pk, 0) == 0);
  TT_ASSERT(msgpack_pack_uint32(&m.pk, 70000) == 0);
  pack_str(&m.pk, 300, 'q');
  TT_ASSERT(msgpack_pack_array(&m.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_map(&m.pk, 0) == 0);
  size_t second = m.sb.size - first;
  TT_ASSERT(msgpack_pack_fix_uint64(&m.pk, 3) == 0); /* a third, single item, message */
  size_t third = m.sb.size - first - second;
  TT_EQ_INT(third, 9);
  const uint8_t *buf = (const uint8_t *)m.sb.data;
  size_t total = m.sb.size;

  ts_scan s;
  ts_scan_init(&s);
  TT_EQ_INT(ts_scan_feed(&s, buf, total, &lim64k), first);
  ts_scan_init(&s);
  TT_EQ_INT(ts_scan_feed(&s, buf + first, total - first, &lim64k), second);
  ts_scan_init(&s);
  TT_EQ_INT(ts_scan_feed(&s, buf + first + second, total - first - second, &lim64k), third);

  /* The way a connection reads: the second message arrives in pieces, glued to the first. */
  ts_scan_init(&s);
  TT_EQ_INT(ts_scan_feed(&s, buf, first + 3, &lim64k), first);
  ts_scan_init(&s);
  TT_EQ_INT(ts_scan_feed(&s, buf + first, 3, &lim64k), 0);
  TT_EQ_INT(ts_scan_feed(&s, buf + first, 200, &lim64k), 0);
  TT_EQ_INT(ts_scan_feed(&s, buf + first, second - 1, &lim64k), 0);
  TT_EQ_INT(ts_scan_feed(&s, buf + first, second + 4, &lim64k), second);

  /* A whole stream of many messages, found one after another. */
  msg big_stream;
  msg_init(&big_stream);
  size_t lens[500];
  for (int i = 0; i < 500; i++) {
    size_t before = big_stream.sb.size;
    TT_ASSERT(msgpack_pack_array(&big_stream.pk, 4) == 0);
    TT_ASSERT(msgpack_pack_uint8(&big_stream.pk, 0) == 0);
    TT_ASSERT(msgpack_pack_uint32(&big_stream.pk, (uint32_t)i * 9973u) == 0);
    pack_str(&big_stream.pk, (size_t)(i % 40), 'x');
    TT_ASSERT(msgpack_pack_array(&big_stream.pk, i % 2) == 0);
    if (i % 2) {
      TT_ASSERT(msgpack_pack_map(&big_stream.pk, 1) == 0);
      pack_str(&big_stream.pk, 3, 'k');
      pack_bin(&big_stream.pk, (size_t)i);
    }
    lens[i] = big_stream.sb.size - before;
  }
  size_t off = 0;
  for (int i = 0; i < 500; i++) {
    ts_scan_init(&s);
    int rc = ts_scan_feed(&s, (const uint8_t *)big_stream.sb.data + off, big_stream.sb.size - off,
                          &lim64k);
    TT_ASSERT_MSG(rc == (int)lens[i], "message %d: got %d, expected %zu", i, rc, lens[i]);
    off += (size_t)rc;
  }
  TT_EQ_INT(off, big_stream.sb.size);
  msg_free(&big_stream);
  msg_free(&m);
}

/* Fixed-width numbers and length headers cut at every inner byte. */
static void split_inside_numbers(void) {
  msg m;
  msg_init(&m);
  TT_ASSERT(msgpack_pack_array(&m.pk, 9) == 0);
  TT_ASSERT(msgpack_pack_fix_uint16(&m.pk, 0xc1c1) == 0);
  TT_ASSERT(msgpack_pack_fix_uint32(&m.pk, 0xdddddddd) == 0);
  TT_ASSERT(msgpack_pack_fix_uint64(&m.pk, 0xdfdfdfdfdfdfdfdfull) == 0);
  TT_ASSERT(msgpack_pack_fix_int64(&m.pk, -1) == 0);
  TT_ASSERT(msgpack_pack_float(&m.pk, 3.0f) == 0);
  TT_ASSERT(msgpack_pack_double(&m.pk, 1e300) == 0);
  pack_str(&m.pk, 300, 'z');   /* str16: its length field cut too */
  pack_bin(&m.pk, 70000);      /* bin32 */
  TT_ASSERT(msgpack_pack_array(&m.pk, 16) == 0); /* array16 */
  for (int i = 0; i < 16; i++) TT_ASSERT(msgpack_pack_fix_int16(&m.pk, -300) == 0);
  const uint8_t *buf = (const uint8_t *)m.sb.data;
  size_t n = m.sb.size;
  /* Two pieces, cut at every position. */
  uint8_t *w = poisoned(n);
  for (size_t cut = 1; cut < n; cut++) {
    memset(w, POISON, n);
    memcpy(w, buf, cut);
    ts_scan s;
    ts_scan_init(&s);
    int rc = ts_scan_feed(&s, w, cut, &big);
    TT_ASSERT_MSG(rc == 0, "cut at %zu: got %d", cut, rc);
    memcpy(w + cut, buf + cut, n - cut);
    rc = ts_scan_feed(&s, w, n, &big);
    TT_ASSERT_MSG(rc == (int)n, "cut at %zu: got %d, expected %zu", cut, rc, n);
    if (cut > 64 && cut < n - 400) cut += 997; /* through the bin payload in strides */
  }
  free(w);
  check_msg("numbers", &m, &big);
  msg_free(&m);
}

/* ---------------------------------------------------------------------------------------------
 * Limits */

static void message_limit_exact(void) {
  /* Limit 100: [bin 96, nil] is 100 bytes and fits; [bin 97, nil] is 101 and does not. */
  const ts_scan_limits lim = {100, 10};
  msg m;
  msg_init(&m);
  TT_ASSERT(msgpack_pack_array(&m.pk, 2) == 0);
  pack_bin(&m.pk, 96);
  TT_ASSERT(msgpack_pack_nil(&m.pk) == 0);
  TT_EQ_INT(m.sb.size, 100);
  check_msg("exactly the limit", &m, &lim);
  msg_free(&m);

  msg_init(&m);
  TT_ASSERT(msgpack_pack_array(&m.pk, 2) == 0);
  pack_bin(&m.pk, 97);
  TT_ASSERT(msgpack_pack_nil(&m.pk) == 0);
  TT_EQ_INT(m.sb.size, 101);
  TT_EQ_INT(scan_once((const uint8_t *)m.sb.data, m.sb.size, &lim), TS_EMSGSIZE);
  /* Known as soon as the limit is used up: byte 101 is never needed. */
  TT_EQ_INT(scan_once((const uint8_t *)m.sb.data, 100, &lim), TS_EMSGSIZE);
  TT_EQ_INT(scan_bytewise((const uint8_t *)m.sb.data, 100, &lim), TS_EMSGSIZE);
  msg_free(&m);

  /* A lone str whose payload is exactly what the limit leaves, and one byte more. */
  msg_init(&m);
  pack_str(&m.pk, 98, 's'); /* str8: 2 + 98 */
  check_msg("str to the limit", &m, &lim);
  msg_free(&m);
  msg_init(&m);
  pack_str(&m.pk, 99, 's');
  TT_EQ_INT(scan_once((const uint8_t *)m.sb.data, 2, &lim), TS_ELENGTH);
  msg_free(&m);

  /* A fixed-width number whose payload would cross the limit is rejected at its type byte. */
  uint8_t buf[100 + 16];
  memset(buf, POISON, sizeof(buf));
  buf[0] = 0xdc; buf[1] = 0x00; buf[2] = 0x20; /* array16 of 32 */
  for (int i = 0; i < 32; i++) buf[3 + i] = 0x01;
  TT_EQ_INT(scan_once(buf, 35, &lim), 35);
  /* [1, float64] is 11 bytes; under a limit of 10 the float's type byte is enough to say no. */
  static const uint8_t f64[] = {0x92, 0x01, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0};
  const ts_scan_limits ten = {10, 10}, eleven = {11, 10};
  TT_EQ_INT(scan_once(f64, 3, &ten), TS_EMSGSIZE);
  TT_EQ_INT(scan_once(f64, sizeof(f64), &eleven), 11);
}

static void over_limit(void) {
  /* Limit 64 KiB, one str of 70000 bytes: the header alone says it cannot fit. */
  msg m;
  msg_init(&m);
  pack_str(&m.pk, 70000, 'a');
  TT_EQ_INT(scan_once((const uint8_t *)m.sb.data, m.sb.size, &lim64k), TS_ELENGTH);
  TT_EQ_INT(scan_once((const uint8_t *)m.sb.data, 5, &lim64k), TS_ELENGTH);
  TT_EQ_INT(scan_bytewise((const uint8_t *)m.sb.data, 5, &lim64k), TS_ELENGTH);
  msg_free(&m);

  /* Many small items, each fine, together past the limit: 30000 uint16 = 90003 bytes. */
  msg_init(&m);
  TT_ASSERT(msgpack_pack_array(&m.pk, 30000) == 0);
  for (int i = 0; i < 30000; i++) TT_ASSERT(msgpack_pack_fix_uint16(&m.pk, (uint16_t)i) == 0);
  TT_EQ_INT(m.sb.size, 90003);
  const uint8_t *buf = (const uint8_t *)m.sb.data;
  TT_EQ_INT(scan_once(buf, m.sb.size, &lim64k), TS_EMSGSIZE);
  /* Detected without reading beyond the limit (plus the one byte that crosses it). */
  TT_EQ_INT(scan_once(buf, 64 * KIB + 1, &lim64k), TS_EMSGSIZE);
  size_t at;
  TT_EQ_INT(scan_until_answer(buf, m.sb.size, &lim64k, &at), TS_EMSGSIZE);
  TT_ASSERT_MSG(at <= 64 * KIB + 1, "rejected only after %zu bytes", at);
  TT_ASSERT_MSG(at > 64 * KIB - 3, "rejected already after %zu bytes", at);
  /* With a larger limit the same bytes are a fine message. */
  check_msg("90003 byte array", &m, &big);
  msg_free(&m);

  /* A map of 20000 pairs of 3-byte strs (4 bytes each with the header) is 160003 bytes. The
   * str that straddles the limit is rejected at its header: its payload cannot fit. */
  msg_init(&m);
  TT_ASSERT(msgpack_pack_map(&m.pk, 20000) == 0);
  for (int i = 0; i < 20000; i++) {
    pack_str(&m.pk, 3, 'k');
    pack_str(&m.pk, 3, 'v');
  }
  TT_EQ_INT(scan_once((const uint8_t *)m.sb.data, m.sb.size, &lim64k), TS_ELENGTH);
  TT_EQ_INT(scan_until_answer((const uint8_t *)m.sb.data, m.sb.size, &lim64k, &at), TS_ELENGTH);
  TT_EQ_INT(at, 3 + 16383 * 4 + 1); /* the header of item 16383 starts at byte 65535 */
  msg_free(&m);
}

typedef struct hostile {
  const char *name;
  uint8_t b[5];
  size_t n;
} hostile;

static void hostile_headers(void) {
  static const hostile hs[] = {
      {"DD FF FF FF FF array32", {0xdd, 0xff, 0xff, 0xff, 0xff}, 5},
      {"DF FF FF FF FF map32", {0xdf, 0xff, 0xff, 0xff, 0xff}, 5},
      {"DB FF FF FF FF str32", {0xdb, 0xff, 0xff, 0xff, 0xff}, 5},
      {"C6 FF FF FF FF bin32", {0xc6, 0xff, 0xff, 0xff, 0xff}, 5},
      {"DD 7F FF FF FF array32", {0xdd, 0x7f, 0xff, 0xff, 0xff}, 5},
      {"DF 80 00 00 00 map32", {0xdf, 0x80, 0x00, 0x00, 0x00}, 5},
      {"DB 00 01 00 00 str32 65536", {0xdb, 0x00, 0x01, 0x00, 0x00}, 5},
      {"DC FF FF array16", {0xdc, 0xff, 0xff}, 3},
      {"DE FF FF map16", {0xde, 0xff, 0xff}, 3},
      {"DA FF FF str16", {0xda, 0xff, 0xff}, 3},
      {"C5 FF FF bin16", {0xc5, 0xff, 0xff}, 3},
      {"D9 FF str8", {0xd9, 0xff}, 2},
      {"C4 FF bin8", {0xc4, 0xff}, 2},
  };
  const ts_scan_limits small = {200, 10};
  for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
    const hostile *h = &hs[i];
    /* Just the header bytes, nothing after them: rejected at once. */
    int rc = scan_once(h->b, h->n, &small);
    TT_ASSERT_MSG(rc == TS_ELENGTH, "%s: got %d", h->name, rc);
    /* Byte by byte: more bytes asked for until the header is whole, then rejected. */
    rc = scan_bytewise(h->b, h->n, &small);
    TT_ASSERT_MSG(rc == TS_ELENGTH, "%s bytewise: got %d", h->name, rc);
    /* Inside the envelope, deep in params, the same. */
    uint8_t buf[32] = {0x94, 0x00, 0x01, 0xa1, 'm', 0x91, 0x81, 0xa1, 'k', 0x91};
    memcpy(buf + 10, h->b, h->n);
    rc = scan_bytewise(buf, 10 + h->n, &small);
    TT_ASSERT_MSG(rc == TS_ELENGTH, "%s nested: got %d", h->name, rc);
  }
  /* The 4-byte ones also with the default 64 KiB limit. */
  for (size_t i = 0; i < 7; i++) {
    int rc = scan_once(hs[i].b, hs[i].n, &lim64k);
    TT_ASSERT_MSG(rc == TS_ELENGTH, "%s at 64 KiB: got %d", hs[i].name, rc);
  }
  /* A map's count is of pairs: 32768 pairs are 65536 items, more than 64 KiB - 3 can hold,
   * though 32768 alone would fit. */
  static const uint8_t map16[] = {0xde, 0x80, 0x00};
  TT_EQ_INT(scan_once(map16, sizeof(map16), &lim64k), TS_ELENGTH);
  static const uint8_t arr16[] = {0xdc, 0x80, 0x00};
  TT_EQ_INT(scan_once(arr16, sizeof(arr16), &lim64k), 0); /* 32768 items might still fit */
  /* A count that can fit right after the header: room is what the limit leaves. */
  const ts_scan_limits l20 = {20, 10};
  static const uint8_t fits[] = {0xdc, 0x00, 0x11}; /* 17 items, 17 bytes left */
  TT_EQ_INT(scan_once(fits, sizeof(fits), &l20), 0);
  static const uint8_t nofit[] = {0xdc, 0x00, 0x12}; /* 18 items */
  TT_EQ_INT(scan_once(nofit, sizeof(nofit), &l20), TS_ELENGTH);
}

static void nest(uint8_t *buf, unsigned levels, size_t *n, int use_maps) {
  size_t k = 0;
  for (unsigned i = 0; i < levels; i++) {
    if (use_maps) {
      buf[k++] = 0x81;
      buf[k++] = 0xa1;
      buf[k++] = 'k';
    } else {
      buf[k++] = 0x91;
    }
  }
  buf[k++] = 0xc0;
  *n = k;
}

static void depth(void) {
  uint8_t buf[4 * 80 + 1];
  size_t n;
  for (unsigned max = 1; max <= 12; max++) {
    const ts_scan_limits lim = {64 * KIB, max};
    for (int maps = 0; maps < 2; maps++) {
      nest(buf, max, &n, maps);
      int rc = scan_bytewise(buf, n, &lim);
      TT_ASSERT_MSG(rc == (int)n, "depth %u (%s): got %d, expected %zu", max,
                    maps ? "maps" : "arrays", rc, n);
      nest(buf, max + 1, &n, maps);
      rc = scan_once(buf, n, &lim);
      TT_ASSERT_MSG(rc == TS_EDEPTH, "depth %u+1 (%s): got %d", max, maps ? "maps" : "arrays", rc);
      /* Rejected at the header of the level too many, nothing after it needed. */
      size_t at = (size_t)max * (maps ? 3 : 1) + 1;
      rc = scan_once(buf, at, &lim);
      TT_ASSERT_MSG(rc == TS_EDEPTH, "depth %u+1 (%s) at its header: got %d", max,
                    maps ? "maps" : "arrays", rc);
    }
  }
  /* array16/array32/map16 headers open levels too. */
  const ts_scan_limits lim2 = {64 * KIB, 2};
  static const uint8_t wide_ok[] = {0xdc, 0x00, 0x01, 0xdd, 0x00, 0x00, 0x00, 0x01, 0xc0};
  TT_EQ_INT(scan_once(wide_ok, sizeof(wide_ok), &lim2), sizeof(wide_ok));
  static const uint8_t wide_deep[] = {0xdc, 0x00, 0x01, 0xdd, 0x00, 0x00, 0x00, 0x01,
                                      0xde, 0x00, 0x01};
  TT_EQ_INT(scan_once(wide_deep, sizeof(wide_deep), &lim2), TS_EDEPTH);

  /* Levels are closed again: siblings at depth 3 under a limit of 3 are fine, many times over. */
  const ts_scan_limits lim3 = {64 * KIB, 3};
  msg m;
  msg_init(&m);
  TT_ASSERT(msgpack_pack_array(&m.pk, 50) == 0);
  for (int i = 0; i < 50; i++) {
    TT_ASSERT(msgpack_pack_map(&m.pk, 1) == 0);
    pack_str(&m.pk, 1, 'k');
    TT_ASSERT(msgpack_pack_array(&m.pk, 2) == 0);
    TT_ASSERT(msgpack_pack_int64(&m.pk, i) == 0);
    TT_ASSERT(msgpack_pack_nil(&m.pk) == 0);
  }
  check_msg("siblings at the depth limit", &m, &lim3);
  /* ... and one level more in the last sibling is still caught. */
  msg_free(&m);
  msg_init(&m);
  TT_ASSERT(msgpack_pack_array(&m.pk, 2) == 0);
  TT_ASSERT(msgpack_pack_array(&m.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_array(&m.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_nil(&m.pk) == 0);
  TT_ASSERT(msgpack_pack_array(&m.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_array(&m.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_array(&m.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_nil(&m.pk) == 0);
  TT_EQ_INT(scan_once((const uint8_t *)m.sb.data, m.sb.size, &lim3), TS_EDEPTH);
  msg_free(&m);

  /* A configured depth above the hard ceiling is clamped to it (no overflow of the state). */
  const ts_scan_limits huge = {64 * KIB, 1000};
  nest(buf, TS_SCAN_DEPTH_MAX, &n, 0);
  TT_EQ_INT(scan_once(buf, n, &huge), n);
  nest(buf, TS_SCAN_DEPTH_MAX + 1, &n, 0);
  TT_EQ_INT(scan_once(buf, n, &huge), TS_EDEPTH);
}

static void ext_types(void) {
  static const uint8_t ext_bytes[] = {0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8};
  for (size_t i = 0; i < sizeof(ext_bytes); i++) {
    uint8_t b = ext_bytes[i];
    /* The type byte alone is enough to reject. */
    TT_ASSERT_MSG(scan_once(&b, 1, &lim64k) == TS_EEXT, "0x%02x alone", b);
    /* With a plausible ext body after it. */
    uint8_t buf[24] = {b, 0x01, 0x01, 0x01, 0x01, 0x01};
    TT_ASSERT_MSG(scan_once(buf, sizeof(buf), &lim64k) == TS_EEXT, "0x%02x with body", b);
    /* Inside params of a request. */
    uint8_t req[16] = {0x94, 0x00, 0x01, 0xa1, 'm', 0x91, 0x81, 0xa1, 'k', b};
    TT_ASSERT_MSG(scan_bytewise(req, 10, &lim64k) == TS_EEXT, "0x%02x in params", b);
  }
  /* What msgpack-c's packer makes of an ext, every size class. */
  static const size_t sizes[] = {1, 2, 4, 8, 16, 0, 3, 300, 70000};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    msg m;
    msg_init(&m);
    TT_ASSERT(msgpack_pack_array(&m.pk, 2) == 0);
    TT_ASSERT(msgpack_pack_nil(&m.pk) == 0);
    char *body = calloc(1, sizes[i] + 1);
    TT_ASSERT(body != NULL);
    TT_ASSERT(msgpack_pack_ext_with_body(&m.pk, body, sizes[i], 5) == 0);
    free(body);
    int rc = scan_once((const uint8_t *)m.sb.data, m.sb.size, &big);
    TT_ASSERT_MSG(rc == TS_EEXT, "ext of %zu: got %d", sizes[i], rc);
    msg_free(&m);
  }
}

static void bad_byte(void) {
  static const uint8_t alone[] = {0xc1};
  TT_EQ_INT(scan_once(alone, 1, &lim64k), TS_EBADBYTE);
  static const uint8_t in_array[] = {0x93, 0x01, 0x02, 0xc1};
  TT_EQ_INT(scan_once(in_array, sizeof(in_array), &lim64k), TS_EBADBYTE);
  TT_EQ_INT(scan_bytewise(in_array, sizeof(in_array), &lim64k), TS_EBADBYTE);
  static const uint8_t as_key[] = {0x81, 0xc1, 0x01};
  TT_EQ_INT(scan_once(as_key, sizeof(as_key), &lim64k), TS_EBADBYTE);
  /* As str payload it is just a byte. */
  static const uint8_t in_str[] = {0xa3, 0xc1, 0xc1, 0xc1};
  TT_EQ_INT(scan_once(in_str, sizeof(in_str), &lim64k), 4);
}

/* The limits of one scan are held by the caller; re-initialising after a rejection starts
 * clean (a connection is closed on rejection, but a fresh scan must not inherit anything). */
static void init_resets(void) {
  ts_scan s;
  ts_scan_init(&s);
  static const uint8_t partial[] = {0x92, 0x91, 0xdb, 0x00, 0x00, 0x00, 0x05, 'a', 'b'};
  TT_EQ_INT(ts_scan_feed(&s, partial, sizeof(partial), &lim64k), 0);
  ts_scan_init(&s);
  static const uint8_t one[] = {0x07};
  TT_EQ_INT(ts_scan_feed(&s, one, 1, &lim64k), 1);
  ts_scan_init(&s);
  static const uint8_t bad[] = {0xc1};
  TT_EQ_INT(ts_scan_feed(&s, bad, 1, &lim64k), TS_EBADBYTE);
  ts_scan_init(&s);
  static const uint8_t arr[] = {0x92, 0x01, 0x02};
  TT_EQ_INT(ts_scan_feed(&s, arr, 3, &lim64k), 3);
}

static const tt_case cases[] = {
    TT_CASE(scalars),
    TT_CASE(strings_and_bins),
    TT_CASE(containers),
    TT_CASE(rpc_shapes),
    TT_CASE(zero_length_items),
    TT_CASE(every_first_byte),
    TT_CASE(back_to_back),
    TT_CASE(split_inside_numbers),
    TT_CASE(message_limit_exact),
    TT_CASE(over_limit),
    TT_CASE(hostile_headers),
    TT_CASE(depth),
    TT_CASE(ext_types),
    TT_CASE(bad_byte),
    TT_CASE(init_resets),
};

TT_MAIN(cases)
