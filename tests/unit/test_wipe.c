/* tests/unit/test_wipe.c: leaving no copy of a secret behind (proto/wipe.h; issue 9, item 6).
 *
 * Freed memory cannot be inspected without undefined behaviour, so these cases check what can
 * be seen before the free: the bytes a wipe leaves are zero, the wiping writer and grow keep
 * every byte in order across many growths, and shared JSON values are left alone. Whether the
 * daemon and libtessera call these at the right places is covered by their suites passing
 * under ASan (a wipe past the bytes in use, or of freed memory, is an error there). */
#include "tt.h"
#include "wipe.h"

#include <msgpack.h>
#include <stdint.h>
#include <string.h>

static bool all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return false;
  return true;
}

/* The wiping writer: same bytes as msgpack_sbuffer_write through many growths; the wipe
 * zeroes exactly the bytes in use. */
static void sbuffer_writer_grows_and_wipes(void) {
  msgpack_sbuffer a, b;
  msgpack_sbuffer_init(&a);
  msgpack_sbuffer_init(&b);
  msgpack_packer pa, pb;
  msgpack_packer_init(&pa, &a, msgpack_sbuffer_write);
  msgpack_packer_init(&pb, &b, ts_wipe_sbuffer_write);
  char token[700];
  for (size_t i = 0; i < sizeof(token); i++) token[i] = (char)('a' + i % 26);
  for (int i = 0; i < 200; i++) { /* ~140 KiB: several growths past the 8 KiB first block */
    TT_EQ_INT(msgpack_pack_str_with_body(&pa, token, sizeof(token) - (size_t)i), 0);
    TT_EQ_INT(msgpack_pack_str_with_body(&pb, token, sizeof(token) - (size_t)i), 0);
  }
  TT_EQ_INT(b.size, a.size);
  TT_ASSERT(memcmp(a.data, b.data, a.size) == 0);
  TT_ASSERT(b.alloc >= b.size);
  size_t used = b.size;
  ts_wipe_sbuffer(&b);
  TT_EQ_INT(b.size, 0);
  TT_ASSERT(all_zero(b.data, used));
  TT_EQ_INT(ts_wipe_sbuffer_write(&b, "sid", 3), 0); /* still usable after a wipe */
  TT_EQ_INT(b.size, 3);
  ts_wipe_sbuffer_destroy(&b);
  msgpack_sbuffer_destroy(&a);
}

static void grow_keeps_the_used_bytes(void) {
  uint8_t *buf = NULL;
  size_t cap = 0;
  TT_EQ_INT(ts_wipe_grow(&buf, &cap, 0, 16), 0);
  TT_EQ_INT(cap, 16);
  memcpy(buf, "0123456789abcdef", 16);
  TT_EQ_INT(ts_wipe_grow(&buf, &cap, 10, 64), 0);
  TT_EQ_INT(cap, 64);
  TT_ASSERT(memcmp(buf, "0123456789", 10) == 0);
  free(buf);
}

/* Strings only the reply holds are zeroed in place, at any depth; a value someone else also
 * holds (reference count above one) is left as it is. */
static void json_strings_are_wiped(void) {
  json_t *shared = json_string("still-needed");
  json_t *v = json_pack("{s:s, s:[s, {s:s}], s:i, s:O}", "access_token", "eyJ.secret.sig", "list",
                        "sid-AAAA", "refresh_token", "rt-BBBB", "n", 7, "kept", shared);
  TT_ASSERT(v != NULL);
  const char *at = json_string_value(json_object_get(v, "access_token"));
  json_t *list = json_object_get(v, "list");
  const char *sid = json_string_value(json_array_get(list, 0));
  const char *rt = json_string_value(json_object_get(json_array_get(list, 1), "refresh_token"));
  ts_wipe_json(v);
  TT_ASSERT(all_zero(at, strlen("eyJ.secret.sig")));
  TT_ASSERT(all_zero(sid, strlen("sid-AAAA")));
  TT_ASSERT(all_zero(rt, strlen("rt-BBBB")));
  TT_EQ_STR(json_string_value(shared), "still-needed");
  TT_EQ_INT(json_integer_value(json_object_get(v, "n")), 7);
  json_decref(v);
  TT_EQ_STR(json_string_value(shared), "still-needed");
  json_decref(shared);
  ts_wipe_json(NULL);
  /* A value the caller still holds a second reference to is not touched. */
  json_t *held = json_pack("{s:s}", "sid", "kept-sid");
  json_incref(held);
  ts_wipe_json(held);
  TT_EQ_STR(json_string_value(json_object_get(held, "sid")), "kept-sid");
  json_decref(held);
  json_decref(held);
}

static const tt_case cases[] = {
    TT_CASE(sbuffer_writer_grows_and_wipes),
    TT_CASE(grow_keeps_the_used_bytes),
    TT_CASE(json_strings_are_wiped),
};
TT_MAIN(cases)
