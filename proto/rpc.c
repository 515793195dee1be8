/* proto/rpc.c: the msgpack-rpc envelope (rpc.h; PROTOCOL.md "Transport and framing").
 *
 * Decoding separates two kinds of bad input. An envelope that cannot be answered (not an
 * array, a wrong kind or arity, a msgid that is not a uint32) returns TS_EENVELOPE / TS_EMSGID
 * and the daemon closes the connection: it has no msgid to reply to. A request whose msgid is
 * sound but whose method or params are not the documented shape returns 0 with m->error set,
 * so the daemon answers bad_request on that msgid and keeps the connection. Nothing here
 * allocates: the decoded message points into the caller's msgpack object. Encoding writes
 * heads and leaves the body (result, params) to the caller's packer; every packer failure is
 * TS_ENOMEM, the only way msgpack-c's sbuffer writes fail. */
#include "rpc.h"

#include "error.h"

#include <string.h>

bool ts_mp_str_eq(const msgpack_object *o, const char *s) {
  size_t n = strlen(s);
  /* n == 0 first: msgpack-c leaves ptr NULL for an empty str, and memcmp(NULL, ..) is UB. */
  return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
         (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
}

static bool is_uint32(const msgpack_object *o, uint32_t *out) {
  if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX) return false;
  *out = (uint32_t)o->via.u64;
  return true;
}

static bool is_kind(const msgpack_object *o, enum ts_rpc_kind k) {
  return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 == (uint64_t)k;
}

/* params: an array holding nothing or exactly one map with str keys. */
static int decode_params(const msgpack_object *o, ts_rpc_msg *m) {
  if (o->type != MSGPACK_OBJECT_ARRAY) {
    m->error_detail = "params must be an array";
    return TS_EBAD_REQUEST;
  }
  if (o->via.array.size == 0) return 0;
  const msgpack_object *p = &o->via.array.ptr[0];
  if (o->via.array.size > 1 || p->type != MSGPACK_OBJECT_MAP) {
    m->error_detail = "params must be [] or [map]";
    return TS_EBAD_REQUEST;
  }
  for (uint32_t i = 0; i < p->via.map.size; i++) {
    if (p->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR) {
      m->error_detail = "params keys must be strings";
      return TS_EBAD_REQUEST;
    }
  }
  m->params = p;
  return 0;
}

int ts_rpc_decode_request(const msgpack_object *o, ts_rpc_msg *m) {
  memset(m, 0, sizeof(*m));
  if (o->type != MSGPACK_OBJECT_ARRAY) return TS_EENVELOPE;
  const msgpack_object *a = o->via.array.ptr;
  uint32_t n = o->via.array.size;
  if (n == 3 && is_kind(&a[0], TS_RPC_NOTIFICATION)) {
    m->kind = TS_RPC_NOTIFICATION; /* a client's notification: ignored by the server */
    return 0;
  }
  if (n != 4 || !is_kind(&a[0], TS_RPC_REQUEST)) return TS_EENVELOPE;
  m->kind = TS_RPC_REQUEST;
  if (!is_uint32(&a[1], &m->msgid)) return TS_EMSGID;
  if (a[2].type != MSGPACK_OBJECT_STR) {
    m->error = TS_EBAD_REQUEST;
    m->error_detail = "method must be a string";
    return 0;
  }
  m->method = a[2].via.str.size ? a[2].via.str.ptr : ""; /* never NULL (empty str: NULL ptr) */
  m->method_len = a[2].via.str.size;
  m->error = decode_params(&a[3], m);
  return 0;
}

int ts_rpc_decode_reply(const msgpack_object *o, ts_rpc_msg *m) {
  memset(m, 0, sizeof(*m));
  if (o->type != MSGPACK_OBJECT_ARRAY) return TS_EENVELOPE;
  const msgpack_object *a = o->via.array.ptr;
  uint32_t n = o->via.array.size;
  if (n == 4 && is_kind(&a[0], TS_RPC_RESPONSE)) {
    m->kind = TS_RPC_RESPONSE;
    if (!is_uint32(&a[1], &m->msgid)) return TS_EENVELOPE;
    m->err = &a[2];
    m->result = &a[3];
    return 0;
  }
  if (n == 3 && is_kind(&a[0], TS_RPC_NOTIFICATION) && a[1].type == MSGPACK_OBJECT_STR &&
      a[2].type == MSGPACK_OBJECT_ARRAY) {
    m->kind = TS_RPC_NOTIFICATION;
    m->method = a[1].via.str.size ? a[1].via.str.ptr : "";
    m->method_len = a[1].via.str.size;
    m->args = &a[2];
    return 0;
  }
  return TS_EENVELOPE;
}

int ts_rpc_pack_request_head(msgpack_packer *pk, uint32_t msgid, const char *method) {
  if (msgpack_pack_array(pk, 4) || msgpack_pack_uint8(pk, TS_RPC_REQUEST) ||
      msgpack_pack_uint32(pk, msgid))
    return TS_ENOMEM;
  return ts_pack_cstr(pk, method);
}

int ts_rpc_pack_response_head(msgpack_packer *pk, uint32_t msgid) {
  if (msgpack_pack_array(pk, 4) || msgpack_pack_uint8(pk, TS_RPC_RESPONSE) ||
      msgpack_pack_uint32(pk, msgid))
    return TS_ENOMEM;
  return 0;
}

int ts_rpc_pack_ok(msgpack_packer *pk) {
  return msgpack_pack_nil(pk) == 0 ? 0 : TS_ENOMEM;
}

int ts_rpc_pack_error(msgpack_packer *pk, const char *code, const char *message) {
  if (msgpack_pack_array(pk, 2) || ts_pack_cstr(pk, code) || ts_pack_cstr(pk, message) ||
      msgpack_pack_nil(pk))
    return TS_ENOMEM;
  return 0;
}

int ts_rpc_pack_notification_head(msgpack_packer *pk, const char *method) {
  if (msgpack_pack_array(pk, 3) || msgpack_pack_uint8(pk, TS_RPC_NOTIFICATION)) return TS_ENOMEM;
  return ts_pack_cstr(pk, method);
}
