/* sidecar/http/hbuf.c: the response buffer (see hbuf.h). Owner: the HTTP edge. */
#include "hbuf.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(ts_hbuf *b, size_t n) {
  if (b->oom) return false;
  if (b->len + n <= b->cap) return true;
  size_t ncap = b->cap ? b->cap : 256;
  while (ncap < b->len + n) ncap *= 2;
  char *np = malloc(ncap); /* copied, not realloc'd: the old block is wiped (it may hold a cookie) */
  if (!np) {
    b->oom = true;
    return false;
  }
  if (b->len) memcpy(np, b->p, b->len);
  if (b->p) sodium_memzero(b->p, b->cap);
  free(b->p);
  b->p = np;
  b->cap = ncap;
  return true;
}

void ts_hbuf_add(ts_hbuf *b, const char *s, size_t n) {
  if (!reserve(b, n)) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

void ts_hbuf_str(ts_hbuf *b, const char *s) { ts_hbuf_add(b, s, strlen(s)); }

void ts_hbuf_printf(ts_hbuf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof(tmp)) {
    ts_hbuf_add(b, tmp, (size_t)n);
    return;
  }
  if (!reserve(b, (size_t)n + 1)) return;
  va_start(ap, fmt);
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void ts_hbuf_pct(ts_hbuf *b, const char *s, size_t n, bool url) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    bool raw = c > 0x20 && c < 0x7f && c != '%';
    if (url && raw) raw = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || strchr("-._~", c);
    if (raw) {
      ts_hbuf_add(b, (const char *)&c, 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      ts_hbuf_add(b, e, 3);
    }
  }
}

void ts_hbuf_free(ts_hbuf *b) {
  free(b->p);
  *b = (ts_hbuf){0};
}

void ts_hbuf_free_wipe(ts_hbuf *b) {
  if (b->p) sodium_memzero(b->p, b->cap);
  ts_hbuf_free(b);
}

void ts_hbuf_reset_wipe(ts_hbuf *b) {
  if (b->p) sodium_memzero(b->p, b->len);
  b->len = 0;
  b->oom = false;
}
