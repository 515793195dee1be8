/* sidecar/store/lmdb/families.c: refresh-token families in the store (see families.h).
 *
 * A family record is JSON; its expiry index entry follows its exp (plus the leeway), moved on
 * every rotation. Revoking a family deletes the record and lists its id in the revocation
 * list until its last refresh token would have expired, and removes its fam_by_sub entry, so
 * user.revoke's rounds always make progress. Writer thread for writes. */
#include "families.h"

#include "error.h"
#include "feed.h"
#include "revocations.h"
#include "session_store.h"

#include <stdlib.h>
#include <string.h>

int ts_family_get(ts_txn *t, const char *fam, json_t **rec) {
  const void *v;
  size_t vl;
  *rec = NULL;
  int rc = ts_store_get(t, TS_T_FAMILIES, fam, strlen(fam), &v, &vl);
  if (rc) return rc;
  *rec = json_loadb(v, vl, JSON_REJECT_DUPLICATES, NULL);
  return *rec && json_is_object(*rec) ? 0 : TS_EIO;
}

/* The entry is due the first second the family's refresh token is refused (a token is still
 * accepted at exp + leeway): due any earlier, the sweeper would find the family alive, keep it
 * and drop its only entry, and the record would never be swept. */
static int index_entry(ts_txn *t, const char *fam, int64_t exp, int64_t leeway, bool add) {
  uint8_t ek[TS_EXPIRY_KEY_MAX];
  size_t ekl = ts_expiry_key(ek, exp + leeway + 1, 'F', fam, strlen(fam));
  int rc = add ? ts_store_put(t, TS_T_EXPIRY, ek, ekl, "", 0)
               : ts_store_del(t, TS_T_EXPIRY, ek, ekl, NULL, 0);
  return rc == TS_ENOTFOUND ? 0 : rc;
}

int ts_family_put(ts_txn *t, const char *fam, const json_t *rec, int64_t old_exp, int64_t leeway) {
  char *text = json_dumps(rec, JSON_COMPACT);
  if (!text) return TS_ENOMEM;
  const json_t *sub = json_object_get(rec, "sub");
  int64_t exp = json_integer_value(json_object_get(rec, "exp"));
  int rc = ts_store_put(t, TS_T_FAMILIES, fam, strlen(fam), text, strlen(text));
  free(text);
  if (!rc && old_exp < 0)
    rc = ts_store_put(t, TS_T_FAM_BY_SUB, json_string_value(sub), json_string_length(sub), fam,
                      strlen(fam));
  if (!rc && old_exp >= 0 && old_exp != exp) rc = index_entry(t, fam, old_exp, leeway, false);
  if (!rc) rc = index_entry(t, fam, exp, leeway, true);
  return rc;
}

/* Removes the record and its index entries. */
static int family_delete(ts_txn *t, const char *fam, const json_t *rec, int64_t leeway) {
  const json_t *sub = json_object_get(rec, "sub");
  int rc = index_entry(t, fam, json_integer_value(json_object_get(rec, "exp")), leeway, false);
  if (!rc) {
    rc = ts_store_del(t, TS_T_FAM_BY_SUB, json_string_value(sub), json_string_length(sub), fam,
                      strlen(fam));
    if (rc == TS_ENOTFOUND) rc = 0;
  }
  if (!rc) rc = ts_store_del(t, TS_T_FAMILIES, fam, strlen(fam), NULL, 0);
  return rc;
}

int ts_family_revoke(ts_txn *t, const char *fam, int64_t until, int64_t leeway, bool *was_live,
                     int64_t *listed_until) {
  json_t *rec;
  int rc = ts_family_get(t, fam, &rec);
  *was_live = rc == 0;
  if (rc && rc != TS_ENOTFOUND) return rc;
  if (rec) {
    ts_store_reserve_all(t); /* a live family: its revocation may use the whole reserve */
    int64_t exp = json_integer_value(json_object_get(rec, "exp"));
    /* Its newest access token may outlive its refresh token (access_ttl > refresh_ttl); every
     * older one expires before it. The entry must outlive them all. */
    int64_t access_exp = json_integer_value(json_object_get(rec, "rotated_at")) +
                         json_integer_value(json_object_get(rec, "access_ttl"));
    if (exp > until) until = exp;
    if (access_exp > until) until = access_exp;
    rc = family_delete(t, fam, rec, leeway);
    json_decref(rec);
    if (rc) return rc;
  }
  *listed_until = until + leeway;
  return ts_revoked_put(t, 'f', fam, strlen(fam), until + leeway);
}

int ts_family_revoke_announced(ts_txn *t, const char *fam, int64_t until, int64_t leeway,
                               uint64_t *feed_last, unsigned *revoked) {
  bool live;
  int64_t listed_until;
  int rc = ts_family_revoke(t, fam, until, leeway, &live, &listed_until);
  if (rc == 0 && live) {
    (*revoked)++;
    rc = ts_feed_append(t, feed_last, 'f', fam, strlen(fam), listed_until, 0);
  }
  return rc;
}

int ts_family_list_sub(ts_txn *t, const char *sub, size_t sublen,
                       char (*ids)[TS_FAMILY_ID_CHARS + 1], size_t cap) {
  ts_cursor *c;
  int rc = ts_cursor_open(t, TS_T_FAM_BY_SUB, &c);
  if (rc) return rc;
  size_t n = 0;
  const void *v;
  size_t vl;
  for (rc = ts_cursor_dup_first(c, sub, sublen, &v, &vl); rc == 0 && n < cap;
       rc = ts_cursor_dup_next(c, &v, &vl)) {
    if (vl != TS_FAMILY_ID_CHARS) continue;
    memcpy(ids[n], v, vl);
    ids[n++][vl] = 0;
  }
  ts_cursor_close(c);
  return rc == 0 || rc == TS_ENOTFOUND ? (int)n : rc;
}

int ts_family_sweep(ts_txn *t, const uint8_t *fam, size_t len, int64_t now) {
  char id[TS_FAMILY_ID_CHARS + 1];
  if (len != TS_FAMILY_ID_CHARS) return 0;
  memcpy(id, fam, len);
  id[len] = 0;
  json_t *rec;
  int rc = ts_family_get(t, id, &rec);
  if (rc == TS_ENOTFOUND) return 0;
  if (rc) return rc;
  int64_t exp = json_integer_value(json_object_get(rec, "exp"));
  if (exp >= now) { /* a stale entry: the family was rotated and lives on */
    json_decref(rec);
    return 0;
  }
  rc = family_delete(t, id, rec, 0);
  json_decref(rec);
  return rc ? rc : 1;
}
