/* sidecar/store/record_cache.c: see record_cache.h. A slot is empty, filling (a ticket is
 * out) or full (a record copy). `busy` counts slots that are not empty, so flushing an empty
 * table walks nothing (walking would fault in every untouched page of it). */
#include "record_cache.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum { SLOT_EMPTY, SLOT_FILLING, SLOT_FULL };

typedef struct slot {
  uint8_t hash[TS_HASH_BYTES];
  uint8_t state;
  uint32_t ticket; /* SLOT_FILLING: the fill it waits for */
  uint32_t len;
  uint8_t *rec;    /* SLOT_FULL */
} slot;

struct ts_rcache {
  slot *slots;
  size_t mask; /* slots - 1 */
  uint32_t next_ticket;
  size_t busy;
  ts_rcache_counts n;
};

ts_rcache *ts_rcache_open(size_t slots, bool *oom) {
  *oom = false;
  if (slots == 0) return NULL;
  size_t n = 1;
  while (n < slots && n < ((size_t)1 << 24)) n <<= 1;
  ts_rcache *c = calloc(1, sizeof(*c));
  if (!c || !(c->slots = calloc(n, sizeof(slot)))) {
    free(c);
    *oom = true;
    return NULL;
  }
  c->mask = n - 1;
  return c;
}

static void slot_clear(ts_rcache *c, slot *s) {
  if (s->state == SLOT_EMPTY) return;
  if (s->state == SLOT_FULL) {
    sodium_memzero(s->rec, s->len);
    free(s->rec);
    c->n.entries--;
  }
  c->busy--;
  s->state = SLOT_EMPTY;
  s->rec = NULL;
  s->len = 0;
}

static slot *slot_of(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES]) {
  uint64_t i;
  memcpy(&i, hash, sizeof(i));
  return &c->slots[i & c->mask];
}

void ts_rcache_flush(ts_rcache *c) {
  if (!c) return;
  for (size_t i = 0; c->busy > 0 && i <= c->mask; i++) slot_clear(c, &c->slots[i]);
  c->n.flushes++;
}

void ts_rcache_close(ts_rcache *c) {
  if (!c) return;
  ts_rcache_flush(c);
  free(c->slots);
  free(c);
}

bool ts_rcache_get(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES], const uint8_t **rec,
                   size_t *len) {
  slot *s = slot_of(c, hash);
  if (s->state != SLOT_FULL || memcmp(s->hash, hash, TS_HASH_BYTES) != 0) {
    c->n.misses++;
    return false;
  }
  c->n.hits++;
  *rec = s->rec;
  *len = s->len;
  return true;
}

uint32_t ts_rcache_filling(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES]) {
  slot *s = slot_of(c, hash);
  slot_clear(c, s);
  memcpy(s->hash, hash, TS_HASH_BYTES);
  s->state = SLOT_FILLING;
  c->busy++;
  if (++c->next_ticket == 0) c->next_ticket = 1;
  s->ticket = c->next_ticket;
  return s->ticket;
}

void ts_rcache_fill(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES], uint32_t ticket,
                    const uint8_t *rec, size_t len) {
  if (!ticket) return;
  slot *s = slot_of(c, hash);
  if (len > TS_RCACHE_RECORD_MAX) {
    if (s->state == SLOT_FILLING && s->ticket == ticket) slot_clear(c, s);
    return;
  }
  if (s->state != SLOT_FILLING || s->ticket != ticket ||
      memcmp(s->hash, hash, TS_HASH_BYTES) != 0)
    return; /* forgotten, flushed or taken by another session meanwhile */
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) {
    slot_clear(c, s);
    return;
  }
  memcpy(copy, rec, len);
  s->rec = copy;
  s->len = (uint32_t)len;
  s->state = SLOT_FULL;
  c->n.entries++;
}

bool ts_rcache_forget(ts_rcache *c, const uint8_t hash[TS_HASH_BYTES]) {
  if (!c) return false;
  slot *s = slot_of(c, hash);
  if (s->state == SLOT_EMPTY || memcmp(s->hash, hash, TS_HASH_BYTES) != 0) return false;
  slot_clear(c, s);
  return true;
}

size_t ts_rcache_slots(const ts_rcache *c) { return c ? c->mask + 1 : 0; }

void ts_rcache_counts_get(const ts_rcache *c, ts_rcache_counts *out) {
  if (c) *out = c->n;
  else memset(out, 0, sizeof(*out));
}
