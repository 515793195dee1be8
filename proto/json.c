/* proto/json.c: msgpack <-> JSON (jansson), see json.h for the mapping.
 *
 * msgpack -> JSON recurses over an object unpacked from a message the pre-scan (scan.h)
 * accepted, so its depth is bounded by the scan's limit (the daemon's --max-depth, the
 * client's TS_CLIENT_MAX_DEPTH) and its allocations by the bytes already read. A value JSON
 * cannot hold (ext, a non-str map key, an integer beyond int64, a str that is not UTF-8, which
 * jansson refuses) fails the whole conversion with NULL: the daemon answers bad_request, the
 * client TESSERA_EPROTO, never half a value. msgpack-c leaves ptr NULL for an empty str or
 * map key; every use below substitutes "". JSON -> msgpack packs values jansson built (it
 * bounds their depth itself) and fails only when the packer cannot grow: TS_ENOMEM. */
#include "json.h"

#include "error.h"
#include "rpc.h"

#include <sodium.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static json_t *bin_to_json(const msgpack_object_bin *b) {
  size_t n = sodium_base64_ENCODED_LEN(b->size, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  char *s = malloc(n);
  if (!s) return NULL;
  sodium_bin2base64(s, n, (const unsigned char *)b->ptr, b->size,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  json_t *j = json_string(s);
  free(s);
  return j;
}

static json_t *map_to_json(const msgpack_object_map *m) {
  json_t *obj = json_object();
  if (!obj) return NULL;
  for (uint32_t i = 0; i < m->size; i++) {
    const msgpack_object *k = &m->ptr[i].key;
    if (k->type != MSGPACK_OBJECT_STR) goto fail;
    json_t *v = ts_mp_to_json(&m->ptr[i].val);
    /* msgpack-c leaves ptr NULL for an empty str, and jansson refuses a NULL key. */
    const char *key = k->via.str.size ? k->via.str.ptr : "";
    if (!v || json_object_setn_new(obj, key, k->via.str.size, v) != 0) goto fail;
  }
  return obj;
fail:
  json_decref(obj);
  return NULL;
}

json_t *ts_mp_to_json(const msgpack_object *o) {
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: return json_null();
  case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
  case MSGPACK_OBJECT_POSITIVE_INTEGER:
    if (o->via.u64 > (uint64_t)LLONG_MAX) return NULL;
    return json_integer((json_int_t)o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
  case MSGPACK_OBJECT_STR: /* empty str: ptr is NULL, which json_stringn refuses */
    return json_stringn(o->via.str.size ? o->via.str.ptr : "", o->via.str.size);
  case MSGPACK_OBJECT_BIN: return bin_to_json(&o->via.bin);
  case MSGPACK_OBJECT_ARRAY: {
    json_t *arr = json_array();
    if (!arr) return NULL;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
      if (json_array_append_new(arr, ts_mp_to_json(&o->via.array.ptr[i])) != 0) {
        json_decref(arr);
        return NULL;
      }
    }
    return arr;
  }
  case MSGPACK_OBJECT_MAP: return map_to_json(&o->via.map);
  default: return NULL;
  }
}

int ts_json_pack(msgpack_packer *pk, const json_t *v) {
  int rc = 0;
  switch (json_typeof(v)) {
  case JSON_NULL: rc = msgpack_pack_nil(pk); break;
  case JSON_TRUE: rc = msgpack_pack_true(pk); break;
  case JSON_FALSE: rc = msgpack_pack_false(pk); break;
  case JSON_INTEGER: rc = msgpack_pack_int64(pk, json_integer_value(v)); break;
  case JSON_REAL: rc = msgpack_pack_double(pk, json_real_value(v)); break;
  case JSON_STRING: {
    size_t n = json_string_length(v);
    rc = msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, json_string_value(v), n);
    break;
  }
  case JSON_ARRAY: {
    size_t n = json_array_size(v);
    if (msgpack_pack_array(pk, n)) return TS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
      int e = ts_json_pack(pk, json_array_get(v, i));
      if (e) return e;
    }
    break;
  }
  case JSON_OBJECT: {
    const char *key;
    size_t klen;
    json_t *val;
    if (msgpack_pack_map(pk, json_object_size(v))) return TS_ENOMEM;
    json_object_keylen_foreach((json_t *)v, key, klen, val) {
      if (msgpack_pack_str(pk, klen) || msgpack_pack_str_body(pk, key, klen)) return TS_ENOMEM;
      int e = ts_json_pack(pk, val);
      if (e) return e;
    }
    break;
  }
  }
  return rc ? TS_ENOMEM : 0;
}
