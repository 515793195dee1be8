/* sidecar/store/redis/feed.c: the revocation feed on a Redis Stream (backend.h "the feed").
 *
 * Every write that announces a revocation XADDs to t:{rev}:feed inside its function (MINID ~
 * trims what no longer is in force) and sets t:{rev}:last to the id. Positions are stream ids
 * {ms, seq}. A dedicated connection (the feed connection) loops on XREAD BLOCK from the last
 * id it saw and tells events.c (on_published) whenever entries arrived, from this sidecar or
 * any other: that is the fan-out. feed_read is XRANGE with an exclusive start on the commands
 * connection, filtered by the reader's now.
 *
 * Cursors: "r<store id: 8 hex>-<ms: 12 hex>-<seq: 16 hex>" (39 chars: fixed widths, so they
 * rise in byte order like the stream ids they name). The store id is random,
 * kept in t:{rev}:id (SET NX at every connect): a Redis that lost its data gets a new one, and
 * older cursors then ask for a reset. A cursor is resumable when it is of this store, not past
 * the last id, and not older than the highest MINID a function applied (t:{rev}:trimmed): an
 * entry before that may be gone. The position {0, 0} (and "0") is the start: always
 * resumable, like the LMDB backend. */
#include "redis.h"

#include "error.h"
#include "log.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define READ_BLOCK_MS 1000
#define READ_COUNT "512"

bool rb_stream_id(const char *s, size_t len, ts_feed_pos *pos) {
  char buf[48], *end;
  if (len == 0 || len >= sizeof(buf)) return false;
  memcpy(buf, s, len);
  buf[len] = 0;
  if (buf[0] < '0' || buf[0] > '9') return false;
  pos->major = strtoull(buf, &end, 10);
  if (*end == 0) {
    pos->minor = 0;
    return true;
  }
  if (*end != '-' || end[1] < '0' || end[1] > '9') return false;
  pos->minor = strtoull(end + 1, &end, 10);
  return *end == 0;
}

static int format_id(char *out, ts_feed_pos p) {
  return snprintf(out, 48, "%llu-%llu", (unsigned long long)p.major, (unsigned long long)p.minor);
}

void rb_published(rb *b, const redisReply *sid) {
  ts_feed_pos pos;
  if (!sid || sid->type != REDIS_REPLY_STRING || !rb_stream_id(sid->str, sid->len, &pos)) return;
  if (b->base.on_published) b->base.on_published(b->base.published_ctx, pos);
}

/* ---- cursors -------------------------------------------------------------------------------- */

static void cursor_format(ts_backend *base, ts_feed_pos pos, char out[TS_CURSOR_MAX + 1]) {
  rb *b = (rb *)base;
  /* Fixed widths, so one store's cursors rise in byte order as its stream ids do. */
  snprintf(out, TS_CURSOR_MAX + 1, "r%s-%012llx-%016llx",
           b->store_id[0] ? b->store_id : "00000000", (unsigned long long)pos.major,
           (unsigned long long)pos.minor);
}

static bool hex_u64(const char *s, size_t n, uint64_t *v) {
  if (n == 0 || n > 16) return false;
  *v = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (d < 0) return false;
    *v = (*v << 4) | (uint64_t)d;
  }
  return true;
}

/* "r<8 hex>-<hex>-<hex>" into its store id and position (any width of 1..16 digits: cursors
 * made before the widths were fixed still resume). */
static bool cursor_parse(const char *s, size_t len, char id[9], ts_feed_pos *pos) {
  if (len < 13 || len > TS_CURSOR_MAX || s[0] != 'r' || s[9] != '-') return false;
  for (int i = 0; i < 8; i++) {
    char ch = s[1 + i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
    id[i] = ch;
  }
  id[8] = 0;
  const char *a = s + 10, *end = s + len;
  const char *dash = memchr(a, '-', (size_t)(end - a));
  return dash && hex_u64(a, (size_t)(dash - a), &pos->major) &&
         hex_u64(dash + 1, (size_t)(end - dash - 1), &pos->minor);
}

typedef struct head_op {
  rb *b;
  ts_resume_fn done;
  void *ctx;
  bool has_since;
  char since[TS_CURSOR_MAX + 1];
  size_t since_len;
} head_op;

/* {store id, last id, trimmed ms} from ts_feed_head: stores the id. */
static bool read_head(rb *b, const redisReply *r, ts_feed_pos *last, uint64_t *trimmed) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return false;
  const redisReply *id = r->element[0], *l = r->element[1], *t = r->element[2];
  if (id->type != REDIS_REPLY_STRING || id->len != 8 || l->type != REDIS_REPLY_STRING ||
      t->type != REDIS_REPLY_STRING || !rb_stream_id(l->str, l->len, last))
    return false;
  if (b->store_id[0] && memcmp(b->store_id, id->str, 8) != 0)
    ts_log(TS_LOG_WARN, "the redis store has a new id (its data was lost or replaced): "
                        "subscribers' cursors are reset", NULL);
  memcpy(b->store_id, id->str, 8);
  b->store_id[8] = 0;
  *trimmed = strtoull(t->str, NULL, 10);
  return true;
}

static void send_head(rb *b, rb_reply_fn fn, void *ctx) {
  uint8_t raw[4];
  char fresh[9];
  randombytes_buf(raw, sizeof(raw));
  rb_hex(fresh, raw, sizeof(raw));
  const char *argv[] = {"FCALL", "ts_feed_head", "3", RB_KEY_ID, RB_KEY_LAST, RB_KEY_TRIMMED,
                        fresh};
  size_t lens[7];
  for (int i = 0; i < 7; i++) lens[i] = strlen(argv[i]);
  rb_command(&b->cmd, fn, ctx, 7, argv, lens, 0);
}

static void on_head_refreshed(void *ctx, redisReply *r) {
  rb *b = ctx;
  ts_feed_pos last;
  uint64_t trimmed;
  if (r && !read_head(b, r, &last, &trimmed))
    ts_log(TS_LOG_WARN, "redis: unexpected answer to ts_feed_head", NULL);
}

void rb_feed_head_refresh(rb *b) { send_head(b, on_head_refreshed, b); }

static void on_resume(void *ctx, redisReply *r) {
  head_op *o = ctx;
  ts_feed_pos latest = {0, 0}, after = {0, 0}, pos;
  uint64_t trimmed = 0;
  if (!read_head(o->b, r, &latest, &trimmed)) {
    o->done(o->ctx, TS_EUNAVAILABLE, false, after, latest);
    free(o);
    return;
  }
  bool ok = true;
  char id[9];
  if (!o->has_since) {
    after = latest;
  } else if (o->since_len == 1 && o->since[0] == '0') {
    after = (ts_feed_pos){0, 0};
  } else if (!cursor_parse(o->since, o->since_len, id, &pos) ||
             strcmp(id, o->b->store_id) != 0 || ts_feed_pos_cmp(pos, latest) > 0) {
    ok = false;
  } else if (pos.major == 0 && pos.minor == 0) {
    after = pos;
  } else if (pos.major < trimmed) {
    ok = false; /* entries after it may have been trimmed */
  } else {
    after = pos;
  }
  o->done(o->ctx, 0, ok, ok ? after : (ts_feed_pos){0, 0}, latest);
  free(o);
}

static void feed_resume(ts_backend *base, const char *since, size_t since_len, ts_resume_fn done,
                        void *ctx) {
  rb *b = (rb *)base;
  head_op *o = calloc(1, sizeof(*o));
  if (!o) {
    done(ctx, TS_ENOMEM, false, (ts_feed_pos){0, 0}, (ts_feed_pos){0, 0});
    return;
  }
  o->b = b;
  o->done = done;
  o->ctx = ctx;
  if (since) {
    o->has_since = true;
    o->since_len = since_len > TS_CURSOR_MAX ? TS_CURSOR_MAX + 1 : since_len;
    memcpy(o->since, since, o->since_len > TS_CURSOR_MAX ? TS_CURSOR_MAX : o->since_len);
  }
  send_head(b, on_resume, o);
}

/* ---- reading -------------------------------------------------------------------------------- */

/* One stream entry [id, [field, value, ...]] into e; false if it is not one of ours. */
static bool entry_of(const redisReply *x, ts_feed_entry *e) {
  if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
      x->element[0]->type != REDIS_REPLY_STRING ||
      !rb_stream_id(x->element[0]->str, x->element[0]->len, &e->pos))
    return false;
  const redisReply *f = x->element[1];
  if (f->type != REDIS_REPLY_ARRAY || f->elements % 2) return false;
  bool k = false, i = false;
  e->until = e->before = 0;
  for (size_t j = 0; j + 1 < f->elements; j += 2) {
    const redisReply *n = f->element[j], *v = f->element[j + 1];
    if (n->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || n->len != 1) continue;
    switch (n->str[0]) {
    case 'k': e->kind = v->len == 1 ? v->str[0] : 0, k = true; break;
    case 'i':
      if (v->len > TS_FEED_ID_MAX) return false;
      memcpy(e->id, v->str, v->len);
      e->id[v->len] = 0;
      e->id_len = v->len;
      i = true;
      break;
    case 'u': e->until = strtoll(v->str, NULL, 10); break;
    case 'b': e->before = strtoll(v->str, NULL, 10); break;
    }
  }
  return k && i && ts_feed_kind_name(e->kind) != NULL;
}

typedef struct read_op {
  ts_feed_fn done;
  void *ctx;
  ts_feed_pos after;
  int64_t now;
  size_t max;
} read_op;

static void on_range(void *ctx, redisReply *r) {
  read_op *o = ctx;
  if (!r || r->type != REDIS_REPLY_ARRAY) {
    o->done(o->ctx, TS_EUNAVAILABLE, NULL, 0, o->after, false);
    free(o);
    return;
  }
  ts_feed_entry *es = r->elements ? malloc(r->elements * sizeof(*es)) : NULL;
  if (r->elements && !es) {
    o->done(o->ctx, TS_ENOMEM, NULL, 0, o->after, false);
    free(o);
    return;
  }
  size_t n = 0;
  ts_feed_pos last = o->after;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *x = r->element[i];
    if (x->type == REDIS_REPLY_ARRAY && x->elements >= 1 &&
        x->element[0]->type == REDIS_REPLY_STRING)
      rb_stream_id(x->element[0]->str, x->element[0]->len, &last); /* skipped, not a stop */
    if (entry_of(x, &es[n]) && es[n].until >= o->now) n++;
  }
  o->done(o->ctx, 0, es, n, last, r->elements == o->max);
  free(es);
  free(o);
}

static void feed_read(ts_backend *base, ts_feed_pos after, int64_t now, size_t max,
                      ts_feed_fn done, void *ctx) {
  rb *b = (rb *)base;
  read_op *o = calloc(1, sizeof(*o));
  if (!o || max == 0) {
    free(o);
    done(ctx, o ? 0 : TS_ENOMEM, NULL, 0, after, false);
    return;
  }
  o->done = done;
  o->ctx = ctx;
  o->after = after;
  o->now = now;
  o->max = max;
  char from[50], count[24];
  if (after.major == 0 && after.minor == 0) snprintf(from, sizeof(from), "-");
  else from[0] = '(', format_id(from + 1, after);
  snprintf(count, sizeof(count), "%zu", max);
  const char *argv[] = {"XRANGE", RB_KEY_FEED, from, "+", "COUNT", count};
  size_t lens[6];
  for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
  rb_command(&b->cmd, on_range, o, 6, argv, lens, 0);
}

/* ---- key-set changes ------------------------------------------------------------------------ */

static void on_keys_announced(void *ctx, redisReply *r) {
  (void)ctx;
  if (rb_fcall_status(r) != 0)
    ts_log(TS_LOG_WARN, "the key change could not be announced to the other sidecars: reload "
                        "them (SIGHUP)", NULL);
}

static void keys_changed(ts_backend *base, int64_t keys_version) {
  rb *b = (rb *)base;
  rb_args a;
  rb_args_init(&a);
  rb_arg_str(&a, "FCALL");
  rb_arg_str(&a, "ts_keys_changed");
  rb_arg_str(&a, "3");
  rb_arg_str(&a, RB_KEY_FEED);
  rb_arg_str(&a, RB_KEY_LAST);
  rb_arg_str(&a, RB_KEY_TRIMMED);
  rb_arg_int(&a, keys_version);
  rb_arg_int(&a, (int64_t)time(NULL));
  rb_arg_minid(&a, b);
  rb_send(b, &a, on_keys_announced, NULL);
}

/* Whether a stream entry [id, [field, value, ...]] announces a key-set change (kind K). */
static bool is_keys_entry(const redisReply *x) {
  if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 || x->element[1]->type != REDIS_REPLY_ARRAY)
    return false;
  const redisReply *f = x->element[1];
  for (size_t j = 0; j + 1 < f->elements; j += 2)
    if (f->element[j]->type == REDIS_REPLY_STRING && f->element[j]->len == 1 &&
        f->element[j]->str[0] == 'k')
      return f->element[j + 1]->type == REDIS_REPLY_STRING && f->element[j + 1]->len == 1 &&
             f->element[j + 1]->str[0] == 'K';
  return false;
}

/* ---- the reader: XREAD BLOCK on the feed connection ----------------------------------------- */

static void read_next(rb *b);

static void on_read(void *ctx, redisReply *r) {
  rb *b = ctx;
  b->reading = false;
  if (b->closing) return;
  if (!r) { /* dropped, or about to (deadline); an error reply: drop it. on_up restarts */
    rb_conn_drop_later(&b->feed);
    return;
  }
  /* [[stream, [[id, fields], ...]]], or nil when BLOCK ran out */
  if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
      r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
    const redisReply *es = r->element[0]->element[1];
    ts_feed_pos pos;
    bool keys = false;
    for (size_t i = 0; es->type == REDIS_REPLY_ARRAY && i < es->elements; i++)
      keys = keys || is_keys_entry(es->element[i]);
    if (keys && b->base.on_keys) b->base.on_keys(b->base.keys_ctx); /* its own too: no change */
    if (es->type == REDIS_REPLY_ARRAY && es->elements > 0) {
      const redisReply *x = es->element[es->elements - 1];
      if (x->type == REDIS_REPLY_ARRAY && x->elements >= 1 &&
          x->element[0]->type == REDIS_REPLY_STRING &&
          rb_stream_id(x->element[0]->str, x->element[0]->len, &pos)) {
        b->read_pos = pos;
        if (b->base.on_published) b->base.on_published(b->base.published_ctx, pos);
      }
    }
  }
  read_next(b);
}

static void read_next(rb *b) {
  if (b->reading || b->closing || b->feed.state != RB_UP) return;
  char from[48], block[16];
  format_id(from, b->read_pos);
  snprintf(block, sizeof(block), "%d", READ_BLOCK_MS);
  const char *argv[] = {"XREAD", "COUNT", READ_COUNT, "BLOCK", block, "STREAMS", RB_KEY_FEED,
                        from};
  size_t lens[8];
  for (int i = 0; i < 8; i++) lens[i] = strlen(argv[i]);
  b->reading = true;
  rb_command(&b->feed, on_read, b, 8, argv, lens, READ_BLOCK_MS);
}

static void on_start(void *ctx, redisReply *r) {
  rb *b = ctx;
  ts_feed_pos last = {0, 0};
  b->reading = false;
  if (b->closing) return;
  if (!r) {
    rb_conn_drop_later(&b->feed);
    return;
  }
  if (r->type == REDIS_REPLY_STRING) rb_stream_id(r->str, r->len, &last);
  /* First connect: from the latest. After a reconnect: from where it stopped (entries made
   * meanwhile are read now), unless the stream went back (a new store): then from its end. */
  if (b->read_pos.major == 0 || ts_feed_pos_cmp(last, b->read_pos) < 0) b->read_pos = last;
  else if (b->base.on_published) b->base.on_published(b->base.published_ctx, last);
  read_next(b);
}

void rb_feed_reader_up(void *ctx) {
  rb *b = ctx;
  if (b->reading || b->closing) return;
  b->reading = true;
  const char *argv[] = {"GET", RB_KEY_LAST};
  size_t lens[2] = {3, strlen(RB_KEY_LAST)};
  rb_command(&b->feed, on_start, b, 2, argv, lens, 0);
}

void rb_feed_ops(ts_backend_ops *o) {
  o->keys_changed = keys_changed;
  o->feed_resume = feed_resume;
  o->feed_read = feed_read;
  o->cursor_format = cursor_format;
}
