/* client/bench/bench_wire.c: the bytes tessera-bench sends and how it finds reply boundaries,
 * for MessagePack-RPC (tesserad, proto/PROTOCOL.md) and RESP (Redis). Owned by tessera-bench.
 *
 * Requests are assembled per send from pre-encoded parts (no packer, no allocation): RPC is
 * 0x94 0x00, the msgid as a uint32 (0xce + 4 bytes, so the head has a fixed size), then the
 * method and params prefix, then the variable string; RESP is the command head, the key as a
 * bulk string, then the tail. Replies are framed by a small msgpack skipper (counts the items
 * still owed, never builds objects) or by RESP's line/bulk rules. The load generator shares the
 * machine with the server it measures, so it must cost little per request. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static int put(buf *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
  return 0;
}

/* msgpack str header for a string of n bytes into h; returns its size. */
static size_t str_head(uint8_t *h, size_t n) {
  if (n < 32) {
    h[0] = (uint8_t)(0xa0 | n);
    return 1;
  }
  if (n < 256) {
    h[0] = 0xd9;
    h[1] = (uint8_t)n;
    return 2;
  }
  if (n < 65536) {
    h[0] = 0xda;
    h[1] = (uint8_t)(n >> 8);
    h[2] = (uint8_t)n;
    return 3;
  }
  h[0] = 0xdb;
  for (int i = 0; i < 4; i++) h[1 + i] = (uint8_t)(n >> (24 - 8 * i));
  return 5;
}

static int put_str(buf *b, const char *s) {
  uint8_t h[5];
  size_t n = strlen(s);
  return put(b, h, str_head(h, n)) || put(b, s, n);
}

static size_t longest(char **vals, size_t n) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(vals[i]);
    if (l > m) m = l;
  }
  return m;
}

int bench_wire_rpc(bench_wire *w, const char *method, const char *key, char **vals, size_t n) {
  memset(w, 0, sizeof(*w));
  w->proto = BENCH_RPC;
  buf b = {0};
  int bad = put_str(&b, method);
  if (key) {
    bad |= put(&b, "\x91\x81", 2) || put_str(&b, key);
  } else {
    bad |= put(&b, "\x90", 1);
  }
  if (bad) {
    free(b.p);
    return -1;
  }
  w->prefix = b.p;
  w->prefix_len = b.n;
  w->vals = key ? vals : NULL;
  w->n_vals = key ? n : 0;
  w->max_len = 7 + w->prefix_len + 5 + longest(w->vals, w->n_vals);
  return 0;
}

int bench_wire_rpc_fixed(bench_wire *w, const char *method, const char *key, const char *value) {
  char **vals = malloc(sizeof(*vals));
  if (!vals || !(vals[0] = strdup(value))) {
    free(vals);
    return -1;
  }
  return bench_wire_rpc(w, method, key, vals, 1);
}

int bench_wire_resp(bench_wire *w, const char *cmd, char **vals, size_t n, size_t value_len) {
  memset(w, 0, sizeof(*w));
  w->proto = BENCH_RESP;
  buf head = {0}, tail = {0};
  char line[64];
  int args = 1 + (vals ? 1 : 0) + (value_len ? 1 : 0);
  int bad = put(&head, line, (size_t)snprintf(line, sizeof(line), "*%d\r\n$%zu\r\n%s\r\n", args,
                                              strlen(cmd), cmd));
  if (value_len) {
    bad |= put(&tail, line, (size_t)snprintf(line, sizeof(line), "$%zu\r\n", value_len));
    for (size_t i = 0; i < value_len && !bad; i++) bad |= put(&tail, "v", 1);
    bad |= put(&tail, "\r\n", 2);
  }
  if (bad) {
    free(head.p);
    free(tail.p);
    return -1;
  }
  w->prefix = head.p;
  w->prefix_len = head.n;
  w->suffix = tail.p;
  w->suffix_len = tail.n;
  w->vals = vals;
  w->n_vals = vals ? n : 0;
  w->max_len = w->prefix_len + 24 + longest(w->vals, w->n_vals) + w->suffix_len;
  return 0;
}

void bench_wire_free(bench_wire *w) {
  for (size_t i = 0; i < w->n_vals; i++) free(w->vals[i]);
  free(w->vals);
  free(w->prefix);
  free(w->suffix);
  memset(w, 0, sizeof(*w));
}

size_t bench_wire_request(const bench_wire *w, uint8_t *out, uint32_t msgid, uint64_t seq) {
  uint8_t *p = out;
  const char *v = w->n_vals ? w->vals[seq % w->n_vals] : NULL;
  size_t vlen = v ? strlen(v) : 0;
  if (w->proto == BENCH_RPC) {
    *p++ = 0x94;
    *p++ = 0x00;
    *p++ = 0xce;
    *p++ = (uint8_t)(msgid >> 24);
    *p++ = (uint8_t)(msgid >> 16);
    *p++ = (uint8_t)(msgid >> 8);
    *p++ = (uint8_t)msgid;
    memcpy(p, w->prefix, w->prefix_len);
    p += w->prefix_len;
    if (v) {
      p += str_head(p, vlen);
      memcpy(p, v, vlen);
      p += vlen;
    }
    return (size_t)(p - out);
  }
  memcpy(p, w->prefix, w->prefix_len);
  p += w->prefix_len;
  if (v) {
    p += sprintf((char *)p, "$%zu\r\n", vlen);
    memcpy(p, v, vlen);
    p += vlen;
    *p++ = '\r';
    *p++ = '\n';
  }
  memcpy(p, w->suffix, w->suffix_len);
  p += w->suffix_len;
  return (size_t)(p - out);
}

static uint64_t be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* Bytes of the msgpack object at p (0: incomplete, -1: malformed). */
static long mp_len(const uint8_t *p, size_t n) {
  size_t off = 0;
  uint64_t owed = 1;
  while (owed > 0) {
    if (off >= n) return 0;
    uint8_t t = p[off++];
    owed--;
    uint64_t items = 0, skip = 0;
    int lenb = 0; /* length bytes that follow t */
    uint64_t extra = 0; /* bytes after the length (ext type) */
    bool is_map = false;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
    } else if (t <= 0x8f) {
      items = 2u * (t & 0x0f);
    } else if (t <= 0x9f) {
      items = t & 0x0f;
    } else if (t <= 0xbf) {
      skip = t & 0x1f;
    } else {
      switch (t) {
        case 0xc4: case 0xd9: lenb = 1; break;
        case 0xc5: case 0xda: lenb = 2; break;
        case 0xc6: case 0xdb: lenb = 4; break;
        case 0xc7: lenb = 1; extra = 1; break;
        case 0xc8: lenb = 2; extra = 1; break;
        case 0xc9: lenb = 4; extra = 1; break;
        case 0xca: case 0xce: case 0xd2: skip = 4; break;
        case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xd4: skip = 2; break;
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xdc: lenb = 2; break;
        case 0xdd: lenb = 4; break;
        case 0xde: lenb = 2; is_map = true; break;
        case 0xdf: lenb = 4; is_map = true; break;
        default: return -1;
      }
      if (lenb) {
        if (off + (size_t)lenb > n) return 0;
        uint64_t len = be(p + off, lenb);
        off += (size_t)lenb;
        if (t >= 0xdc) items = is_map ? 2 * len : len;
        else skip = len + extra;
      }
    }
    owed += items;
    if (skip > n - off) return 0;
    off += skip;
  }
  return (long)off;
}

static long resp_len(const uint8_t *p, size_t n, bool *err) {
  const uint8_t *nl = memchr(p, '\n', n);
  if (!nl) return 0;
  size_t line = (size_t)(nl - p) + 1;
  switch (p[0]) {
    case '-': *err = true; return (long)line;
    case '+': case ':': return (long)line;
    case '$': {
      long len = atol((const char *)p + 1);
      if (len < 0) return (long)line;
      size_t need = line + (size_t)len + 2;
      return n >= need ? (long)need : 0;
    }
    default: return -1;
  }
}

long bench_wire_reply(const bench_wire *w, const uint8_t *p, size_t n, uint32_t *msgid, bool *err) {
  *err = false;
  if (n == 0) return 0;
  if (w->proto == BENCH_RESP) return resp_len(p, n, err);
  long len = mp_len(p, n);
  if (len <= 0) return len;
  /* [1, msgid, error, result]: the daemon packs the msgid in its shortest form */
  if (len < 4 || p[0] != 0x94 || p[1] != 0x01) return -1;
  size_t off = 2;
  uint8_t t = p[off++];
  if (t <= 0x7f) *msgid = t;
  else if (t == 0xcc) *msgid = (uint32_t)be(p + off, 1), off += 1;
  else if (t == 0xcd) *msgid = (uint32_t)be(p + off, 2), off += 2;
  else if (t == 0xce) *msgid = (uint32_t)be(p + off, 4), off += 4;
  else return -1;
  if (off >= (size_t)len) return -1;
  *err = p[off] != 0xc0;
  return len;
}
