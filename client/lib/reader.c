/* client/lib/reader.c: the read side of a tessera_client (see internal.h for the design).
 *
 * ts_client_read_once does one recv() into the input buffer, then cuts every complete message
 * out of it with the pre-scan and dispatches it:
 *   response      -> fills its pending in-flight entry (or is dropped when there is none);
 *   notification  -> on_notification: converted to JSON and queued (bounded, see tessera.h).
 * Nothing else is ever kept, so memory is bounded by the in-flight table, one reply and the
 * notification queue's byte and count limits.
 *
 * Buffer invariant: after processing, [in_start, in_len) holds only the unfinished head of one
 * message, which the scan has already checked to be shorter than TS_CLIENT_MAX_REPLY; so
 * TS_CLIENT_MAX_REPLY + READ_CHUNK bytes of buffer always leave room to read.
 *
 * Secrets: replies carry sids and tokens, so consumed bytes are wiped (when the buffer is
 * emptied or compacted), growing copies and wipes the old block, and tessera_close wipes
 * what is left (proto/wipe.h); only bytes that were read are wiped. */
#include "internal.h"

#include "error.h"
#include "json.h"
#include "rpc.h"
#include "wipe.h"

#include <errno.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define READ_CHUNK ((size_t)64 << 10)   /* first buffer size and the least room we read into */
#define READ_MIN ((size_t)4 << 10)      /* grow when less than this is free */
#define BUFFER_KEEP ((size_t)256 << 10) /* an empty buffer larger than this is given back */

static const ts_scan_limits reply_limits = {TS_CLIENT_MAX_REPLY, TS_CLIENT_MAX_DEPTH};

int ts_client_fail_read(tessera_client *c, int err) {
  if (!c->rd_err) c->rd_err = err;
  if (!c->wr_err) c->wr_err = c->rd_err;
  return c->rd_err;
}

/* Copies a msgpack str into dst[cap] NUL-terminated, cut at a UTF-8 character boundary. */
static void copy_truncated(char *dst, size_t cap, const msgpack_object_str *s) {
  size_t n = s->size;
  if (n >= cap) {
    n = cap - 1;
    /* s->ptr[n] is the first byte left out: if it continues a character, drop that character. */
    while (n > 0 && ((unsigned char)s->ptr[n] & 0xc0) == 0x80) n--;
  }
  memcpy(dst, s->ptr, n);
  dst[n] = '\0';
}

/* Fills r from a decoded response. Never fails the connection: a reply that cannot be
 * understood becomes TESSERA_EPROTO for its caller only (the stream is still in step). */
static void fill_reply(ts_reply *r, const ts_rpc_msg *m) {
  r->ready = true;
  if (m->err->type == MSGPACK_OBJECT_NIL) {
    r->result = ts_mp_to_json(m->result);
    r->rc = r->result ? 0 : TESSERA_EPROTO;
    return;
  }
  const msgpack_object *e = m->err;
  if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
      e->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
      e->via.array.ptr[1].type != MSGPACK_OBJECT_STR) {
    r->rc = TESSERA_EPROTO; /* PROTOCOL.md: error is nil or [code, message], both str */
    return;
  }
  copy_truncated(r->err.code, sizeof(r->err.code), &e->via.array.ptr[0].via.str);
  copy_truncated(r->err.message, sizeof(r->err.message), &e->via.array.ptr[1].via.str);
  r->rc = TESSERA_EREMOTE;
}

void ts_note_free(ts_note *n) {
  if (!n) return;
  json_decref(n->args);
  free(n);
}

ts_note *ts_client_take_note(tessera_client *c) {
  ts_note *n = c->notes_head;
  if (!n) return NULL;
  c->notes_head = n->next;
  if (!c->notes_head) c->notes_tail = NULL;
  c->notes_count--;
  c->notes_bytes -= n->bytes;
  n->next = NULL;
  return n;
}

/* A server notification [2, method, [map, ...]] of n wire bytes: converted to JSON at once (so
 * the msgpack zone is freed with the message) and appended to the queue. One that does not
 * fit, cannot be converted or finds no memory is dropped and remembered in notes_lost; the
 * stream itself stays in step, so this never fails the connection. */
static int on_notification(tessera_client *c, const ts_rpc_msg *m, size_t n) {
  if (c->notes_count >= TESSERA_NOTIFY_QUEUE_MAX ||
      n > TESSERA_NOTIFY_QUEUE_BYTES - c->notes_bytes) {
    c->notes_lost = true;
    return 0;
  }
  ts_note *note = calloc(1, sizeof(*note));
  if (note) note->args = ts_mp_to_json(m->args);
  if (!note || !note->args) {
    ts_note_free(note);
    c->notes_lost = true;
    return 0;
  }
  msgpack_object_str name = {m->method_len, m->method};
  copy_truncated(note->method, sizeof(note->method), &name);
  note->bytes = n;
  if (c->notes_tail) c->notes_tail->next = note;
  else c->notes_head = note;
  c->notes_tail = note;
  c->notes_count++;
  c->notes_bytes += n;
  return 0;
}

/* One complete message of n bytes. Returns 0 or a sticky read error. */
static int dispatch_message(tessera_client *c, const uint8_t *p, size_t n) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  int rc = 0;
  msgpack_unpack_return ur = msgpack_unpack_next(&u, (const char *)p, n, &off);
  if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
    rc = ts_client_fail_read(c, TESSERA_ENOMEM); /* the message is lost: out of step */
    goto done;
  }
  ts_rpc_msg m;
  if (ur != MSGPACK_UNPACK_SUCCESS || off != n || ts_rpc_decode_reply(&u.data, &m) != 0) {
    rc = ts_client_fail_read(c, TESSERA_EPROTO);
    goto done;
  }
  if (m.kind == TS_RPC_NOTIFICATION) {
    rc = on_notification(c, &m, n);
    goto done;
  }
  ts_reply *r = ts_inflight_find(&c->inflight, m.msgid);
  if (r && !r->ready) fill_reply(r, &m); /* else: unknown, abandoned or duplicate: dropped */
done:
  msgpack_unpacked_destroy(&u);
  return rc;
}

/* Dispatches every complete message in the buffer. Returns 0 or a sticky read error. */
static int process_input(tessera_client *c) {
  while (c->in_start < c->in_len) {
    const uint8_t *p = c->in + c->in_start;
    int n = ts_scan_feed(&c->scan, p, c->in_len - c->in_start, &reply_limits);
    if (n < 0) return ts_client_fail_read(c, TESSERA_EPROTO);
    if (n == 0) break;
    int rc = dispatch_message(c, p, (size_t)n);
    if (rc < 0) return rc;
    c->in_start += (size_t)n;
    ts_scan_init(&c->scan);
  }
  if (c->in_start == c->in_len) {
    sodium_memzero(c->in, c->in_len);
    c->in_start = c->in_len = 0;
    if (c->in_cap > BUFFER_KEEP) { /* a big reply came and went: give the memory back */
      free(c->in);
      c->in = NULL;
      c->in_cap = 0;
    }
  }
  return 0;
}

/* Makes at least READ_MIN bytes of room after in_len. Returns 0 or TESSERA_ENOMEM. */
static int reserve_input(tessera_client *c) {
  if (c->in_start > 0) {
    /* [in_len - in_start, in_len) is then stale: consumed bytes, or a copy of the ones moved. */
    memmove(c->in, c->in + c->in_start, c->in_len - c->in_start);
    sodium_memzero(c->in + c->in_len - c->in_start, c->in_start);
    c->in_len -= c->in_start;
    c->in_start = 0;
  }
  if (c->in_cap - c->in_len >= READ_MIN) return 0;
  size_t cap = c->in_cap ? c->in_cap * 2 : READ_CHUNK;
  if (cap > TS_CLIENT_MAX_REPLY + READ_CHUNK) cap = TS_CLIENT_MAX_REPLY + READ_CHUNK;
  if (cap - c->in_len < READ_MIN) return ts_client_fail_read(c, TESSERA_EPROTO); /* unreachable */
  if (ts_wipe_grow(&c->in, &c->in_cap, c->in_len, cap) != 0)
    return TESSERA_ENOMEM; /* not sticky: nothing was lost, a later call may retry */
  return 0;
}

int ts_client_read_once(tessera_client *c) {
  if (c->rd_err) return c->rd_err;
  int rc = reserve_input(c);
  if (rc < 0) return rc;
  ssize_t k;
  do {
    k = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
  } while (k < 0 && errno == EINTR);
  if (k < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return ts_client_fail_read(c, errno == ECONNRESET ? TESSERA_ECLOSED : TESSERA_EIO);
  }
  if (k == 0) return ts_client_fail_read(c, TESSERA_ECLOSED);
  c->in_len += (size_t)k;
  rc = process_input(c);
  return rc < 0 ? rc : 1;
}
