/* sidecar/store/lmdb/session_store.c: sessions as the store holds them (see session_store.h).
 *
 * A record is a fixed head (version, lengths, times, handle) followed by sub, ip, ua and the
 * data map, in the host's byte order. Every change keeps the four tables (sessions, handles,
 * by_sub, expiry) consistent inside the caller's transaction; deletes tolerate an index entry
 * already gone, so the sweeper and a revoke may race without failing either. */
#include "session_store.h"

#include "error.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

size_t ts_expiry_key(uint8_t out[TS_EXPIRY_KEY_MAX], int64_t at, char kind, const void *key,
                     size_t klen) {
  uint64_t t = at < 0 ? 0 : (uint64_t)at;
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(t >> (56 - 8 * i));
  out[8] = (uint8_t)kind;
  if (klen > TS_EXPIRY_KEY_MAX - 9) klen = TS_EXPIRY_KEY_MAX - 9;
  memcpy(out + 9, key, klen);
  return 9 + klen;
}

int64_t ts_expiry_key_time(const uint8_t *k) {
  uint64_t t = 0;
  for (int i = 0; i < 8; i++) t = (t << 8) | k[i];
  return (int64_t)t;
}

int ts_session_get(ts_txn *t, const uint8_t hash[TS_HASH_BYTES], ts_session_rec *r) {
  const void *v;
  size_t vl;
  int rc = ts_store_get(t, TS_T_SESSIONS, hash, TS_HASH_BYTES, &v, &vl);
  if (rc) return rc;
  return ts_session_decode(v, vl, r) ? 0 : TS_EIO;
}

int ts_session_put(ts_txn *t, const uint8_t hash[TS_HASH_BYTES], const ts_session_rec *r) {
  size_t len;
  uint8_t *buf = ts_session_encode(r, &len);
  if (!buf) return TS_ENOMEM;
  uint8_t ek[TS_EXPIRY_KEY_MAX];
  size_t ekl = ts_expiry_key(ek, ts_session_idle_expires_at(r), 's', hash, TS_HASH_BYTES);
  int rc = ts_store_put(t, TS_T_SESSIONS, hash, TS_HASH_BYTES, buf, len);
  if (!rc) rc = ts_store_put(t, TS_T_HANDLES, r->handle, TS_HANDLE_BYTES, hash, TS_HASH_BYTES);
  if (!rc) rc = ts_store_put(t, TS_T_BY_SUB, r->sub, r->sub_len, r->handle, TS_HANDLE_BYTES);
  if (!rc) rc = ts_store_put(t, TS_T_EXPIRY, ek, ekl, "", 0);
  free(buf);
  return rc;
}

static int del_quiet(ts_txn *t, enum ts_table tb, const void *k, size_t kl, const void *v,
                     size_t vl) {
  int rc = ts_store_del(t, tb, k, kl, v, vl);
  return rc == TS_ENOTFOUND ? 0 : rc;
}

int ts_session_delete(ts_txn *t, const uint8_t hash[TS_HASH_BYTES], const ts_session_rec *r) {
  uint8_t ek[TS_EXPIRY_KEY_MAX];
  size_t ekl = ts_expiry_key(ek, ts_session_idle_expires_at(r), 's', hash, TS_HASH_BYTES);
  /* Copy what points into the record before deleting it. */
  uint8_t handle[TS_HANDLE_BYTES];
  char sub[256];
  size_t sub_len = r->sub_len < sizeof(sub) ? r->sub_len : sizeof(sub);
  memcpy(handle, r->handle, TS_HANDLE_BYTES);
  memcpy(sub, r->sub, sub_len);
  int rc = del_quiet(t, TS_T_EXPIRY, ek, ekl, NULL, 0);
  if (!rc) rc = del_quiet(t, TS_T_HANDLES, handle, TS_HANDLE_BYTES, NULL, 0);
  if (!rc) rc = del_quiet(t, TS_T_BY_SUB, sub, sub_len, handle, TS_HANDLE_BYTES);
  if (!rc) rc = del_quiet(t, TS_T_SESSIONS, hash, TS_HASH_BYTES, NULL, 0);
  return rc;
}

int ts_session_by_handle(ts_txn *t, const uint8_t handle[TS_HANDLE_BYTES],
                         uint8_t hash[TS_HASH_BYTES]) {
  const void *v;
  size_t vl;
  int rc = ts_store_get(t, TS_T_HANDLES, handle, TS_HANDLE_BYTES, &v, &vl);
  if (rc) return rc;
  if (vl != TS_HASH_BYTES) return TS_EIO;
  memcpy(hash, v, TS_HASH_BYTES);
  return 0;
}

int ts_session_touch(ts_txn *t, const uint8_t hash[TS_HASH_BYTES], int64_t at) {
  ts_session_rec r;
  int rc = ts_session_get(t, hash, &r);
  if (rc) return rc;
  if (at <= r.last_seen_at || !ts_session_alive(&r, at)) return 0;
  uint8_t ek[TS_EXPIRY_KEY_MAX];
  size_t ekl = ts_expiry_key(ek, ts_session_idle_expires_at(&r), 's', hash, TS_HASH_BYTES);
  rc = del_quiet(t, TS_T_EXPIRY, ek, ekl, NULL, 0);
  if (rc) return rc;
  /* r points into the store; put copies it before the old value can change. */
  size_t len;
  r.last_seen_at = at;
  uint8_t *buf = ts_session_encode(&r, &len);
  if (!buf) return TS_ENOMEM;
  ekl = ts_expiry_key(ek, ts_session_idle_expires_at(&r), 's', hash, TS_HASH_BYTES);
  rc = ts_store_put(t, TS_T_SESSIONS, hash, TS_HASH_BYTES, buf, len);
  if (!rc) rc = ts_store_put(t, TS_T_EXPIRY, ek, ekl, "", 0);
  free(buf);
  return rc;
}

int ts_session_revoke_sub(ts_txn *t, const char *sub, size_t sub_len, const uint8_t *except,
                          int64_t now,
                          void (*on_deleted)(void *ctx, const uint8_t hash[TS_HASH_BYTES]),
                          void *ctx) {
  /* Handles are collected a bounded number at a time (the cursor must not walk a list we
   * delete from), in rounds until none is left: every round removes each by_sub entry it
   * collected, so the rounds end, and a sub with more sessions than one round is emptied too. */
  enum { MAX_AT_ONCE = 4096 };
  uint8_t(*handles)[TS_HANDLE_BYTES] = malloc(MAX_AT_ONCE * TS_HANDLE_BYTES);
  if (!handles) return TS_ENOMEM;
  int alive = 0, rc;
  size_t n;
  do {
    n = 0;
    ts_cursor *c;
    rc = ts_cursor_open(t, TS_T_BY_SUB, &c);
    if (rc) goto out;
    const void *v;
    size_t vl;
    for (rc = ts_cursor_dup_first(c, sub, sub_len, &v, &vl); rc == 0 && n < MAX_AT_ONCE;
         rc = ts_cursor_dup_next(c, &v, &vl)) {
      if (vl != TS_HANDLE_BYTES) continue;
      if (except && memcmp(v, except, TS_HANDLE_BYTES) == 0) continue;
      memcpy(handles[n++], v, TS_HANDLE_BYTES);
    }
    ts_cursor_close(c);
    if (rc != TS_ENOTFOUND && rc != 0) goto out;
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
      uint8_t hash[TS_HASH_BYTES];
      ts_session_rec rec;
      rc = ts_session_by_handle(t, handles[i], hash);
      if (rc == 0) rc = ts_session_get(t, hash, &rec);
      if (rc == 0) {
        if (ts_session_alive(&rec, now)) alive++;
        rc = ts_session_delete(t, hash, &rec);
        if (rc == 0 && on_deleted) on_deleted(ctx, hash);
      }
      /* Gone either way, also when the entry had outlived its session. */
      if (rc == 0 || rc == TS_ENOTFOUND)
        rc = del_quiet(t, TS_T_BY_SUB, sub, sub_len, handles[i], TS_HANDLE_BYTES);
    }
  } while (rc == 0 && n == MAX_AT_ONCE);
  if (rc == 0) rc = alive;
out:
  free(handles);
  return rc;
}
