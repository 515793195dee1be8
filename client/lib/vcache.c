/* client/lib/vcache.c: the verifier's two tables (see verifier_internal.h). No locks here:
 * the verifier calls everything with its mutex held.
 *
 * The verified-token cache is one array of cap entries allocated up front (so a full cache
 * never allocates), chained into buckets by the first bytes of the key. The key is a BLAKE2b
 * hash under a random per-verifier key, so nobody can aim tokens at one bucket. Eviction is
 * the clock algorithm: a hit sets the entry's ref bit; when the cache is full the hand sweeps,
 * clearing ref bits, and takes the first entry that is expired or was not used since the hand
 * last passed. That costs one byte per entry and no list surgery on a hit (a hit happens under
 * the shared mutex, so it must be cheap).
 *
 * The revocation set maps (kind, id) to until (and, for a sub, the cut-off `before`). It is
 * fed by a trusted daemon and has no size cap: dropping a revocation would be a hole. Entries
 * are dropped once until passes (their tokens are dead by then), by ts_vrevoked_prune, which
 * the feed thread calls periodically. Hashing is SipHash (crypto_shorthash) under a random
 * key. gen changes on every add, so a cached verdict knows whether it must be checked again. */
#include "verifier_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- claims ------------------------------------------------------------------------------ */

void ts_tokinfo_of(const json_t *claims, ts_tokinfo *t) {
  const json_t *jti = json_object_get(claims, "jti"), *sub = json_object_get(claims, "sub");
  const json_t *fam = json_object_get(claims, "fam"), *iat = json_object_get(claims, "iat");
  t->jti = json_string_value(jti);
  t->jti_len = json_string_length(jti);
  t->sub = json_string_value(sub);
  t->sub_len = json_string_length(sub);
  t->fam = json_is_string(fam) ? json_string_value(fam) : NULL;
  t->fam_len = t->fam ? json_string_length(fam) : 0;
  t->iat = json_is_integer(iat) ? (int64_t)json_integer_value(iat) : 0;
}

/* ---- the verified-token cache ------------------------------------------------------------ */

int ts_vcache_init(ts_vcache *c, size_t cap) {
  memset(c, 0, sizeof(*c));
  c->free_head = TS_V_NIL;
  if (cap == 0) return 0;
  if (cap >= (size_t)1 << 30) return TESSERA_EINVAL;
  uint32_t nb = 16;
  while (nb < cap) nb *= 2;
  c->e = calloc(cap, sizeof(*c->e));
  c->buckets = malloc(nb * sizeof(*c->buckets));
  if (!c->e || !c->buckets) {
    free(c->e);
    free(c->buckets);
    c->e = NULL;
    c->buckets = NULL;
    return TESSERA_ENOMEM;
  }
  c->cap = (uint32_t)cap;
  c->nbuckets = nb;
  for (uint32_t i = 0; i < nb; i++) c->buckets[i] = TS_V_NIL;
  for (uint32_t i = c->cap; i-- > 0;) { /* free list in index order */
    c->e[i].next = c->free_head;
    c->free_head = i;
  }
  return 0;
}

void ts_vcache_clear(ts_vcache *c) {
  if (c->cap == 0) return;
  c->free_head = TS_V_NIL;
  for (uint32_t i = c->cap; i-- > 0;) {
    ts_ventry *e = &c->e[i];
    if (e->used) json_decref(e->claims);
    memset(e, 0, sizeof(*e));
    e->next = c->free_head;
    c->free_head = i;
  }
  for (uint32_t i = 0; i < c->nbuckets; i++) c->buckets[i] = TS_V_NIL;
  c->count = 0;
  c->hand = 0;
}

void ts_vcache_close(ts_vcache *c) {
  ts_vcache_clear(c);
  free(c->e);
  free(c->buckets);
  memset(c, 0, sizeof(*c));
}

static uint32_t bucket_of(const ts_vcache *c, const uint8_t key[32]) {
  uint32_t h;
  memcpy(&h, key, sizeof(h));
  return h & (c->nbuckets - 1);
}

ts_ventry *ts_vcache_find(ts_vcache *c, const uint8_t key[32], int64_t now) {
  if (c->cap == 0) return NULL;
  for (uint32_t i = c->buckets[bucket_of(c, key)]; i != TS_V_NIL; i = c->e[i].next) {
    ts_ventry *e = &c->e[i];
    if (sodium_memcmp(e->key, key, 32) != 0) continue;
    if (now >= e->valid_until) { /* valid while now < exp + leeway (ts_jws_check_claims) */
      ts_vcache_remove(c, e);
      return NULL;
    }
    e->ref = 1;
    return e;
  }
  return NULL;
}

void ts_vcache_remove(ts_vcache *c, ts_ventry *e) {
  uint32_t idx = (uint32_t)(e - c->e);
  for (uint32_t *p = &c->buckets[bucket_of(c, e->key)]; *p != TS_V_NIL; p = &c->e[*p].next) {
    if (*p != idx) continue;
    *p = e->next;
    break;
  }
  json_decref(e->claims);
  memset(e, 0, sizeof(*e));
  e->next = c->free_head;
  c->free_head = idx;
  c->count--;
}

/* Frees one slot with the clock hand: the first expired entry, or the first whose ref bit is
 * already clear (two sweeps at most, since the first clears every bit it passes). */
static void evict_one(ts_vcache *c, int64_t now) {
  for (uint64_t steps = 0; steps < 2 * (uint64_t)c->cap + 1; steps++) {
    ts_ventry *e = &c->e[c->hand];
    c->hand = c->hand + 1 == c->cap ? 0 : c->hand + 1;
    if (!e->used) continue;
    if (now >= e->valid_until || !e->ref) {
      ts_vcache_remove(c, e);
      return;
    }
    e->ref = 0;
  }
}

void ts_vcache_insert(ts_vcache *c, const uint8_t key[32], json_t *claims, int64_t valid_until,
                      uint64_t rev_gen, int64_t now) {
  ts_ventry *e = c->cap ? ts_vcache_find(c, key, now) : NULL;
  if (c->cap == 0 || e) { /* e: two threads verified the same token: keep one entry */
    if (e) e->rev_gen = rev_gen;
    json_decref(claims);
    return;
  }
  if (c->free_head == TS_V_NIL) evict_one(c, now);
  uint32_t idx = c->free_head;
  e = &c->e[idx];
  c->free_head = e->next;
  memcpy(e->key, key, 32);
  e->valid_until = valid_until;
  e->rev_gen = rev_gen;
  e->claims = claims;
  ts_tokinfo_of(claims, &e->ti);
  e->used = 1;
  e->ref = 0; /* earns its second chance with its first hit */
  uint32_t b = bucket_of(c, key);
  e->next = c->buckets[b];
  c->buckets[b] = idx;
  c->count++;
}

/* ---- the revocation set ------------------------------------------------------------------ */

struct ts_vrev {
  struct ts_vrev *next;
  uint64_t h;
  int64_t until;
  int64_t before; /* 's' only */
  char kind;
  size_t len;
  char id[];
};

#define REV_MIN_BUCKETS 64u

void ts_vrevoked_init(ts_vrevoked *r) {
  memset(r, 0, sizeof(*r));
  crypto_shorthash_keygen(r->hkey);
}

void ts_vrevoked_close(ts_vrevoked *r) {
  for (size_t i = 0; i < r->nbuckets; i++) {
    ts_vrev *n = r->buckets[i];
    while (n) {
      ts_vrev *next = n->next;
      free(n);
      n = next;
    }
  }
  free(r->buckets);
  r->buckets = NULL;
  r->nbuckets = r->count = 0;
}

static uint64_t rev_hash(const ts_vrevoked *r, char kind, const char *id, size_t len) {
  uint8_t out[crypto_shorthash_BYTES];
  crypto_shorthash(out, (const unsigned char *)id, len, r->hkey);
  uint64_t h;
  memcpy(&h, out, sizeof(h));
  return h ^ ((uint64_t)(unsigned char)kind * 0x9e3779b97f4a7c15ull);
}

static ts_vrev *rev_find(const ts_vrevoked *r, char kind, const char *id, size_t len) {
  if (r->count == 0 || !id) return NULL;
  uint64_t h = rev_hash(r, kind, id, len);
  for (ts_vrev *n = r->buckets[h & (r->nbuckets - 1)]; n; n = n->next)
    if (n->h == h && n->kind == kind && n->len == len && memcmp(n->id, id, len) == 0) return n;
  return NULL;
}

/* Doubles the table (or makes the first one). Keeps the old one when out of memory. */
static void rev_grow(ts_vrevoked *r) {
  size_t nb = r->nbuckets ? r->nbuckets * 2 : REV_MIN_BUCKETS;
  ts_vrev **b = calloc(nb, sizeof(*b));
  if (!b) return;
  for (size_t i = 0; i < r->nbuckets; i++) {
    ts_vrev *n = r->buckets[i];
    while (n) {
      ts_vrev *next = n->next;
      n->next = b[n->h & (nb - 1)];
      b[n->h & (nb - 1)] = n;
      n = next;
    }
  }
  free(r->buckets);
  r->buckets = b;
  r->nbuckets = nb;
}

int ts_vrevoked_add(ts_vrevoked *r, char kind, const char *id, size_t len, int64_t until,
                    int64_t before, int64_t now) {
  if (until < now) return 0;
  ts_vrev *n = rev_find(r, kind, id, len);
  if (n) {
    if (until > n->until) { /* a lapsed entry back in force refuses tokens again */
      n->until = until;
      r->gen++;
    }
    if (kind == 's' && before > n->before) {
      n->before = before;
      r->gen++;
    }
    return 0;
  }
  if (r->count >= r->nbuckets) rev_grow(r);
  if (r->nbuckets == 0) return TESSERA_ENOMEM;
  n = malloc(sizeof(*n) + len);
  if (!n) return TESSERA_ENOMEM;
  n->h = rev_hash(r, kind, id, len);
  n->until = until;
  n->before = before;
  n->kind = kind;
  n->len = len;
  memcpy(n->id, id, len);
  ts_vrev **b = &r->buckets[n->h & (r->nbuckets - 1)];
  n->next = *b;
  *b = n;
  r->count++;
  r->gen++;
  return 0;
}

bool ts_vrevoked_check(const ts_vrevoked *r, const ts_tokinfo *t, int64_t now) {
  if (r->count == 0) return false;
  const ts_vrev *n = rev_find(r, 'j', t->jti, t->jti_len);
  if (n && now <= n->until) return true;
  n = rev_find(r, 'f', t->fam, t->fam_len);
  if (n && now <= n->until) return true;
  n = rev_find(r, 's', t->sub, t->sub_len);
  return n && now <= n->until && t->iat <= n->before;
}

void ts_vrevoked_prune(ts_vrevoked *r, int64_t now) {
  for (size_t i = 0; i < r->nbuckets; i++) {
    for (ts_vrev **p = &r->buckets[i]; *p;) {
      ts_vrev *n = *p;
      if (n->until >= now) {
        p = &n->next;
        continue;
      }
      *p = n->next;
      free(n);
      r->count--;
    }
  }
}
