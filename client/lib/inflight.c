/* client/lib/inflight.c: the msgid -> reply table (see internal.h).
 *
 * Chained hashing on the msgid itself: the client hands out msgids in sequence, so the low bits
 * already spread them evenly and no peer chooses them. The table doubles when the load reaches
 * one; when that allocation fails it simply keeps its size (longer chains, still correct).
 * A reply freed here was never handed to the caller (dropped, timed out, or left at close):
 * its strings (sids, tokens) are wiped first. */
#include "internal.h"

#include "wipe.h"

#include <stdlib.h>

#define INFLIGHT_MIN_BUCKETS 16u

void ts_inflight_init(ts_inflight *t) {
  t->buckets = NULL;
  t->nbuckets = 0;
  t->count = 0;
}

void ts_reply_free(ts_reply *r) {
  if (!r) return;
  ts_wipe_json(r->result);
  json_decref(r->result);
  free(r);
}

void ts_inflight_close(ts_inflight *t) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    ts_reply *r = t->buckets[i];
    while (r) {
      ts_reply *next = r->next;
      ts_reply_free(r);
      r = next;
    }
  }
  free(t->buckets);
  ts_inflight_init(t);
}

static size_t slot_of(const ts_inflight *t, uint32_t msgid) {
  return (size_t)msgid & (t->nbuckets - 1);
}

/* Rehashes into n buckets. Returns false (table unchanged) when the allocation fails. */
static bool resize(ts_inflight *t, size_t n) {
  ts_reply **b = calloc(n, sizeof(*b));
  if (!b) return false;
  ts_reply **old = t->buckets;
  size_t oldn = t->nbuckets;
  t->buckets = b;
  t->nbuckets = n;
  for (size_t i = 0; i < oldn; i++) {
    ts_reply *r = old[i];
    while (r) {
      ts_reply *next = r->next;
      size_t s = slot_of(t, r->msgid);
      r->next = b[s];
      b[s] = r;
      r = next;
    }
  }
  free(old);
  return true;
}

ts_reply *ts_inflight_add(ts_inflight *t, uint32_t msgid) {
  if (t->nbuckets == 0 && !resize(t, INFLIGHT_MIN_BUCKETS)) return NULL;
  if (t->count >= t->nbuckets && t->nbuckets <= SIZE_MAX / 2 / sizeof(ts_reply *))
    (void)resize(t, t->nbuckets * 2); /* failure is fine: chains just get longer */
  ts_reply *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->msgid = msgid;
  size_t s = slot_of(t, msgid);
  r->next = t->buckets[s];
  t->buckets[s] = r;
  t->count++;
  return r;
}

ts_reply *ts_inflight_find(const ts_inflight *t, uint32_t msgid) {
  if (t->nbuckets == 0) return NULL;
  for (ts_reply *r = t->buckets[slot_of(t, msgid)]; r; r = r->next)
    if (r->msgid == msgid) return r;
  return NULL;
}

ts_reply *ts_inflight_unlink(ts_inflight *t, uint32_t msgid) {
  if (t->nbuckets == 0) return NULL;
  for (ts_reply **p = &t->buckets[slot_of(t, msgid)]; *p; p = &(*p)->next) {
    ts_reply *r = *p;
    if (r->msgid == msgid) {
      *p = r->next;
      r->next = NULL;
      t->count--;
      return r;
    }
  }
  return NULL;
}
