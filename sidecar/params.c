/* sidecar/params.c: checking a request's params map against a method's spec (see params.h).
 *
 * Dispatch runs ts_params_parse with the row's spec before any handler: unknown and duplicate
 * keys, types, required keys, lengths, UTF-8 (without NUL: strings become JSON claims and
 * records) and the msgpack size of nested maps. Error messages name keys, never echo values:
 * an unknown key is shown printable-ASCII only and cut at 64 bytes, so a reply stays valid
 * UTF-8. Nothing here allocates; values point into the request's msgpack object. */
#include "params.h"

#include "error.h"

#include <stdio.h>
#include <string.h>

static bool utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t len;
    uint32_t cp;
    if (c == 0) return false; /* NUL: refused (see below) */
    if (c < 0x80) { i++; continue; }
    if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (cp == 0) return false; /* never valid here: a NUL cannot round-trip through JSON claims */
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += len;
  }
  return true;
}

static size_t header_size(uint64_t n, bool is_str) {
  if (is_str) return n < 32 ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5;
  return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

size_t ts_mp_packed_size(const msgpack_object *o, size_t limit) {
  size_t total = 0;
  switch (o->type) {
  case MSGPACK_OBJECT_NIL:
  case MSGPACK_OBJECT_BOOLEAN: return 1;
  case MSGPACK_OBJECT_POSITIVE_INTEGER: {
    uint64_t u = o->via.u64;
    return u < 128 ? 1 : u < 256 ? 2 : u < 65536 ? 3 : u <= UINT32_MAX ? 5 : 9;
  }
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: {
    int64_t v = o->via.i64;
    return v >= -32 ? 1 : v >= INT8_MIN ? 2 : v >= INT16_MIN ? 3 : v >= INT32_MIN ? 5 : 9;
  }
  case MSGPACK_OBJECT_FLOAT32: return 5;
  case MSGPACK_OBJECT_FLOAT64: return 9;
  case MSGPACK_OBJECT_STR: return header_size(o->via.str.size, true) + o->via.str.size;
  case MSGPACK_OBJECT_BIN:
    return (o->via.bin.size < 256 ? 2 : o->via.bin.size < 65536 ? 3 : 5) + o->via.bin.size;
  case MSGPACK_OBJECT_ARRAY:
    total = header_size(o->via.array.size, false);
    for (uint32_t i = 0; i < o->via.array.size && total <= limit; i++)
      total += ts_mp_packed_size(&o->via.array.ptr[i], limit);
    break;
  case MSGPACK_OBJECT_MAP:
    total = header_size(o->via.map.size, false);
    for (uint32_t i = 0; i < o->via.map.size && total <= limit; i++) {
      total += ts_mp_packed_size(&o->via.map.ptr[i].key, limit);
      total += ts_mp_packed_size(&o->via.map.ptr[i].val, limit);
    }
    break;
  default: return limit + 1;
  }
  return total > limit ? limit + 1 : total;
}

static bool map_keys_are_str(const msgpack_object *o) {
  for (uint32_t i = 0; i < o->via.map.size; i++)
    if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR) return false;
  return true;
}

/* Every str in o (keys included) is valid UTF-8 without NUL: maps become JSON claims and
 * records, and a NUL would not survive the way back. */
static bool strings_clean(const msgpack_object *o) {
  switch (o->type) {
  case MSGPACK_OBJECT_STR: return utf8_valid((const unsigned char *)o->via.str.ptr, o->via.str.size);
  case MSGPACK_OBJECT_ARRAY:
    for (uint32_t i = 0; i < o->via.array.size; i++)
      if (!strings_clean(&o->via.array.ptr[i])) return false;
    return true;
  case MSGPACK_OBJECT_MAP:
    for (uint32_t i = 0; i < o->via.map.size; i++)
      if (!strings_clean(&o->via.map.ptr[i].key) || !strings_clean(&o->via.map.ptr[i].val))
        return false;
    return true;
  default: return true;
  }
}

bool ts_utf8_valid(const char *s, size_t n) { return utf8_valid((const unsigned char *)s, n); }

bool ts_param_str_clean(const msgpack_object *o) {
  return o->type == MSGPACK_OBJECT_STR && strings_clean(o);
}

static int check_value(const ts_param *p, const msgpack_object *o, ts_param_value *v, char *why,
                       size_t cap) {
  v->present = true;
  v->obj = o;
  switch (p->type) {
  case TS_P_STR: {
    uint32_t min = p->min, max = p->max ? p->max : 8192;
    if (!p->min && !p->max) min = 1;
    if (o->type != MSGPACK_OBJECT_STR) break;
    if (o->via.str.size < min || o->via.str.size > max) {
      snprintf(why, cap, "%s must be %u..%u bytes", p->name, min, max);
      return TS_EBAD_REQUEST;
    }
    if (!utf8_valid((const unsigned char *)o->via.str.ptr, o->via.str.size)) {
      snprintf(why, cap, "%s must be valid UTF-8", p->name);
      return TS_EBAD_REQUEST;
    }
    v->str = o->via.str.ptr;
    v->len = o->via.str.size;
    return 0;
  }
  case TS_P_DURATION:
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 >= 1 && o->via.u64 <= INT64_MAX) {
      v->i64 = (int64_t)o->via.u64;
      return 0;
    }
    snprintf(why, cap, "%s must be a positive integer number of seconds", p->name);
    return TS_EBAD_REQUEST;
  case TS_P_INT:
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
      v->i64 = (int64_t)o->via.u64;
      return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
      v->i64 = o->via.i64;
      return 0;
    }
    break;
  case TS_P_BOOL:
    if (o->type != MSGPACK_OBJECT_BOOLEAN) break;
    v->b = o->via.boolean;
    return 0;
  case TS_P_MAP:
    if (o->type != MSGPACK_OBJECT_MAP || !map_keys_are_str(o)) break;
    if (ts_mp_packed_size(o, p->max) > p->max) {
      snprintf(why, cap, "%s must be at most %u bytes as msgpack", p->name, p->max);
      return TS_EBAD_REQUEST;
    }
    if (!strings_clean(o)) {
      snprintf(why, cap, "%s must hold only valid UTF-8 strings without NUL", p->name);
      return TS_EBAD_REQUEST;
    }
    return 0;
  case TS_P_ANY: return 0;
  case TS_P_CREDENTIAL:
    if (o->type != MSGPACK_OBJECT_STR) break;
    v->str = o->via.str.size ? o->via.str.ptr : ""; /* msgpack-c: NULL for an empty str */
    v->len = o->via.str.size;
    return 0;
  }
  static const char *const names[] = {
      [TS_P_STR] = "a string",        [TS_P_DURATION] = "a positive integer",
      [TS_P_INT] = "an integer",      [TS_P_BOOL] = "a boolean",
      [TS_P_MAP] = "a map with string keys", [TS_P_ANY] = "a value",
      [TS_P_CREDENTIAL] = "a string"};
  snprintf(why, cap, "%s must be %s", p->name, names[p->type]);
  return TS_EBAD_REQUEST;
}

int ts_params_parse(const msgpack_object *params, const ts_param *spec, size_t n,
                    ts_param_value *vals, char *why, size_t why_cap) {
  if (n) memset(vals, 0, n * sizeof(*vals));
  uint32_t count = params ? params->via.map.size : 0;
  for (uint32_t i = 0; i < count; i++) {
    const msgpack_object *k = &params->via.map.ptr[i].key;
    size_t j = 0;
    while (j < n && !(strlen(spec[j].name) == k->via.str.size &&
                      memcmp(spec[j].name, k->via.str.ptr, k->via.str.size) == 0))
      j++;
    if (j == n) {
      char name[65];
      size_t shown = k->via.str.size < 64 ? k->via.str.size : 64;
      for (size_t c = 0; c < shown; c++) {
        char ch = k->via.str.ptr[c];
        name[c] = ch >= 0x20 && ch < 0x7f ? ch : '?'; /* the message must stay valid UTF-8 */
      }
      name[shown] = 0;
      snprintf(why, why_cap, "unknown key: %s", name);
      return TS_EBAD_REQUEST;
    }
    if (vals[j].present) {
      snprintf(why, why_cap, "duplicate key: %s", spec[j].name);
      return TS_EBAD_REQUEST;
    }
    int rc = check_value(&spec[j], &params->via.map.ptr[i].val, &vals[j], why, why_cap);
    if (rc) return rc;
  }
  for (size_t j = 0; j < n; j++) {
    if (spec[j].required && !vals[j].present) {
      snprintf(why, why_cap, "missing %s", spec[j].name);
      return TS_EBAD_REQUEST;
    }
  }
  return 0;
}

bool ts_param_copy(const ts_param_value *v, char *out, size_t cap) {
  if (!v->present || v->len >= cap) return false;
  memcpy(out, v->str, v->len);
  out[v->len] = 0;
  return true;
}
