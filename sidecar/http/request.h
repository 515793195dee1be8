/* sidecar/http/request.h: one HTTP/1.1 request, parsed incrementally by libhttp-parser.
 *
 * Owner: the HTTP edge. Why libhttp-parser (Debian's libhttp-parser-dev, 2.9): it is a pure
 * callback parser with no I/O, so it runs under our own uv streams on the one loop, with our
 * buffers, our limits and our timers; it is small, battle-tested (Node used it for a decade)
 * and fuzzable on its own. libh2o brings a whole server (its own config, TLS, HTTP/2, its
 * loop integration) to answer five routes; libmicrohttpd would need its external-poll mode
 * driven by uv_poll, with its own connection table and limits beside ours.
 *
 * What is kept of a request: method, version, the URL, and every header (name, value) as
 * offsets into one arena of --http-max-header bytes; a request whose line and headers do not
 * fit is refused with 431. A body is never accepted (Content-Length > 0 or chunked: 413), an
 * HTTP major version other than 1 is 505, anything the parser rejects is 400. After each
 * complete request the parser pauses; the connection resumes it (ts_hparse_next) once the
 * response is written, so pipelined requests are answered one at a time, in order.
 * Secrets: the arena holds cookies and tokens; it is wiped on reset and free. */
#ifndef TS_HTTP_REQUEST_H
#define TS_HTTP_REQUEST_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_HTTP_MAX_HEADERS 64

typedef struct ts_hheader {
  uint32_t name_off, name_len, val_off, val_len;
} ts_hheader;

typedef struct ts_hreq {
  char *arena;
  size_t cap, used;
  uint32_t url_off, url_len;
  ts_hheader h[TS_HTTP_MAX_HEADERS];
  unsigned n;
  unsigned method; /* enum http_method */
  unsigned short major, minor;
  bool keep_alive, upgrade;
} ts_hreq;

enum { TS_HP_MORE = 0, TS_HP_REQUEST = 1, TS_HP_ERROR = -1 };

typedef struct ts_hparse {
  http_parser p;
  ts_hreq req;
  int status;    /* TS_HP_ERROR: the HTTP status to answer (400, 413, 431, 505) */
  bool started;  /* a request's first byte was seen */
  bool complete; /* the request in req is complete (parser paused) */
  int last;      /* the last header callback: 0 none, 1 field, 2 value */
} ts_hparse;

/* Returns 0 or -1 (out of memory). */
int ts_hparse_init(ts_hparse *hp, size_t max_header);
void ts_hparse_free(ts_hparse *hp);
/* Feeds bytes; *consumed says how many were used (the rest waits for the next request).
 * TS_HP_MORE: all used, the request is not complete; TS_HP_REQUEST: hp->req is complete;
 * TS_HP_ERROR: answer hp->status and close. */
int ts_hparse_feed(ts_hparse *hp, const char *data, size_t len, size_t *consumed);
/* Forgets the request answered and unpauses the parser for the next one. */
void ts_hparse_next(ts_hparse *hp);

/* The first header named name (case-insensitive), or NULL; its length in *len. */
const char *ts_hreq_header(const ts_hreq *r, const char *name, size_t *len);
/* The i-th header's name/value. */
static inline const char *ts_hreq_url(const ts_hreq *r, size_t *len) {
  *len = r->url_len;
  return r->arena + r->url_off;
}

#endif
