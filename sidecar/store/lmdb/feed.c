/* sidecar/store/lmdb/feed.c: the revocation feed table and its cursors (see feed.h). */
#include "feed.h"

#include "error.h"
#include "session_store.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define VALUE_HEAD 17 /* kind | be64 until | be64 before */

static void be64_put(uint8_t out[8], uint64_t v) {
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t be64_get(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

static int meta_u64(ts_txn *t, const char *key, uint64_t *v, bool *found) {
  const void *p;
  size_t l;
  int rc = ts_store_get(t, TS_T_META, key, strlen(key), &p, &l);
  *found = rc == 0;
  if (rc == TS_ENOTFOUND) return 0;
  if (rc) return rc;
  if (l != 8) return TS_EIO;
  *v = be64_get(p);
  return 0;
}

static int meta_put_u64(ts_txn *t, const char *key, uint64_t v) {
  uint8_t b[8];
  be64_put(b, v);
  return ts_store_put_urgent(t, TS_T_META, key, strlen(key), b, sizeof(b));
}

int ts_feed_open(ts_store *s, uint64_t *store_id) {
  uint64_t file_id = 0, id = 0, recorded = 0;
  bool has_id, has_file;
  int rc = ts_store_file_id(s, &file_id);
  if (rc) return rc;
  ts_txn *t;
  if ((rc = ts_store_write(s, &t)) != 0) return rc;
  if ((rc = meta_u64(t, "store_id", &id, &has_id)) == 0)
    rc = meta_u64(t, "file_id", &recorded, &has_file);
  if (rc == 0 && (!has_id || !has_file || recorded != file_id)) {
    randombytes_buf(&id, sizeof(id));
    rc = meta_put_u64(t, "store_id", id);
    if (rc == 0) rc = meta_put_u64(t, "file_id", file_id);
    if (rc == 0) rc = ts_store_commit(t);
    else ts_store_abort(t);
  } else {
    ts_store_abort(t);
  }
  if (rc == 0) *store_id = id;
  return rc;
}

int ts_feed_latest(ts_txn *t, uint64_t *seq) {
  bool found;
  *seq = 0;
  return meta_u64(t, "feed_seq", seq, &found);
}

int ts_feed_append(ts_txn *t, uint64_t *last, char kind, const char *id, size_t id_len,
                   int64_t until, int64_t before) {
  if (id_len > TS_FEED_ID_MAX) return TS_EINTERNAL;
  uint64_t seq;
  int rc = ts_feed_latest(t, &seq);
  if (rc) return rc;
  seq++;
  uint8_t key[8], val[VALUE_HEAD + TS_FEED_ID_MAX];
  be64_put(key, seq);
  val[0] = (uint8_t)kind;
  be64_put(val + 1, (uint64_t)until);
  be64_put(val + 9, (uint64_t)before);
  memcpy(val + VALUE_HEAD, id, id_len);
  uint8_t ek[TS_EXPIRY_KEY_MAX];
  /* Due one second after `until`: the entry is in force through that second. */
  size_t ekl = ts_expiry_key(ek, until < INT64_MAX ? until + 1 : until, 'q', key, sizeof(key));
  rc = meta_put_u64(t, "feed_seq", seq);
  if (rc == 0) rc = ts_store_put_urgent(t, TS_T_FEED, key, sizeof(key), val, VALUE_HEAD + id_len);
  if (rc == 0) rc = ts_store_put_urgent(t, TS_T_EXPIRY, ek, ekl, "", 0);
  if (rc == 0 && seq > *last) *last = seq;
  return rc;
}

static bool decode(const uint8_t *k, size_t kl, const uint8_t *v, size_t vl, ts_feed_entry *e) {
  if (kl != 8 || vl < VALUE_HEAD || vl > VALUE_HEAD + TS_FEED_ID_MAX) return false;
  e->pos = (ts_feed_pos){be64_get(k), 0};
  e->kind = (char)v[0];
  e->until = (int64_t)be64_get(v + 1);
  e->before = (int64_t)be64_get(v + 9);
  e->id_len = vl - VALUE_HEAD;
  memcpy(e->id, v + VALUE_HEAD, e->id_len);
  e->id[e->id_len] = 0;
  return ts_feed_kind_name(e->kind) != NULL;
}

int ts_feed_read(ts_txn *t, uint64_t after, int64_t now, ts_feed_entry *out, size_t max,
                 size_t *n, uint64_t *last, bool *more) {
  *n = 0;
  *last = after;
  *more = false;
  if (after == UINT64_MAX) return 0;
  ts_cursor *c;
  int rc = ts_cursor_open(t, TS_T_FEED, &c);
  if (rc) return rc;
  uint8_t from[8];
  be64_put(from, after + 1);
  const void *k, *v;
  size_t kl, vl, examined = 0;
  for (rc = ts_cursor_seek(c, from, sizeof(from), &k, &kl, &v, &vl); rc == 0;
       rc = ts_cursor_next(c, &k, &kl, &v, &vl)) {
    if (examined == max) {
      *more = true;
      break;
    }
    examined++;
    ts_feed_entry *e = &out[*n];
    if (!decode(k, kl, v, vl, e)) {
      if (kl == 8) *last = be64_get(k); /* a damaged entry is skipped, not a stop */
      continue;
    }
    *last = e->pos.major;
    if (e->until >= now) (*n)++;
  }
  ts_cursor_close(c);
  return rc == TS_ENOTFOUND ? 0 : rc;
}

int ts_feed_sweep(ts_txn *t, const uint8_t *key, size_t klen, int64_t now) {
  const void *v;
  size_t vl;
  int rc = ts_store_get(t, TS_T_FEED, key, klen, &v, &vl);
  if (rc == TS_ENOTFOUND) return 0;
  if (rc) return rc;
  if (vl >= VALUE_HEAD && (int64_t)be64_get((const uint8_t *)v + 1) >= now) return 0;
  rc = ts_store_del(t, TS_T_FEED, key, klen, NULL, 0);
  return rc ? rc : 1;
}

void ts_cursor_format(char out[TS_CURSOR_CHARS + 1], uint64_t store_id, uint64_t seq) {
  snprintf(out, TS_CURSOR_CHARS + 1, "%016llx%016llx", (unsigned long long)store_id,
           (unsigned long long)seq);
}

static bool hex64(const char *s, uint64_t *v) {
  *v = 0;
  for (int i = 0; i < 16; i++) {
    char ch = s[i];
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (d < 0) return false;
    *v = (*v << 4) | (uint64_t)d;
  }
  return true;
}

bool ts_cursor_resume(const char *since, size_t len, uint64_t store_id, uint64_t latest,
                      uint64_t *after) {
  *after = 0;
  if (len == 1 && since[0] == '0') return true; /* from the beginning */
  uint64_t id, seq;
  if (len != TS_CURSOR_CHARS || !hex64(since, &id) || !hex64(since + 16, &seq)) return false;
  if (id != store_id || seq > latest) return false;
  *after = seq;
  return true;
}
