/* proto/wipe.c: wiping buffers that held secrets (see wipe.h for where they are used).
 *
 * Never realloc: realloc may free the old block without clearing it. Growing allocates a new
 * block, copies the used bytes, wipes them in the old block, then frees it. Wipes cover the
 * used bytes only, so their cost follows the traffic, not the capacity. */
#include "wipe.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A first block that holds most replies (msgpack's own 8 KiB start would make every reply a
 * large allocation, too large for the request pool to keep). */
#define WIPE_SBUFFER_INIT_SIZE 512

int ts_wipe_grow(uint8_t **buf, size_t *cap, size_t used, size_t ncap) {
  uint8_t *nb = malloc(ncap ? ncap : 1);
  if (!nb) return -1;
  if (*buf) {
    if (used) memcpy(nb, *buf, used);
    sodium_memzero(*buf, used);
    free(*buf);
  }
  *buf = nb;
  *cap = ncap;
  return 0;
}

int ts_wipe_sbuffer_write(void *data, const char *buf, size_t len) {
  msgpack_sbuffer *sb = data;
  if (!buf || len == 0) return 0;
  if (sb->alloc - sb->size < len) {
    size_t n = sb->alloc ? sb->alloc : WIPE_SBUFFER_INIT_SIZE;
    while (n - sb->size < len) {
      if (n > SIZE_MAX / 2) return -1;
      n *= 2;
    }
    uint8_t *p = (uint8_t *)sb->data;
    size_t alloc = sb->alloc;
    if (ts_wipe_grow(&p, &alloc, sb->size, n) != 0) return -1;
    sb->data = (char *)p;
    sb->alloc = alloc;
  }
  char *to = sb->data + sb->size;
  switch (len) { /* msgpack writes heads of 1, 2, 3, 5 or 9 bytes: copies of a known size */
  case 1: to[0] = buf[0]; break;
  case 2: memcpy(to, buf, 2); break;
  case 3: memcpy(to, buf, 3); break;
  case 5: memcpy(to, buf, 5); break;
  case 9: memcpy(to, buf, 9); break;
  default: memcpy(to, buf, len);
  }
  sb->size += len;
  return 0;
}

void ts_wipe_sbuffer(msgpack_sbuffer *sb) {
  if (sb->data) sodium_memzero(sb->data, sb->size);
  sb->size = 0;
}

void ts_wipe_sbuffer_destroy(msgpack_sbuffer *sb) {
  ts_wipe_sbuffer(sb);
  msgpack_sbuffer_destroy(sb);
}

void ts_wipe_json(json_t *v) {
  if (!v || v->refcount != 1) return;
  if (json_is_string(v)) {
    /* jansson owns the bytes; v is about to be freed by its only holder. */
    sodium_memzero((char *)json_string_value(v), json_string_length(v));
  } else if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++) ts_wipe_json(json_array_get(v, i));
  } else if (json_is_object(v)) {
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) ts_wipe_json(x);
  }
}
