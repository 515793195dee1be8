/* sidecar/http/request.c: the request parser's callbacks and limits (see request.h).
 *
 * Owner: the HTTP edge. Header fields and values may arrive in pieces (a read boundary falls
 * anywhere): a piece of the same kind as the last one extends it, since the arena is written
 * strictly in order. */
#include "request.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static ts_hparse *hp_of(http_parser *p) { return (ts_hparse *)p->data; }

/* Appends at to the arena; fails with 431 when it would not fit. */
static int append(ts_hparse *hp, const char *at, size_t len) {
  ts_hreq *r = &hp->req;
  if (len > r->cap - r->used) {
    hp->status = 431;
    return -1;
  }
  memcpy(r->arena + r->used, at, len);
  r->used += len;
  return 0;
}

static int on_begin(http_parser *p) {
  hp_of(p)->started = true;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  ts_hparse *hp = hp_of(p);
  if (hp->req.url_len == 0) hp->req.url_off = (uint32_t)hp->req.used;
  if (append(hp, at, len)) return -1;
  hp->req.url_len += (uint32_t)len;
  return 0;
}

static int on_field(http_parser *p, const char *at, size_t len) {
  ts_hparse *hp = hp_of(p);
  ts_hreq *r = &hp->req;
  if (hp->last != 1) { /* a new header */
    if (r->n == TS_HTTP_MAX_HEADERS) {
      hp->status = 431;
      return -1;
    }
    r->h[r->n++] = (ts_hheader){(uint32_t)r->used, 0, (uint32_t)r->used, 0};
    hp->last = 1;
  }
  if (append(hp, at, len)) return -1;
  r->h[r->n - 1].name_len += (uint32_t)len;
  r->h[r->n - 1].val_off = (uint32_t)r->used;
  return 0;
}

static int on_value(http_parser *p, const char *at, size_t len) {
  ts_hparse *hp = hp_of(p);
  ts_hreq *r = &hp->req;
  if (r->n == 0) return -1;
  hp->last = 2;
  if (append(hp, at, len)) return -1;
  r->h[r->n - 1].val_len += (uint32_t)len;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  ts_hparse *hp = hp_of(p);
  if (p->http_major != 1) {
    hp->status = 505;
    return -1;
  }
  /* no body, ever: Content-Length > 0 or chunked is refused before a byte of it is read */
  if ((p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX)) {
    hp->status = 413;
    return -1;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  (void)at;
  (void)len;
  hp_of(p)->status = 413;
  return -1;
}

static int on_complete(http_parser *p) {
  ts_hparse *hp = hp_of(p);
  ts_hreq *r = &hp->req;
  r->method = p->method;
  r->major = p->http_major;
  r->minor = p->http_minor;
  r->keep_alive = http_should_keep_alive(p) != 0;
  r->upgrade = p->upgrade != 0;
  hp->complete = true;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_begin,
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

static void reset(ts_hparse *hp) {
  ts_hreq *r = &hp->req;
  if (r->arena) sodium_memzero(r->arena, r->used);
  r->used = 0;
  r->url_off = r->url_len = 0;
  r->n = 0;
  hp->status = 0;
  hp->started = hp->complete = false;
  hp->last = 0;
}

int ts_hparse_init(ts_hparse *hp, size_t max_header) {
  memset(hp, 0, sizeof(*hp));
  hp->req.arena = malloc(max_header);
  if (!hp->req.arena) return -1;
  hp->req.cap = max_header;
  http_parser_init(&hp->p, HTTP_REQUEST);
  hp->p.data = hp;
  return 0;
}

void ts_hparse_free(ts_hparse *hp) {
  if (!hp->req.arena) return;
  sodium_memzero(hp->req.arena, hp->req.cap);
  free(hp->req.arena);
  hp->req.arena = NULL;
}

int ts_hparse_feed(ts_hparse *hp, const char *data, size_t len, size_t *consumed) {
  *consumed = 0;
  if (hp->complete) return TS_HP_REQUEST;
  if (hp->status) return TS_HP_ERROR;
  if (len == 0) return TS_HP_MORE;
  size_t n = http_parser_execute(&hp->p, &settings, data, len);
  *consumed = n;
  enum http_errno e = HTTP_PARSER_ERRNO(&hp->p);
  if (hp->complete) return TS_HP_REQUEST;
  if (hp->status) return TS_HP_ERROR;
  if (e != HPE_OK) {
    hp->status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
    return TS_HP_ERROR;
  }
  if (hp->p.upgrade) { /* no request completes after an upgrade: http_parser stops here */
    hp->status = 400;
    return TS_HP_ERROR;
  }
  return TS_HP_MORE;
}

void ts_hparse_next(ts_hparse *hp) {
  reset(hp);
  http_parser_pause(&hp->p, 0);
}

const char *ts_hreq_header(const ts_hreq *r, const char *name, size_t *len) {
  size_t nl = strlen(name);
  for (unsigned i = 0; i < r->n; i++) {
    const ts_hheader *h = &r->h[i];
    if (h->name_len == nl && strncasecmp(r->arena + h->name_off, name, nl) == 0) {
      *len = h->val_len;
      return r->arena + h->val_off;
    }
  }
  *len = 0;
  return NULL;
}
