/* sidecar/internal.c: internal calls over a pseudo-connection (see internal.h).
 *
 * Owner: the HTTP edge. Each call gets a msgid from a counter and a pending entry (callback,
 * ctx); the request is packed [0, msgid, method, [params]] and handed to ts_dispatch_message
 * like bytes read from a socket. dispatch.c sends a reply made on the pseudo-connection here
 * (ts_internal_reply) instead of writing it; we match it by msgid and run the callback.
 * Request bytes hold sids and tokens: they are built in a wiping buffer and wiped after
 * dispatch (handlers copy what an asynchronous completion needs). */
#include "internal.h"

#include "error.h"
#include "log.h"
#include "rpc.h"
#include "wipe.h"

#include <stdlib.h>
#include <string.h>

typedef struct pending {
  struct pending *next;
  uint32_t msgid;
  ts_internal_cb cb;
  void *ctx;
} pending;

typedef struct ts_internal {
  ts_conn conn; /* never read from, never written to, never in the server's list */
  pending *head;
  uint32_t next_msgid;
} ts_internal;

int ts_internal_init(ts_server *s) {
  if (s->internal) return 0;
  ts_internal *in = calloc(1, sizeof(*in));
  if (!in) return TS_ENOMEM;
  in->conn.server = s;
  in->conn.internal = true;
  in->conn.uid = UINT32_MAX; /* no peer: never an admin */
  in->conn.admin = false;
  in->next_msgid = 1;
  s->internal = in;
  return 0;
}

void ts_internal_free(ts_server *s) {
  ts_internal *in = s->internal;
  if (!in) return;
  while (in->head) {
    pending *p = in->head;
    in->head = p->next;
    free(p);
  }
  free(in);
  s->internal = NULL;
}

int ts_internal_err_of_code(const char *code, size_t len) {
  static const int codes[] = {TS_EBAD_REQUEST, TS_EUNKNOWN_METHOD, TS_EUNAUTHENTICATED,
                              TS_EEXPIRED,     TS_EREVOKED,        TS_EREUSED,
                              TS_EFORBIDDEN,   TS_EOVERLOADED,     TS_EUNAVAILABLE};
  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    const char *c = ts_err_code(codes[i]);
    if (strlen(c) == len && memcmp(c, code, len) == 0) return codes[i];
  }
  return TS_EINTERNAL;
}

int ts_internal_call(ts_server *s, const char *method, const void *params, size_t params_len,
                     ts_internal_cb cb, void *ctx) {
  ts_internal *in = s->internal;
  if (!in) return TS_EINTERNAL;
  pending *p = calloc(1, sizeof(*p));
  if (!p) return TS_ENOMEM;
  p->msgid = in->next_msgid++;
  p->cb = cb;
  p->ctx = ctx;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, ts_wipe_sbuffer_write);
  ts_rpc_pack_request_head(&pk, p->msgid, method);
  if (params && params_len) {
    msgpack_pack_array(&pk, 1);
    ts_wipe_sbuffer_write(&sb, params, params_len);
  } else {
    msgpack_pack_array(&pk, 0);
  }
  p->next = in->head; /* registered first: the reply may come during dispatch */
  in->head = p;
  int rc = sb.data ? ts_dispatch_message(&in->conn, (const uint8_t *)sb.data, sb.size) : TS_ENOMEM;
  ts_wipe_sbuffer_destroy(&sb);
  if (rc != 0) {
    /* nothing was dispatched, so nothing replied: take the entry back */
    for (pending **pp = &in->head; *pp; pp = &(*pp)->next)
      if (*pp == p) {
        *pp = p->next;
        free(p);
        break;
      }
  }
  return rc;
}

void ts_internal_reply(ts_conn *c, const char *reply, size_t len) {
  ts_internal *in = (ts_internal *)c; /* conn is the first member */
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  ts_rpc_msg m;
  if (msgpack_unpack_next(&up, reply, len, &off) != MSGPACK_UNPACK_SUCCESS ||
      ts_rpc_decode_reply(&up.data, &m) != 0 || m.kind != TS_RPC_RESPONSE) {
    msgpack_unpacked_destroy(&up);
    ts_log(TS_LOG_ERROR, "internal call: unreadable reply", NULL);
    return;
  }
  pending *p = NULL;
  for (pending **pp = &in->head; *pp; pp = &(*pp)->next)
    if ((*pp)->msgid == m.msgid) {
      p = *pp;
      *pp = p->next;
      break;
    }
  if (p) {
    int err = 0;
    if (m.err && m.err->type != MSGPACK_OBJECT_NIL) {
      err = TS_EINTERNAL;
      if (m.err->type == MSGPACK_OBJECT_ARRAY && m.err->via.array.size >= 1 &&
          m.err->via.array.ptr[0].type == MSGPACK_OBJECT_STR)
        err = ts_internal_err_of_code(m.err->via.array.ptr[0].via.str.ptr,
                                      m.err->via.array.ptr[0].via.str.size);
    }
    p->cb(p->ctx, err, err ? NULL : m.result);
    free(p);
  }
  msgpack_unpacked_destroy(&up);
}
