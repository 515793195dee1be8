/* proto/rpc.h: the msgpack-rpc envelope (PROTOCOL.md, "Transport and framing").
 *
 * Decoding works on a msgpack_object that msgpack-c unpacked from a message the pre-scan
 * (scan.h) accepted; nothing here allocates. The request's strings and params point into that
 * object (and so into the caller's msgpack zone). Encoding writes through a msgpack_packer. */
#ifndef TS_PROTO_RPC_H
#define TS_PROTO_RPC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "error.h"

enum ts_rpc_kind {
  TS_RPC_REQUEST = 0,
  TS_RPC_RESPONSE = 1,
  TS_RPC_NOTIFICATION = 2,
};

typedef struct ts_rpc_msg {
  enum ts_rpc_kind kind;
  uint32_t msgid;               /* requests and responses */
  const char *method;           /* requests and notifications; NOT NUL-terminated */
  uint32_t method_len;
  const msgpack_object *params; /* request: the params map, or NULL when params is [] */
  /* A request whose msgid is fine but whose shape is not gets bad_request: */
  int error;                    /* 0, TS_EBAD_REQUEST or TS_EUNKNOWN_METHOD (set by caller) */
  const char *error_detail;     /* static string naming what is wrong */
  /* Responses (what a client reads): */
  const msgpack_object *err;    /* the error element (nil on success) */
  const msgpack_object *result; /* the result element */
  /* Notifications: the params array as a whole. */
  const msgpack_object *args;
} ts_rpc_msg;

/* Decodes the server side view: a request or a client notification.
 * Returns 0 with *m filled (m->error may hold TS_EBAD_REQUEST for a request whose method or
 * params has the wrong shape), or TS_EENVELOPE / TS_EMSGID when the connection must be closed. */
int ts_rpc_decode_request(const msgpack_object *o, ts_rpc_msg *m);

/* Decodes the client side view: a response or a server notification.
 * Returns 0 or TS_EENVELOPE. */
int ts_rpc_decode_reply(const msgpack_object *o, ts_rpc_msg *m);

/* Packs a request [0, msgid, method, params]; params is packed by the caller right after
 * (one array holding nothing or one map), i.e. this packs the first three elements. */
int ts_rpc_pack_request_head(msgpack_packer *pk, uint32_t msgid, const char *method);

/* Packs the head of a response [1, msgid, ...]; follow with ts_rpc_pack_ok (then the result
 * object) or ts_rpc_pack_error. */
int ts_rpc_pack_response_head(msgpack_packer *pk, uint32_t msgid);
/* Packs the nil error; the caller packs the result next. */
int ts_rpc_pack_ok(msgpack_packer *pk);
/* Packs [code, message] and the nil result. */
int ts_rpc_pack_error(msgpack_packer *pk, const char *code, const char *message);

/* Packs a notification head [2, method, ...]; the caller packs the args array next. */
int ts_rpc_pack_notification_head(msgpack_packer *pk, const char *method);

/* Packs a string of n bytes. One write of head and body when it is short (a fixstr): replies
 * are mostly short keys and values, and each write is a call through the packer. The short
 * path copies through an unwiped stack buffer: not for secrets (no secret of the protocol is
 * under 32 bytes; a sid is 43 characters). */
static inline int ts_pack_str(msgpack_packer *pk, const char *s, size_t n) {
  if (n < 32) {
    char b[32];
    b[0] = (char)(0xa0 | n);
    memcpy(b + 1, s, n);
    return pk->callback(pk->data, b, n + 1) == 0 ? 0 : TS_ENOMEM;
  }
  return msgpack_pack_str(pk, n) == 0 && msgpack_pack_str_body(pk, s, n) == 0 ? 0 : TS_ENOMEM;
}

/* Packs a NUL-terminated string. Inline: for the literal keys of a reply the length is a
 * constant, not a strlen per key. */
static inline int ts_pack_cstr(msgpack_packer *pk, const char *s) {
  return ts_pack_str(pk, s, strlen(s));
}

/* True when o is a str equal to the NUL-terminated s. */
bool ts_mp_str_eq(const msgpack_object *o, const char *s);

#endif
