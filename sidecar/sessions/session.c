/* sidecar/sessions/session.c: a session record, backend-neutral (see session.h): liveness,
 * the sid/handle encodings, the record's byte form, and preparing a new session.
 *
 * A record's byte form is a fixed head (version, lengths, times, handle) followed by sub, ip,
 * ua and the data map, in the host's byte order. */
#include "session.h"

#include "b64url.h"
#include "error.h"

#include <msgpack.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REC_VERSION 1u

_Static_assert(TS_SID_CHARS == TS_B64URL_CHARS(TS_SID_BYTES), "sid characters");
_Static_assert(TS_HANDLE_CHARS == TS_B64URL_CHARS(TS_HANDLE_BYTES), "handle characters");

typedef struct rec_head {
  uint32_t version;
  uint16_t sub_len, ip_len, ua_len, data_len;
  int64_t created_at, expires_at, last_seen_at, idle_ttl;
  uint8_t handle[TS_HANDLE_BYTES];
} rec_head;

int64_t ts_session_idle_expires_at(const ts_session_rec *r) {
  int64_t idle = r->last_seen_at + r->idle_ttl;
  return idle < r->expires_at ? idle : r->expires_at;
}

bool ts_session_alive(const ts_session_rec *r, int64_t now) {
  return now < ts_session_idle_expires_at(r);
}

void ts_session_hash(const uint8_t sid[TS_SID_BYTES], uint8_t hash[TS_HASH_BYTES]) {
  crypto_generichash(hash, TS_HASH_BYTES, sid, TS_SID_BYTES, NULL, 0);
}

/* Strict, canonical base64url of the exact length (proto/b64url.h): one spelling per value. */
bool ts_session_sid_decode(const char *s, size_t len, uint8_t sid[TS_SID_BYTES]) {
  return ts_b64url_decode_exact(sid, TS_SID_BYTES, s, len);
}

bool ts_session_handle_decode(const char *s, size_t len, uint8_t handle[TS_HANDLE_BYTES]) {
  return ts_b64url_decode_exact(handle, TS_HANDLE_BYTES, s, len);
}

uint8_t *ts_session_encode(const ts_session_rec *r, size_t *len) {
  if (r->sub_len > UINT16_MAX || r->ip_len > UINT16_MAX || r->ua_len > UINT16_MAX ||
      r->data_len > UINT16_MAX)
    return NULL;
  rec_head h = {REC_VERSION, (uint16_t)r->sub_len, (uint16_t)r->ip_len, (uint16_t)r->ua_len,
                (uint16_t)r->data_len, r->created_at, r->expires_at, r->last_seen_at, r->idle_ttl,
                {0}};
  memcpy(h.handle, r->handle, TS_HANDLE_BYTES);
  size_t n = sizeof(h) + r->sub_len + r->ip_len + r->ua_len + r->data_len;
  uint8_t *buf = malloc(n);
  if (!buf) return NULL;
  uint8_t *p = buf;
  memcpy(p, &h, sizeof(h)), p += sizeof(h);
  if (r->sub_len) memcpy(p, r->sub, r->sub_len), p += r->sub_len;
  if (r->ip_len) memcpy(p, r->ip, r->ip_len), p += r->ip_len;
  if (r->ua_len) memcpy(p, r->ua, r->ua_len), p += r->ua_len;
  if (r->data_len) memcpy(p, r->data, r->data_len);
  *len = n;
  return buf;
}

bool ts_session_decode(const uint8_t *buf, size_t len, ts_session_rec *r) {
  rec_head h;
  if (len < sizeof(h)) return false;
  memcpy(&h, buf, sizeof(h));
  if (h.version != REC_VERSION ||
      len != sizeof(h) + (size_t)h.sub_len + h.ip_len + h.ua_len + h.data_len)
    return false;
  const uint8_t *p = buf + sizeof(h);
  r->created_at = h.created_at;
  r->expires_at = h.expires_at;
  r->last_seen_at = h.last_seen_at;
  r->idle_ttl = h.idle_ttl;
  memcpy(r->handle, h.handle, TS_HANDLE_BYTES);
  r->sub = (const char *)p, r->sub_len = h.sub_len, p += h.sub_len;
  r->ip = (const char *)p, r->ip_len = h.ip_len, p += h.ip_len;
  r->ua = (const char *)p, r->ua_len = h.ua_len, p += h.ua_len;
  r->data = p, r->data_len = h.data_len;
  return true;
}

/* A new handle: milliseconds since the epoch (6 bytes, big-endian), then 10 random bytes. */
static void new_handle(uint8_t handle[TS_HANDLE_BYTES]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  for (int i = 0; i < 6; i++) handle[i] = (uint8_t)(ms >> (40 - 8 * i));
  randombytes_buf(handle + 6, TS_HANDLE_BYTES - 6);
}

int ts_session_prepare(ts_session_new *n, const char *sub, size_t sub_len, int64_t now,
                       int64_t ttl, int64_t idle_ttl, const msgpack_object *data,
                       const ts_param_value *ip, const ts_param_value *ua) {
  memset(n, 0, sizeof(*n));
  msgpack_sbuffer data_buf;
  msgpack_sbuffer_init(&data_buf);
  if (data) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, &data_buf, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *data);
  }
  ts_session_rec rec = {
      .created_at = now, .expires_at = now + ttl, .last_seen_at = now, .idle_ttl = idle_ttl,
      .sub = sub, .sub_len = sub_len,
      .ip = ip && ip->present ? ip->str : "", .ip_len = ip && ip->present ? ip->len : 0,
      .ua = ua && ua->present ? ua->str : "", .ua_len = ua && ua->present ? ua->len : 0,
      .data = (const uint8_t *)data_buf.data, .data_len = data_buf.size};
  randombytes_buf(n->sid, TS_SID_BYTES);
  new_handle(rec.handle);
  memcpy(n->handle, rec.handle, TS_HANDLE_BYTES);
  ts_session_hash(n->sid, n->hash);
  n->expires_at = rec.expires_at;
  n->idle_expires_at = ts_session_idle_expires_at(&rec);
  n->rec = ts_session_encode(&rec, &n->rec_len);
  msgpack_sbuffer_destroy(&data_buf);
  return n->rec ? 0 : TS_ENOMEM;
}

void ts_session_new_wipe(ts_session_new *n) {
  sodium_memzero(n->sid, sizeof(n->sid));
  free(n->rec);
  n->rec = NULL;
}

