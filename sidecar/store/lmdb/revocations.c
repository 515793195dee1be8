/* sidecar/store/lmdb/revocations.c: the revocation list and user cut-offs in the store (see
 * revocations.h).
 *
 * Keys are kind | id and sub, values big-endian times; each entry also has an expiry index
 * key so the sweeper drops it once no token it names can still verify. A lookup of an entry
 * whose time has passed answers "not found" even before the sweeper ran. Writer or sweeper
 * thread for writes, any read transaction for lookups. */
#include "revocations.h"

#include "error.h"
#include "session_store.h"

#include <string.h>

static void be64_put(uint8_t out[8], int64_t v) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(u >> (56 - 8 * i));
}

static int64_t be64_get(const uint8_t *p) {
  uint64_t u = 0;
  for (int i = 0; i < 8; i++) u = (u << 8) | p[i];
  return (int64_t)u;
}

static size_t revoked_key(uint8_t out[1 + TS_REVOKED_ID_MAX], char kind, const char *id,
                          size_t idlen) {
  if (idlen > TS_REVOKED_ID_MAX) idlen = TS_REVOKED_ID_MAX;
  out[0] = (uint8_t)kind;
  memcpy(out + 1, id, idlen);
  return 1 + idlen;
}

/* Stores key -> until in table tb, moving its expiry entry if until grew. The entry is in
 * force through the second `until` (a token is accepted through exp + leeway), so its expiry
 * entry is due at until + 1: due at `until`, the sweeper would forget it while the token it
 * denies is still accepted. */
static int put_until(ts_txn *t, enum ts_table tb, char ekind, const void *key, size_t klen,
                     int64_t until, int64_t value) {
  const void *old;
  size_t ol;
  uint8_t ek[TS_EXPIRY_KEY_MAX];
  int rc = ts_store_get(t, tb, key, klen, &old, &ol);
  if (rc == 0 && ol == 16) {
    int64_t old_until = be64_get((const uint8_t *)old + 8);
    int64_t old_value = be64_get(old);
    if (old_until >= until && old_value >= value) return 0;
    if (old_until > until) until = old_until;
    if (old_value > value) value = old_value;
    size_t ekl = ts_expiry_key(ek, old_until + 1, ekind, key, klen);
    rc = ts_store_del(t, TS_T_EXPIRY, ek, ekl, NULL, 0);
    if (rc && rc != TS_ENOTFOUND) return rc;
  } else if (rc && rc != TS_ENOTFOUND) {
    return rc;
  }
  uint8_t v[16];
  be64_put(v, value);
  be64_put(v + 8, until);
  rc = ts_store_put_urgent(t, tb, key, klen, v, sizeof(v)); /* revocations use the reserve */
  if (rc) return rc;
  size_t ekl = ts_expiry_key(ek, until + 1, ekind, key, klen);
  return ts_store_put_urgent(t, TS_T_EXPIRY, ek, ekl, "", 0);
}

/* Reads a [value, until] pair in force at now. */
static int get_until(ts_txn *t, enum ts_table tb, const void *key, size_t klen, int64_t now,
                     int64_t *value) {
  const void *v;
  size_t vl;
  int rc = ts_store_get(t, tb, key, klen, &v, &vl);
  if (rc) return rc;
  if (vl != 16) return TS_EIO;
  if (be64_get((const uint8_t *)v + 8) < now) return TS_ENOTFOUND; /* past, not swept yet */
  if (value) *value = be64_get(v);
  return 0;
}

int ts_revoked_put(ts_txn *t, char kind, const char *id, size_t idlen, int64_t until) {
  uint8_t k[1 + TS_REVOKED_ID_MAX];
  size_t kl = revoked_key(k, kind, id, idlen);
  return put_until(t, TS_T_REVOKED, 'r', k, kl, until, 0);
}

int ts_revoked_get(ts_txn *t, char kind, const char *id, size_t idlen, int64_t now) {
  uint8_t k[1 + TS_REVOKED_ID_MAX];
  size_t kl = revoked_key(k, kind, id, idlen);
  return get_until(t, TS_T_REVOKED, k, kl, now, NULL);
}

int ts_cutoff_put(ts_txn *t, const char *sub, size_t sublen, int64_t before, int64_t until) {
  if (sublen > TS_EXPIRY_KEY_MAX - 9) return TS_EINTERNAL; /* subs are at most 256 bytes */
  return put_until(t, TS_T_CUTOFFS, 'c', sub, sublen, until, before);
}

int ts_cutoff_get(ts_txn *t, const char *sub, size_t sublen, int64_t now, int64_t *before) {
  return get_until(t, TS_T_CUTOFFS, sub, sublen, now, before);
}

int ts_revoked_sweep(ts_txn *t, char kind, const uint8_t *key, size_t klen, int64_t now) {
  enum ts_table tb = kind == 'r' ? TS_T_REVOKED : TS_T_CUTOFFS;
  const void *v;
  size_t vl;
  int rc = ts_store_get(t, tb, key, klen, &v, &vl);
  if (rc == TS_ENOTFOUND) return 0;
  if (rc) return rc;
  if (vl == 16 && be64_get((const uint8_t *)v + 8) >= now) return 0; /* still in force */
  rc = ts_store_del(t, tb, key, klen, NULL, 0);
  return rc ? rc : 1;
}
