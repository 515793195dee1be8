/* sidecar/freelist.h: a free list of equal-sized blocks, for the per-request contexts of the
 * hot paths (validate, Redis operations): a finished block is kept for the next request
 * instead of going back to malloc, up to max blocks.
 *
 * Ownership: the list owns the blocks it holds; a block taken with ts_freelist_get belongs to
 * the caller until ts_freelist_put. A block's first bytes hold the link while it is listed
 * (the caller initialises what it takes). Loop thread only. */
#ifndef TS_FREELIST_H
#define TS_FREELIST_H

#include <stddef.h>
#include <stdlib.h>

typedef struct ts_freelist {
  size_t size;   /* of a block: at least sizeof(void *) */
  unsigned max;  /* blocks kept at most */
  unsigned n;
  void *head;
} ts_freelist;

/* An empty list of blocks of type, keeping at most max_kept. */
#define TS_FREELIST(type, max_kept) \
  {sizeof(type) < sizeof(void *) ? sizeof(void *) : sizeof(type), (max_kept), 0, NULL}

/* A block (uninitialised), or NULL when out of memory. */
static inline void *ts_freelist_get(ts_freelist *f) {
  void *p = f->head;
  if (!p) return malloc(f->size);
  f->head = *(void **)p;
  f->n--;
  return p;
}

/* Gives p back (kept, or freed when the list is full). NULL is ignored. */
static inline void ts_freelist_put(ts_freelist *f, void *p) {
  if (!p) return;
  if (f->n >= f->max) {
    free(p);
    return;
  }
  *(void **)p = f->head;
  f->head = p;
  f->n++;
}

#endif
