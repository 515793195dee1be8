/* tests/unit/test_json.c: msgpack <-> JSON (proto/json.h).
 *
 * Round trips go JSON -> msgpack (ts_json_pack) -> msgpack-c's unpacker -> JSON (ts_mp_to_json)
 * and must give an equal value, and packing that again must give the same bytes. Values JSON
 * cannot carry (ext, non-str keys, invalid UTF-8, integers beyond int64, non-finite reals) must
 * give NULL, never a partial value. */
#include "error.h"
#include "json.h"
#include "tt.h"

#include <math.h>
#include <msgpack.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Helpers */

typedef struct buf {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
} buf;

static void buf_init(buf *b) {
  msgpack_sbuffer_init(&b->sb);
  msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
  msgpack_unpacked_init(&b->u);
}

static void buf_free(buf *b) {
  msgpack_unpacked_destroy(&b->u);
  msgpack_sbuffer_destroy(&b->sb);
}

static const msgpack_object *unpacked(buf *b) {
  size_t off = 0;
  msgpack_unpack_return r = msgpack_unpack_next(&b->u, b->sb.data, b->sb.size, &off);
  TT_ASSERT_MSG(r == MSGPACK_UNPACK_SUCCESS, "unpack failed: %d", (int)r);
  TT_EQ_INT(off, b->sb.size);
  return &b->u.data;
}

/* What ts_mp_to_json makes of the packed bytes. */
static json_t *to_json(buf *b) { return ts_mp_to_json(unpacked(b)); }

static void pstr(msgpack_packer *pk, const char *s) {
  TT_ASSERT(msgpack_pack_str_with_body(pk, s, strlen(s)) == 0);
}

static char *dump(const json_t *v) {
  char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_COMPACT);
  return s ? s : strdup("(dump failed)");
}

/* JSON -> msgpack -> JSON must be equal; the second packing must give the same bytes. Returns
 * the packed size. */
static size_t roundtrip(const json_t *v) {
  buf a, b;
  buf_init(&a);
  buf_init(&b);
  TT_EQ_INT(ts_json_pack(&a.pk, v), 0);
  json_t *back = to_json(&a);
  char *want = dump(v);
  TT_ASSERT_MSG(back != NULL, "%s: converting back gave NULL", want);
  char *got = dump(back);
  TT_ASSERT_MSG(json_equal(v, back), "round trip: %s became %s", want, got);
  TT_EQ_INT(ts_json_pack(&b.pk, back), 0);
  TT_ASSERT_MSG(a.sb.size == b.sb.size && memcmp(a.sb.data, b.sb.data, a.sb.size) == 0,
                "%s: packing again gave other bytes", want);
  size_t n = a.sb.size;
  free(want);
  free(got);
  json_decref(back);
  buf_free(&a);
  buf_free(&b);
  return n;
}

static json_t *parse(const char *text) {
  json_error_t err;
  json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
  TT_ASSERT_MSG(v != NULL, "test JSON does not parse: %s", err.text);
  return v;
}

/* ---------------------------------------------------------------------------------------------
 * Round trips */

static void roundtrip_nested(void) {
  static const char *const texts[] = {
      "{\"sub\": \"alice\", \"n\": 1, \"neg\": -5, \"big\": 9223372036854775807,"
      " \"min\": -9223372036854775808, \"r\": 0.5, \"r2\": -1.25e300, \"tiny\": 5e-324,"
      " \"s\": \"h\\u00e9llo \\u2713 \\ud834\\udd1e \\u65e5\\u672c\", \"e\": \"\","
      " \"nul\": null, \"t\": true, \"f\": false,"
      " \"arr\": [1, [2, [3, {}]], [], [null, false, 0.25, \"x\"]],"
      " \"obj\": {\"x\": {\"y\": {\"z\": [null, {\"deep\": [[[]]]}]}}}}",
      "[]",
      "{}",
      "null",
      "true",
      "false",
      "0",
      "-1",
      "\"\"",
      "[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]",
      "[{\"a\": [{\"b\": [{\"c\": 3.5}]}]}]",
      "{\"\": \"empty key\", \"key with spaces\": 1, \"\\u00fcml\\u00e4ut\": 2}",
  };
  for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
    json_t *v = parse(texts[i]);
    roundtrip(v);
    json_decref(v);
  }
  /* Many keys and a long array keep their order and content. */
  json_t *o = json_object();
  json_t *a = json_array();
  char key[32];
  for (int i = 0; i < 300; i++) {
    snprintf(key, sizeof(key), "k%03d", i);
    TT_ASSERT(json_object_set_new(o, key, json_integer(i * 1000003LL)) == 0);
    TT_ASSERT(json_array_append_new(a, json_real(i / 8.0)) == 0);
  }
  TT_ASSERT(json_object_set_new(o, "list", a) == 0);
  roundtrip(o);
  json_decref(o);
}

/* msgpack-c unpacks an empty str with a NULL pointer; "" as a value and as a key still convert. */
static void empty_str_and_key(void) {
  buf b;
  buf_init(&b);
  TT_ASSERT(msgpack_pack_map(&b.pk, 2) == 0);
  pstr(&b.pk, "scope");
  pstr(&b.pk, "");
  pstr(&b.pk, "");
  TT_ASSERT(msgpack_pack_int(&b.pk, 7) == 0);
  json_t *v = to_json(&b);
  TT_ASSERT(v != NULL && json_is_object(v));
  TT_EQ_INT(json_object_size(v), 2);
  TT_EQ_STR(json_string_value(json_object_get(v, "scope")), "");
  TT_EQ_INT(json_integer_value(json_object_get(v, "")), 7);
  json_decref(v);
  buf_free(&b);

  buf_init(&b);
  pstr(&b.pk, "");
  v = to_json(&b);
  TT_ASSERT(v != NULL && json_is_string(v));
  TT_EQ_INT(json_string_length(v), 0);
  json_decref(v);
  buf_free(&b);
}

/* Integers across every msgpack width, and the bytes are the standard compact ones. */
static void integers(void) {
  static const struct {
    json_int_t v;
    uint8_t b[9];
    size_t n;
  } ints[] = {
      {0, {0x00}, 1},
      {1, {0x01}, 1},
      {127, {0x7f}, 1},
      {128, {0xcc, 0x80}, 2},
      {255, {0xcc, 0xff}, 2},
      {256, {0xcd, 0x01, 0x00}, 3},
      {65536, {0xce, 0x00, 0x01, 0x00, 0x00}, 5},
      {4294967296LL, {0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 9},
      {INT64_MAX, {0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9},
      {-1, {0xff}, 1},
      {-32, {0xe0}, 1},
      {-33, {0xd0, 0xdf}, 2},
      {-129, {0xd1, 0xff, 0x7f}, 3},
      {-32769, {0xd2, 0xff, 0xff, 0x7f, 0xff}, 5},
      {-2147483649LL, {0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}, 9},
      {INT64_MIN, {0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9},
  };
  for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
    json_t *v = json_integer(ints[i].v);
    buf b;
    buf_init(&b);
    TT_EQ_INT(ts_json_pack(&b.pk, v), 0);
    TT_ASSERT_MSG(b.sb.size == ints[i].n && memcmp(b.sb.data, ints[i].b, ints[i].n) == 0,
                  "%lld packed into %zu bytes starting 0x%02x", (long long)ints[i].v, b.sb.size,
                  (uint8_t)b.sb.data[0]);
    json_t *back = to_json(&b);
    TT_ASSERT(json_is_integer(back));
    TT_EQ_INT(json_integer_value(back), ints[i].v);
    json_decref(back);
    json_decref(v);
    buf_free(&b);
  }
  /* 2^53 + 1 is not a double: it stays an exact integer. */
  json_t *v = json_integer(9007199254740993LL);
  roundtrip(v);
  json_decref(v);
}

static void integer_beyond_int64(void) {
  buf b;
  buf_init(&b);
  TT_ASSERT(msgpack_pack_uint64(&b.pk, (uint64_t)INT64_MAX + 1) == 0);
  TT_ASSERT(to_json(&b) == NULL);
  buf_free(&b);

  buf_init(&b);
  TT_ASSERT(msgpack_pack_uint64(&b.pk, UINT64_MAX) == 0);
  TT_ASSERT(to_json(&b) == NULL);
  buf_free(&b);

  /* Inside a structure the whole conversion fails. */
  buf_init(&b);
  TT_ASSERT(msgpack_pack_map(&b.pk, 2) == 0);
  pstr(&b.pk, "ok");
  TT_ASSERT(msgpack_pack_int(&b.pk, 1) == 0);
  pstr(&b.pk, "exp");
  TT_ASSERT(msgpack_pack_uint64(&b.pk, UINT64_MAX) == 0);
  TT_ASSERT(to_json(&b) == NULL);
  buf_free(&b);

  /* The largest that fits, sent as uint64, is an integer. */
  buf_init(&b);
  TT_ASSERT(msgpack_pack_fix_uint64(&b.pk, (uint64_t)INT64_MAX) == 0);
  json_t *v = to_json(&b);
  TT_ASSERT(json_is_integer(v) && json_integer_value(v) == INT64_MAX);
  json_decref(v);
  buf_free(&b);
}

static void reals(void) {
  static const double ds[] = {0.0, 0.5, -0.5, 3.141592653589793, 1e300, -1.25e-300, 1e-320,
                              123456789.125};
  for (size_t i = 0; i < sizeof(ds) / sizeof(ds[0]); i++) {
    json_t *v = json_real(ds[i]);
    TT_ASSERT(v != NULL);
    size_t n = roundtrip(v);
    TT_EQ_INT(n, 9); /* always float64: nothing lost */
    json_decref(v);
  }
  /* A float32 from another client reads as the same real. */
  buf b;
  buf_init(&b);
  TT_ASSERT(msgpack_pack_float(&b.pk, 1.5f) == 0);
  TT_EQ_INT(b.sb.size, 5);
  json_t *v = to_json(&b);
  TT_ASSERT(json_is_real(v) && json_real_value(v) == 1.5);
  json_decref(v);
  buf_free(&b);
  /* Non-finite reals have no JSON form. */
  static const double bad[] = {NAN, INFINITY, -INFINITY};
  for (size_t i = 0; i < 3; i++) {
    buf_init(&b);
    TT_ASSERT(msgpack_pack_array(&b.pk, 1) == 0);
    TT_ASSERT(msgpack_pack_double(&b.pk, bad[i]) == 0);
    TT_ASSERT_MSG(to_json(&b) == NULL, "non-finite real %zu converted", i);
    buf_free(&b);
  }
}

static void strings_utf8(void) {
  static const char *const ok[] = {"", "plain", "h\xc3\xa9llo", "\xe2\x9c\x93",
                                   "\xf0\x9d\x84\x9e", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
                                   "tab\tnewline\nquote\"backslash\\"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    buf b;
    buf_init(&b);
    pstr(&b.pk, ok[i]);
    json_t *v = to_json(&b);
    TT_ASSERT_MSG(v != NULL && json_is_string(v), "string %zu not converted", i);
    TT_EQ_STR(json_string_value(v), ok[i]);
    TT_EQ_INT(json_string_length(v), strlen(ok[i]));
    roundtrip(v);
    json_decref(v);
    buf_free(&b);
  }
  /* An embedded NUL is part of the string both ways. */
  json_t *v = json_stringn("a\0b", 3);
  TT_ASSERT(v != NULL);
  buf b;
  buf_init(&b);
  TT_EQ_INT(ts_json_pack(&b.pk, v), 0);
  static const uint8_t want[] = {0xa3, 'a', 0, 'b'};
  TT_ASSERT(b.sb.size == 4 && memcmp(b.sb.data, want, 4) == 0);
  json_t *back = to_json(&b);
  TT_ASSERT(back && json_string_length(back) == 3 && memcmp(json_string_value(back), "a\0b", 3) == 0);
  json_decref(back);
  json_decref(v);
  buf_free(&b);

  /* Invalid UTF-8: a stray byte, an overlong NUL, a surrogate, a truncated sequence. */
  static const char *const bad[] = {"\xff", "a\xc0\x80", "\xed\xa0\x80", "\xe2\x9c", "\x80"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    buf_init(&b);
    TT_ASSERT(msgpack_pack_array(&b.pk, 1) == 0);
    pstr(&b.pk, bad[i]);
    TT_ASSERT_MSG(to_json(&b) == NULL, "invalid UTF-8 %zu converted", i);
    buf_free(&b);
  }
}

static void null_and_bools(void) {
  buf b;
  buf_init(&b);
  TT_ASSERT(msgpack_pack_array(&b.pk, 3) == 0);
  TT_ASSERT(msgpack_pack_nil(&b.pk) == 0);
  TT_ASSERT(msgpack_pack_true(&b.pk) == 0);
  TT_ASSERT(msgpack_pack_false(&b.pk) == 0);
  json_t *v = to_json(&b);
  TT_ASSERT(json_is_array(v) && json_array_size(v) == 3);
  TT_ASSERT(json_is_null(json_array_get(v, 0)));
  TT_ASSERT(json_is_true(json_array_get(v, 1)));
  TT_ASSERT(json_is_false(json_array_get(v, 2)));
  buf c;
  buf_init(&c);
  TT_EQ_INT(ts_json_pack(&c.pk, v), 0);
  static const uint8_t want[] = {0x93, 0xc0, 0xc3, 0xc2};
  TT_ASSERT(c.sb.size == 4 && memcmp(c.sb.data, want, 4) == 0);
  json_decref(v);
  buf_free(&b);
  buf_free(&c);
}

static void containers_bytes(void) {
  /* {"a": [1, {}], "b": []} packs exactly as msgpack.packb does, keys in their order. */
  json_t *v = parse("{\"a\": [1, {}], \"b\": []}");
  buf b;
  buf_init(&b);
  TT_EQ_INT(ts_json_pack(&b.pk, v), 0);
  static const uint8_t want[] = {0x82, 0xa1, 'a', 0x92, 0x01, 0x80, 0xa1, 'b', 0x90};
  TT_ASSERT(b.sb.size == sizeof(want) && memcmp(b.sb.data, want, sizeof(want)) == 0);
  json_t *back = to_json(&b);
  TT_ASSERT(json_equal(v, back));
  /* Map order survives the way back too. */
  void *it = json_object_iter(back);
  TT_EQ_STR(json_object_iter_key(it), "a");
  it = json_object_iter_next(back, it);
  TT_EQ_STR(json_object_iter_key(it), "b");
  json_decref(back);
  json_decref(v);
  buf_free(&b);
}

/* ---------------------------------------------------------------------------------------------
 * bin, ext, keys */

static void bin_base64url(void) {
  static const struct {
    const char *bytes;
    size_t n;
    const char *want;
  } bins[] = {
      {"", 0, ""},
      {"\xff", 1, "_w"},
      {"hi", 2, "aGk"},
      {"\xfb\xff\xfe", 3, "-__-"},
      {"\x00\x00\x00\x00", 4, "AAAAAA"},
      {"\xfb\xef\xbe\xfb\xef", 5, "------8"},
      {"any carnal pleasure.", 20, "YW55IGNhcm5hbCBwbGVhc3VyZS4"},
  };
  for (size_t i = 0; i < sizeof(bins) / sizeof(bins[0]); i++) {
    buf b;
    buf_init(&b);
    TT_ASSERT(msgpack_pack_bin_with_body(&b.pk, bins[i].bytes, bins[i].n) == 0);
    json_t *v = to_json(&b);
    TT_ASSERT_MSG(v != NULL && json_is_string(v), "bin %zu not converted", i);
    TT_EQ_STR(json_string_value(v), bins[i].want);
    json_decref(v);
    buf_free(&b);
  }
  /* Nested, and a long one: no padding, no '+' or '/'. */
  buf b;
  buf_init(&b);
  TT_ASSERT(msgpack_pack_map(&b.pk, 1) == 0);
  pstr(&b.pk, "raw");
  uint8_t all[256];
  for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
  TT_ASSERT(msgpack_pack_bin_with_body(&b.pk, all, sizeof(all)) == 0);
  json_t *v = to_json(&b);
  const char *s = json_string_value(json_object_get(v, "raw"));
  TT_ASSERT(s != NULL);
  TT_EQ_INT(strlen(s), 342); /* ceil(256 * 4 / 3) */
  TT_ASSERT(strpbrk(s, "+/=") == NULL);
  TT_ASSERT(strncmp(s, "AAECAwQFBgcICQoLDA0ODx", 22) == 0);
  TT_ASSERT(strcmp(s + 342 - 6, "_P3-_w") == 0);
  json_decref(v);
  buf_free(&b);
}

static void ext_is_null(void) {
  for (int where = 0; where < 4; where++) {
    buf b;
    buf_init(&b);
    msgpack_packer *pk = &b.pk;
    if (where == 1) TT_ASSERT(msgpack_pack_array(pk, 2) == 0 && msgpack_pack_int(pk, 1) == 0);
    if (where == 2) {
      TT_ASSERT(msgpack_pack_map(pk, 2) == 0);
      pstr(pk, "a");
      TT_ASSERT(msgpack_pack_int(pk, 1) == 0);
      pstr(pk, "b");
    }
    if (where == 3) {
      TT_ASSERT(msgpack_pack_array(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_map(pk, 1) == 0);
      pstr(pk, "deep");
      TT_ASSERT(msgpack_pack_array(pk, 1) == 0);
    }
    TT_ASSERT(msgpack_pack_ext_with_body(pk, "\x01\x02\x03\x04", 4, -1) == 0); /* a timestamp */
    TT_ASSERT_MSG(to_json(&b) == NULL, "ext (placement %d) converted", where);
    buf_free(&b);
  }
}

static void non_str_keys_are_null(void) {
  for (int which = 0; which < 6; which++) {
    buf b;
    buf_init(&b);
    msgpack_packer *pk = &b.pk;
    if (which == 5) { /* nested: {"a": {"ok": 1, 2: 3}} */
      TT_ASSERT(msgpack_pack_map(pk, 1) == 0);
      pstr(pk, "a");
      TT_ASSERT(msgpack_pack_map(pk, 2) == 0);
      pstr(pk, "ok");
      TT_ASSERT(msgpack_pack_int(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_int(pk, 2) == 0);
      TT_ASSERT(msgpack_pack_int(pk, 3) == 0);
    } else {
      TT_ASSERT(msgpack_pack_map(pk, 1) == 0);
      switch (which) {
      case 0: TT_ASSERT(msgpack_pack_int(pk, 1) == 0); break;
      case 1: TT_ASSERT(msgpack_pack_nil(pk) == 0); break;
      case 2: TT_ASSERT(msgpack_pack_bin_with_body(pk, "k", 1) == 0); break;
      case 3: TT_ASSERT(msgpack_pack_array(pk, 0) == 0); break;
      case 4: pstr(pk, "\xff\xfe"); break; /* a str key, but not UTF-8 */
      }
      pstr(pk, "v");
    }
    TT_ASSERT_MSG(to_json(&b) == NULL, "map with key kind %d converted", which);
    buf_free(&b);
  }
}

static const tt_case cases[] = {
    TT_CASE(roundtrip_nested),
    TT_CASE(empty_str_and_key),
    TT_CASE(integers),
    TT_CASE(integer_beyond_int64),
    TT_CASE(reals),
    TT_CASE(strings_utf8),
    TT_CASE(null_and_bools),
    TT_CASE(containers_bytes),
    TT_CASE(bin_base64url),
    TT_CASE(ext_is_null),
    TT_CASE(non_str_keys_are_null),
};

TT_MAIN(cases)
