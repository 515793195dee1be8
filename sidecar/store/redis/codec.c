/* sidecar/store/redis/codec.c: key names and the session record's form in Redis (see
 * redis.h and the layout at the top of tessera.lua).
 *
 * The record is a msgpack array [1, created_at, expires_at, last_seen_at, idle_ttl, handle,
 * sub, ip, ua, data] (strings as str, integers as ints): portable between hosts, and what
 * tessera.lua reads and rewrites with cmsgpack. validate decodes it here from one GET.
 * Subs are hex in key names: any byte (a '}' too) keeps the hash tag intact. */
#include "redis.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

void rb_hex(char *out, const uint8_t *bin, size_t n) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[bin[i] >> 4];
    out[2 * i + 1] = d[bin[i] & 15];
  }
  out[2 * n] = 0;
}

static size_t key_hex(char *out, const char *pre, const void *bin, size_t n, const char *post) {
  size_t pl = strlen(pre);
  if (n > TS_SUB_MAX) n = TS_SUB_MAX;
  memcpy(out, pre, pl);
  rb_hex(out + pl, bin, n);
  return pl + 2 * n + (size_t)sprintf(out + pl + 2 * n, "%s", post);
}

size_t rb_key_session(char *out, const uint8_t hash[TS_HASH_BYTES]) {
  return key_hex(out, "t:{s:", hash, TS_HASH_BYTES, "}");
}

size_t rb_key_handle(char *out, const uint8_t handle[TS_HANDLE_BYTES]) {
  return key_hex(out, "t:{h:", handle, TS_HANDLE_BYTES, "}");
}

size_t rb_key_user(char *out, const char *sub, size_t sub_len, const char *what) {
  char post[8];
  snprintf(post, sizeof(post), "}:%s", what);
  return key_hex(out, "t:{u:", sub, sub_len, post);
}

size_t rb_key_cutoff(char *out, const char *sub, size_t sub_len) {
  return key_hex(out, "t:{c:", sub, sub_len, "}");
}

size_t rb_key_family(char *out, const char *fam) {
  return (size_t)snprintf(out, RB_KEY_MAX, "t:{f:%.64s}", fam);
}

size_t rb_key_listed(char *out, char kind, const char *id, size_t id_len) {
  if (id_len > 256) id_len = 256;
  return (size_t)snprintf(out, RB_KEY_MAX, "t:{r:%c:%.*s}", kind, (int)id_len, id);
}

static void pack_str(msgpack_packer *pk, const void *s, size_t n) {
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

uint8_t *rb_session_pack(const ts_session_rec *r, size_t *len) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 10);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int64(&pk, r->created_at);
  msgpack_pack_int64(&pk, r->expires_at);
  msgpack_pack_int64(&pk, r->last_seen_at);
  msgpack_pack_int64(&pk, r->idle_ttl);
  pack_str(&pk, r->handle, TS_HANDLE_BYTES);
  pack_str(&pk, r->sub, r->sub_len);
  pack_str(&pk, r->ip, r->ip_len);
  pack_str(&pk, r->ua, r->ua_len);
  pack_str(&pk, r->data, r->data_len);
  *len = sb.size;
  return (uint8_t *)sb.data; /* NULL when the packer could not allocate */
}

/* Reads a msgpack integer (any width) at *p; false if none. */
static bool rd_int(const uint8_t **p, const uint8_t *end, int64_t *v) {
  if (*p >= end) return false;
  uint8_t t = **p;
  (*p)++;
  if (t <= 0x7f) return *v = t, true;
  if (t >= 0xe0) return *v = (int8_t)t, true;
  size_t n = t == 0xcc || t == 0xd0 ? 1 : t == 0xcd || t == 0xd1 ? 2
           : t == 0xce || t == 0xd2 ? 4 : t == 0xcf || t == 0xd3 || t == 0xcb ? 8 : 0;
  if (!n || (size_t)(end - *p) < n) return false;
  uint64_t u = 0;
  for (size_t i = 0; i < n; i++) u = (u << 8) | (*p)[i];
  *p += n;
  if (t == 0xcb) { /* a double (Lua numbers): integral values only */
    double d;
    memcpy(&d, &u, 8);
    *v = (int64_t)d;
    return (double)*v == d;
  }
  bool sign = t >= 0xd0;
  if (sign && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~(uint64_t)0 << (8 * n);
  *v = (int64_t)u;
  return true;
}

/* Reads a msgpack str or bin at *p. */
static bool rd_str(const uint8_t **p, const uint8_t *end, const uint8_t **s, size_t *n) {
  if (*p >= end) return false;
  uint8_t t = **p;
  (*p)++;
  size_t lb = 0;
  if ((t & 0xe0) == 0xa0) *n = t & 0x1f;
  else if (t == 0xd9 || t == 0xc4) lb = 1;
  else if (t == 0xda || t == 0xc5) lb = 2;
  else if (t == 0xdb || t == 0xc6) lb = 4;
  else return false;
  if (lb) {
    if ((size_t)(end - *p) < lb) return false;
    *n = 0;
    for (size_t i = 0; i < lb; i++) *n = (*n << 8) | (*p)[i];
    *p += lb;
  }
  if ((size_t)(end - *p) < *n) return false;
  *s = *p;
  *p += *n;
  return true;
}

bool rb_session_unpack(const char *buf, size_t len, ts_session_rec *r) {
  const uint8_t *p = (const uint8_t *)buf, *end = p + len, *s;
  size_t n;
  int64_t version;
  if (len < 1 || *p++ != 0x9a) return false; /* fixarray of 10 */
  if (!rd_int(&p, end, &version) || version != 1 || !rd_int(&p, end, &r->created_at) ||
      !rd_int(&p, end, &r->expires_at) || !rd_int(&p, end, &r->last_seen_at) ||
      !rd_int(&p, end, &r->idle_ttl))
    return false;
  if (!rd_str(&p, end, &s, &n) || n != TS_HANDLE_BYTES) return false;
  memcpy(r->handle, s, TS_HANDLE_BYTES);
  if (!rd_str(&p, end, &s, &n) || n > TS_SUB_MAX) return false;
  r->sub = (const char *)s, r->sub_len = n;
  if (!rd_str(&p, end, &s, &n)) return false;
  r->ip = (const char *)s, r->ip_len = n;
  if (!rd_str(&p, end, &s, &n)) return false;
  r->ua = (const char *)s, r->ua_len = n;
  if (!rd_str(&p, end, &s, &n)) return false;
  r->data = s, r->data_len = n;
  return p == end;
}
