/* sidecar/http/hbuf.h: a growable byte buffer for responses (headers, bodies, /metrics).
 *
 * Owner: the HTTP edge. Appends never fail loudly: out of memory sets oom and later appends
 * do nothing; the user of the buffer checks oom once (and answers 500). Buffers that held a
 * Set-Cookie are wiped by ts_hbuf_free_wipe. */
#ifndef TS_HTTP_HBUF_H
#define TS_HTTP_HBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ts_hbuf {
  char *p;
  size_t len, cap;
  bool oom;
} ts_hbuf;

void ts_hbuf_add(ts_hbuf *b, const char *s, size_t n);
void ts_hbuf_str(ts_hbuf *b, const char *s);
void ts_hbuf_printf(ts_hbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s percent-encoded: every byte outside 0x21..0x7e, and '%', as %XX (header values
 * built from user data, e.g. a sub, can then never break a header line). With url, also the
 * characters a query value must not hold raw (&, =, ?, #, +, /, :, space...). */
void ts_hbuf_pct(ts_hbuf *b, const char *s, size_t n, bool url);
void ts_hbuf_free(ts_hbuf *b);
/* Empties b, wiping what it held, and keeps its memory for the next use. */
void ts_hbuf_reset_wipe(ts_hbuf *b);
void ts_hbuf_free_wipe(ts_hbuf *b);

#endif
