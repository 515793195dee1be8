/* tests/fuzz/fuzz_http.c: the HTTP edge's request parser path (sidecar/http/request.h) over
 * a byte stream, as a connection receives it (pipelined requests, garbage, cut anywhere).
 *
 * The first input byte picks the header limit (small, the default 16 KiB); the rest is the
 * stream. It is parsed twice the way hconn.c drives the parser (feed, take a complete
 * request, ts_hparse_next, feed the rest): once all bytes at once, once in splits drawn from
 * the input. Properties:
 *   - both give the same outcome: the same requests (method, version, URL, every header name
 *     and value, keep-alive) in the same order, then an error in both or in neither; the
 *     same status, except that a request both malformed and too large may be 400 or 431
 *     depending on where the reads cut it (which limit trips first);
 *   - a request's URL and headers lie inside the arena, which never grows past the limit;
 *   - an error is one of the statuses the connection answers (400, 413, 431, 505);
 *   - a parser never consumes more than it was given.
 * As hconn.c does, nothing is parsed after a request that upgrades (Upgrade, CONNECT): the
 * connection answers it and closes. */
#include "fuzz.h"

#include "http/request.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return sodium_init() < 0;
}

/* A digest of one outcome: the requests and the final status, as bytes. */
typedef struct outcome {
  uint8_t *p;
  size_t len, cap;
} outcome;

static void put(outcome *o, const void *data, size_t n) {
  if (o->len + n > o->cap) {
    size_t ncap = o->cap ? o->cap * 2 : 4096;
    while (ncap < o->len + n) ncap *= 2;
    o->p = realloc(o->p, ncap);
    FUZZ_CHECK(o->p != NULL);
    o->cap = ncap;
  }
  memcpy(o->p + o->len, data, n);
  o->len += n;
}

static void record(outcome *o, const ts_hreq *r) {
  FUZZ_CHECK(r->used <= r->cap);
  FUZZ_CHECK((size_t)r->url_off + r->url_len <= r->used);
  uint32_t head[4] = {r->method, r->major, r->minor, r->keep_alive};
  put(o, head, sizeof(head));
  put(o, &r->url_len, sizeof(r->url_len));
  put(o, r->arena + r->url_off, r->url_len);
  put(o, &r->n, sizeof(r->n));
  for (unsigned i = 0; i < r->n; i++) {
    const ts_hheader *h = &r->h[i];
    FUZZ_CHECK((size_t)h->name_off + h->name_len <= r->used);
    FUZZ_CHECK((size_t)h->val_off + h->val_len <= r->used);
    put(o, &h->name_len, sizeof(h->name_len));
    put(o, r->arena + h->name_off, h->name_len);
    put(o, &h->val_len, sizeof(h->val_len));
    put(o, r->arena + h->val_off, h->val_len);
  }
}

/* Parses data in pieces: cut[i] bytes at a time (cycling), or everything when n_cut == 0. */
static int parse(const uint8_t *data, size_t size, size_t max_header, const uint8_t *cut,
                 size_t n_cut, outcome *o) {
  ts_hparse hp;
  FUZZ_CHECK(ts_hparse_init(&hp, max_header) == 0);
  uint8_t *in = malloc(size + 1); /* what the connection holds, not yet parsed */
  size_t in_len = 0, fed = 0, k = 0;
  int status = 0;
  for (;;) {
    size_t used = 0;
    int rc = ts_hparse_feed(&hp, (const char *)in, in_len, &used);
    FUZZ_CHECK(used <= in_len);
    memmove(in, in + used, in_len - used);
    in_len -= used;
    if (rc == TS_HP_ERROR) {
      status = hp.status;
      FUZZ_CHECK(status == 400 || status == 413 || status == 431 || status == 505);
      break;
    }
    if (rc == TS_HP_REQUEST) {
      record(o, &hp.req);
      if (hp.req.upgrade) break; /* hconn.c answers it and closes: nothing after is HTTP */
      ts_hparse_next(&hp);
      continue;
    }
    if (fed == size) break; /* the stream ended mid-request (or cleanly) */
    size_t n = n_cut ? (size_t)(cut[k++ % n_cut] % 64) + 1 : size - fed;
    if (n > size - fed) n = size - fed;
    memcpy(in + in_len, data + fed, n);
    in_len += n;
    fed += n;
  }
  bool error = status != 0;
  put(o, &error, sizeof(error));
  free(in);
  ts_hparse_free(&hp);
  return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t max_header = data[0] & 1 ? 16384 : 64 + data[0];
  data++;
  size--;
  outcome whole = {0}, split = {0};
  int s1 = parse(data, size, max_header, NULL, 0, &whole);
  const uint8_t *cut = size ? data : (const uint8_t *)"\x01";
  int s2 = parse(data, size, max_header, cut, size ? size : 1, &split);
  FUZZ_CHECK(whole.len == split.len && memcmp(whole.p, split.p, whole.len) == 0);
  FUZZ_CHECK(s1 == s2 || ((s1 == 400 || s1 == 431) && (s2 == 400 || s2 == 431)));
  free(whole.p);
  free(split.p);
  return 0;
}
