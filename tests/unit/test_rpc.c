/* tests/unit/test_rpc.c: the msgpack-rpc envelope (proto/rpc.h) and the error table
 * (proto/error.h).
 *
 * Messages are built with msgpack-c's packer and unpacked with its unpacker, as the daemon does
 * after the pre-scan; what the encode helpers write is checked byte for byte against the
 * standard encoding that any msgpack-rpc library (pynvim, msgpack-python) produces. */
#include "error.h"
#include "rpc.h"
#include "scan.h"
#include "tt.h"

#include <msgpack.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Helpers */

typedef struct env {
  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_unpacked u;
} env;

static void env_init(env *e) {
  msgpack_sbuffer_init(&e->sb);
  msgpack_packer_init(&e->pk, &e->sb, msgpack_sbuffer_write);
  msgpack_unpacked_init(&e->u);
}

static void env_free(env *e) {
  msgpack_unpacked_destroy(&e->u);
  msgpack_sbuffer_destroy(&e->sb);
}

/* Unpacks what was packed (it must be exactly one message) and returns the object. */
static const msgpack_object *unpacked(env *e) {
  size_t off = 0;
  msgpack_unpack_return r = msgpack_unpack_next(&e->u, e->sb.data, e->sb.size, &off);
  TT_ASSERT_MSG(r == MSGPACK_UNPACK_SUCCESS, "unpack failed: %d", (int)r);
  TT_EQ_INT(off, e->sb.size);
  return &e->u.data;
}

static void pstr(msgpack_packer *pk, const char *s) {
  TT_ASSERT(msgpack_pack_str_with_body(pk, s, strlen(s)) == 0);
}

/* Packs [0, msgid, method, ...] with msgid and method already packed by the caller's choice. */
static void head(msgpack_packer *pk, uint32_t n, int kind) {
  TT_ASSERT(msgpack_pack_array(pk, n) == 0);
  TT_ASSERT(msgpack_pack_int(pk, kind) == 0);
}

static void expect_bytes(const env *e, const uint8_t *want, size_t n) {
  TT_ASSERT_MSG(e->sb.size == n, "packed %zu bytes, expected %zu", e->sb.size, n);
  for (size_t i = 0; i < n; i++)
    TT_ASSERT_MSG((uint8_t)e->sb.data[i] == want[i], "byte %zu: 0x%02x, expected 0x%02x", i,
                  (uint8_t)e->sb.data[i], want[i]);
}

static int method_is(const ts_rpc_msg *m, const char *s) {
  return m->method && m->method_len == strlen(s) && memcmp(m->method, s, m->method_len) == 0;
}

/* ---------------------------------------------------------------------------------------------
 * Requests */

static void request_empty_params(void) {
  env e;
  env_init(&e);
  head(&e.pk, 4, 0);
  TT_ASSERT(msgpack_pack_uint32(&e.pk, 1) == 0);
  pstr(&e.pk, "sys.ping");
  TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0);
  ts_rpc_msg m;
  TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), 0);
  TT_EQ_INT(m.kind, TS_RPC_REQUEST);
  TT_EQ_INT(m.msgid, 1);
  TT_ASSERT(method_is(&m, "sys.ping"));
  TT_EQ_INT(m.method_len, 8);
  TT_ASSERT(m.params == NULL);
  TT_EQ_INT(m.error, 0);
  env_free(&e);
}

static void request_map_params(void) {
  env e;
  env_init(&e);
  head(&e.pk, 4, 0);
  TT_ASSERT(msgpack_pack_uint32(&e.pk, UINT32_MAX) == 0); /* the largest msgid */
  pstr(&e.pk, "session.create");
  TT_ASSERT(msgpack_pack_array(&e.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_map(&e.pk, 2) == 0);
  pstr(&e.pk, "sub");
  pstr(&e.pk, "alice");
  pstr(&e.pk, "ttl");
  TT_ASSERT(msgpack_pack_int(&e.pk, 3600) == 0);
  ts_rpc_msg m;
  TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), 0);
  TT_EQ_INT(m.kind, TS_RPC_REQUEST);
  TT_EQ_INT(m.msgid, UINT32_MAX);
  TT_ASSERT(method_is(&m, "session.create"));
  TT_EQ_INT(m.error, 0);
  TT_ASSERT(m.params != NULL);
  TT_EQ_INT(m.params->type, MSGPACK_OBJECT_MAP);
  TT_EQ_INT(m.params->via.map.size, 2);
  TT_ASSERT(ts_mp_str_eq(&m.params->via.map.ptr[0].key, "sub"));
  TT_ASSERT(ts_mp_str_eq(&m.params->via.map.ptr[0].val, "alice"));
  TT_ASSERT(ts_mp_str_eq(&m.params->via.map.ptr[1].key, "ttl"));
  TT_EQ_INT(m.params->via.map.ptr[1].val.via.u64, 3600);
  env_free(&e);

  /* An empty map is the usual "no params" of most clients (vim.empty_dict()). */
  env_init(&e);
  head(&e.pk, 4, 0);
  TT_ASSERT(msgpack_pack_uint32(&e.pk, 0) == 0); /* msgid 0 is a msgid */
  pstr(&e.pk, "sys.ping");
  TT_ASSERT(msgpack_pack_array(&e.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_map(&e.pk, 0) == 0);
  TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), 0);
  TT_EQ_INT(m.error, 0);
  TT_EQ_INT(m.msgid, 0);
  TT_ASSERT(m.params != NULL && m.params->type == MSGPACK_OBJECT_MAP);
  TT_EQ_INT(m.params->via.map.size, 0);
  env_free(&e);
}

/* An empty method name is a str like any other (an unknown one): msgpack-c leaves the pointer of
 * an empty str NULL, the decoder must still hand out a usable "" of length 0. */
static void request_empty_method(void) {
  env e;
  env_init(&e);
  head(&e.pk, 4, 0);
  TT_ASSERT(msgpack_pack_uint32(&e.pk, 3) == 0);
  pstr(&e.pk, "");
  TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0);
  ts_rpc_msg m;
  TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), 0);
  TT_EQ_INT(m.kind, TS_RPC_REQUEST);
  TT_EQ_INT(m.error, 0);
  TT_EQ_INT(m.msgid, 3);
  TT_ASSERT(m.method != NULL);
  TT_EQ_INT(m.method_len, 0);
  TT_ASSERT(!ts_mp_str_eq(&unpacked(&e)->via.array.ptr[2], "sys.ping"));
  TT_ASSERT(ts_mp_str_eq(&unpacked(&e)->via.array.ptr[2], ""));
  env_free(&e);

  /* The same for a server notification read by a client. */
  env_init(&e);
  TT_EQ_INT(ts_rpc_pack_notification_head(&e.pk, ""), 0);
  TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0);
  TT_EQ_INT(ts_rpc_decode_reply(unpacked(&e), &m), 0);
  TT_EQ_INT(m.kind, TS_RPC_NOTIFICATION);
  TT_ASSERT(m.method != NULL);
  TT_EQ_INT(m.method_len, 0);
  env_free(&e);
}

/* Every width an encoder may choose for a msgid below 2^32 is the same msgid. */
static void msgid_any_width(void) {
  static const struct {
    uint8_t b[16];
    size_t n;
    uint32_t id;
  } forms[] = {
      {{0x94, 0x00, 0x05, 0xa1, 'm', 0x90}, 6, 5},
      {{0x94, 0x00, 0xcc, 0x05, 0xa1, 'm', 0x90}, 7, 5},
      {{0x94, 0x00, 0xcd, 0x00, 0x05, 0xa1, 'm', 0x90}, 8, 5},
      {{0x94, 0x00, 0xce, 0x00, 0x00, 0x00, 0x05, 0xa1, 'm', 0x90}, 10, 5},
      {{0x94, 0x00, 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xa1, 'm', 0x90}, 14, UINT32_MAX},
      {{0x94, 0x00, 0xd0, 0x05, 0xa1, 'm', 0x90}, 7, 5}, /* int8, non-negative */
      {{0x94, 0xd3, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0xa1, 'm', 0x90}, 14, 7}, /* kind as int64 */
  };
  for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    TT_ASSERT(msgpack_unpack_next(&u, (const char *)forms[i].b, forms[i].n, &off) ==
              MSGPACK_UNPACK_SUCCESS);
    ts_rpc_msg m;
    int rc = ts_rpc_decode_request(&u.data, &m);
    TT_ASSERT_MSG(rc == 0, "form %zu: %d", i, rc);
    TT_EQ_INT(m.kind, TS_RPC_REQUEST);
    TT_EQ_INT(m.msgid, forms[i].id);
    TT_EQ_INT(m.error, 0);
    msgpack_unpacked_destroy(&u);
  }
}

static void msgid_not_uint32(void) {
  for (int which = 0; which < 8; which++) {
    env e;
    env_init(&e);
    head(&e.pk, 4, 0);
    switch (which) {
    case 0: TT_ASSERT(msgpack_pack_uint64(&e.pk, (uint64_t)UINT32_MAX + 1) == 0); break;
    case 1: TT_ASSERT(msgpack_pack_uint64(&e.pk, UINT64_MAX) == 0); break;
    case 2: TT_ASSERT(msgpack_pack_int(&e.pk, -1) == 0); break;
    case 3: TT_ASSERT(msgpack_pack_int64(&e.pk, INT64_MIN) == 0); break;
    case 4: pstr(&e.pk, "1"); break;
    case 5: TT_ASSERT(msgpack_pack_nil(&e.pk) == 0); break;
    case 6: TT_ASSERT(msgpack_pack_double(&e.pk, 1.0) == 0); break;
    case 7: TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0); break;
    }
    pstr(&e.pk, "sys.ping");
    TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0);
    ts_rpc_msg m;
    int rc = ts_rpc_decode_request(unpacked(&e), &m);
    TT_ASSERT_MSG(rc == TS_EMSGID, "case %d: got %d", which, rc);
    env_free(&e);
  }
}

static void method_not_str(void) {
  for (int which = 0; which < 4; which++) {
    env e;
    env_init(&e);
    head(&e.pk, 4, 0);
    TT_ASSERT(msgpack_pack_uint32(&e.pk, 42) == 0);
    switch (which) {
    case 0: TT_ASSERT(msgpack_pack_int(&e.pk, 5) == 0); break;
    case 1: TT_ASSERT(msgpack_pack_bin_with_body(&e.pk, "sys.ping", 8) == 0); break;
    case 2: TT_ASSERT(msgpack_pack_nil(&e.pk) == 0); break;
    case 3: TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0); break;
    }
    TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0);
    ts_rpc_msg m;
    TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), 0); /* the connection stays */
    TT_EQ_INT(m.kind, TS_RPC_REQUEST);
    TT_EQ_INT(m.msgid, 42); /* so the reply can name the request */
    TT_EQ_INT(m.error, TS_EBAD_REQUEST);
    TT_ASSERT(m.error_detail != NULL && strstr(m.error_detail, "method") != NULL);
    env_free(&e);
  }
}

/* params that are not [] or [map with str keys]: bad_request, msgid and method kept. */
static void params_bad_shapes(void) {
  for (int which = 0; which < 11; which++) {
    env e;
    env_init(&e);
    head(&e.pk, 4, 0);
    TT_ASSERT(msgpack_pack_uint32(&e.pk, 9) == 0);
    pstr(&e.pk, "sys.ping");
    msgpack_packer *pk = &e.pk;
    switch (which) {
    case 0: TT_ASSERT(msgpack_pack_map(pk, 0) == 0); break;   /* a bare map, no array */
    case 1: TT_ASSERT(msgpack_pack_nil(pk) == 0); break;
    case 2: TT_ASSERT(msgpack_pack_int(pk, 1) == 0); break;
    case 3: pstr(pk, "{}"); break;
    case 4: /* [{}, {}] */
      TT_ASSERT(msgpack_pack_array(pk, 2) == 0);
      TT_ASSERT(msgpack_pack_map(pk, 0) == 0);
      TT_ASSERT(msgpack_pack_map(pk, 0) == 0);
      break;
    case 5: /* [1] */
      TT_ASSERT(msgpack_pack_array(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_int(pk, 1) == 0);
      break;
    case 6: /* [[]] */
      TT_ASSERT(msgpack_pack_array(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
      break;
    case 7: /* [nil] */
      TT_ASSERT(msgpack_pack_array(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_nil(pk) == 0);
      break;
    case 8: /* [{1: 2}] */
      TT_ASSERT(msgpack_pack_array(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_map(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_int(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_int(pk, 2) == 0);
      break;
    case 9: /* [{"a": 1, b"b": 2}]: the second key is bin */
      TT_ASSERT(msgpack_pack_array(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_map(pk, 2) == 0);
      pstr(pk, "a");
      TT_ASSERT(msgpack_pack_int(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_bin_with_body(pk, "b", 1) == 0);
      TT_ASSERT(msgpack_pack_int(pk, 2) == 0);
      break;
    case 10: /* [{"a": 1}, 2] */
      TT_ASSERT(msgpack_pack_array(pk, 2) == 0);
      TT_ASSERT(msgpack_pack_map(pk, 1) == 0);
      pstr(pk, "a");
      TT_ASSERT(msgpack_pack_int(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_int(pk, 2) == 0);
      break;
    }
    ts_rpc_msg m;
    int rc = ts_rpc_decode_request(unpacked(&e), &m);
    TT_ASSERT_MSG(rc == 0, "case %d: decode returned %d (closes the connection)", which, rc);
    TT_ASSERT_MSG(m.error == TS_EBAD_REQUEST, "case %d: error %d", which, m.error);
    TT_ASSERT_MSG(m.error_detail != NULL && m.error_detail[0] != '\0', "case %d: no detail", which);
    TT_EQ_INT(m.kind, TS_RPC_REQUEST);
    TT_EQ_INT(m.msgid, 9);
    TT_ASSERT(method_is(&m, "sys.ping"));
    env_free(&e);
  }
}

static void client_notification(void) {
  /* [2, "x", []] and what pynvim sends first: [2, "nvim_set_client_info", [...]]. */
  for (int which = 0; which < 3; which++) {
    env e;
    env_init(&e);
    head(&e.pk, 3, 2);
    if (which == 0) {
      pstr(&e.pk, "x");
      TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0);
    } else if (which == 1) {
      pstr(&e.pk, "nvim_set_client_info");
      TT_ASSERT(msgpack_pack_array(&e.pk, 3) == 0);
      pstr(&e.pk, "python3-client");
      TT_ASSERT(msgpack_pack_map(&e.pk, 0) == 0);
      pstr(&e.pk, "remote");
    } else {
      TT_ASSERT(msgpack_pack_int(&e.pk, 5) == 0); /* even an odd one is just ignored */
      TT_ASSERT(msgpack_pack_nil(&e.pk) == 0);
    }
    ts_rpc_msg m;
    TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), 0);
    TT_EQ_INT(m.kind, TS_RPC_NOTIFICATION);
    TT_EQ_INT(m.error, 0);
    env_free(&e);
  }
}

static void bad_envelopes(void) {
  for (int which = 0; which < 12; which++) {
    env e;
    env_init(&e);
    msgpack_packer *pk = &e.pk;
    switch (which) {
    case 0: /* a response sent by a client */
      head(pk, 4, 1);
      TT_ASSERT(msgpack_pack_uint32(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_nil(pk) == 0);
      TT_ASSERT(msgpack_pack_nil(pk) == 0);
      break;
    case 1: TT_ASSERT(msgpack_pack_map(pk, 0) == 0); break;
    case 2: TT_ASSERT(msgpack_pack_int(pk, 0) == 0); break;
    case 3: pstr(pk, "sys.ping"); break;
    case 4: TT_ASSERT(msgpack_pack_nil(pk) == 0); break;
    case 5: TT_ASSERT(msgpack_pack_array(pk, 0) == 0); break;
    case 6: /* a request of 3 elements */
      head(pk, 3, 0);
      TT_ASSERT(msgpack_pack_uint32(pk, 1) == 0);
      pstr(pk, "sys.ping");
      break;
    case 7: /* a request of 5 elements */
      head(pk, 5, 0);
      TT_ASSERT(msgpack_pack_uint32(pk, 1) == 0);
      pstr(pk, "sys.ping");
      TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
      TT_ASSERT(msgpack_pack_nil(pk) == 0);
      break;
    case 8: /* kind 3 */
      head(pk, 4, 3);
      TT_ASSERT(msgpack_pack_uint32(pk, 1) == 0);
      pstr(pk, "sys.ping");
      TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
      break;
    case 9: /* kind as a str */
      TT_ASSERT(msgpack_pack_array(pk, 4) == 0);
      pstr(pk, "0");
      TT_ASSERT(msgpack_pack_uint32(pk, 1) == 0);
      pstr(pk, "sys.ping");
      TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
      break;
    case 10: /* a notification of 4 elements */
      head(pk, 4, 2);
      pstr(pk, "x");
      TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
      TT_ASSERT(msgpack_pack_nil(pk) == 0);
      break;
    case 11: /* kind -1 */
      head(pk, 4, -1);
      TT_ASSERT(msgpack_pack_uint32(pk, 1) == 0);
      pstr(pk, "sys.ping");
      TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
      break;
    }
    ts_rpc_msg m;
    int rc = ts_rpc_decode_request(unpacked(&e), &m);
    TT_ASSERT_MSG(rc == TS_EENVELOPE, "case %d: got %d", which, rc);
    env_free(&e);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Encoding, and the client's view */

static void pack_request_standard_bytes(void) {
  /* msgpack.packb([0, 1, "sys.ping", []]) */
  static const uint8_t want[] = {0x94, 0x00, 0x01, 0xa8, 's', 'y', 's', '.', 'p', 'i', 'n', 'g',
                                 0x90};
  env e;
  env_init(&e);
  TT_EQ_INT(ts_rpc_pack_request_head(&e.pk, 1, "sys.ping"), 0);
  TT_ASSERT(msgpack_pack_array(&e.pk, 0) == 0);
  expect_bytes(&e, want, sizeof(want));
  ts_rpc_msg m;
  TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), 0);
  TT_EQ_INT(m.kind, TS_RPC_REQUEST);
  TT_EQ_INT(m.msgid, 1);
  TT_ASSERT(method_is(&m, "sys.ping"));
  env_free(&e);

  /* A large msgid takes the uint32 form: msgpack.packb([0, 4000000000, "m", [{}]]). */
  static const uint8_t want2[] = {0x94, 0x00, 0xce, 0xee, 0x6b, 0x28, 0x00, 0xa1, 'm', 0x91, 0x80};
  env_init(&e);
  TT_EQ_INT(ts_rpc_pack_request_head(&e.pk, 4000000000u, "m"), 0);
  TT_ASSERT(msgpack_pack_array(&e.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_map(&e.pk, 0) == 0);
  expect_bytes(&e, want2, sizeof(want2));
  TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), 0);
  TT_EQ_INT(m.msgid, 4000000000u);
  TT_ASSERT(m.params != NULL);
  env_free(&e);
}

static void response_ok_roundtrip(void) {
  env e;
  env_init(&e);
  TT_EQ_INT(ts_rpc_pack_response_head(&e.pk, 300), 0);
  TT_EQ_INT(ts_rpc_pack_ok(&e.pk), 0);
  TT_ASSERT(msgpack_pack_map(&e.pk, 2) == 0);
  pstr(&e.pk, "version");
  pstr(&e.pk, "0.1.0");
  pstr(&e.pk, "now");
  TT_ASSERT(msgpack_pack_int64(&e.pk, 1700000000) == 0);
  /* msgpack.packb([1, 300, None, {"version": "0.1.0", "now": 1700000000}]) */
  static const uint8_t want[] = {0x94, 0x01, 0xcd, 0x01, 0x2c, 0xc0, 0x82, 0xa7, 'v', 'e', 'r',
                                 's', 'i', 'o', 'n', 0xa5, '0', '.', '1', '.', '0', 0xa3, 'n',
                                 'o', 'w', 0xce, 0x65, 0x53, 0xf1, 0x00};
  expect_bytes(&e, want, sizeof(want));

  /* The scanner agrees on where it ends. */
  ts_scan s;
  ts_scan_init(&s);
  const ts_scan_limits lim = {64 * 1024, 10};
  TT_EQ_INT(ts_scan_feed(&s, (const uint8_t *)e.sb.data, e.sb.size, &lim), e.sb.size);

  ts_rpc_msg m;
  TT_EQ_INT(ts_rpc_decode_reply(unpacked(&e), &m), 0);
  TT_EQ_INT(m.kind, TS_RPC_RESPONSE);
  TT_EQ_INT(m.msgid, 300);
  TT_ASSERT(m.err != NULL && m.err->type == MSGPACK_OBJECT_NIL);
  TT_ASSERT(m.result != NULL && m.result->type == MSGPACK_OBJECT_MAP);
  TT_EQ_INT(m.result->via.map.size, 2);
  TT_ASSERT(ts_mp_str_eq(&m.result->via.map.ptr[0].key, "version"));
  TT_ASSERT(ts_mp_str_eq(&m.result->via.map.ptr[0].val, "0.1.0"));
  TT_EQ_INT(m.result->via.map.ptr[1].val.via.u64, 1700000000);

  /* A response is never something the server accepts. */
  TT_EQ_INT(ts_rpc_decode_request(unpacked(&e), &m), TS_EENVELOPE);
  env_free(&e);
}

static void response_error_roundtrip(void) {
  env e;
  env_init(&e);
  TT_EQ_INT(ts_rpc_pack_response_head(&e.pk, 2), 0);
  TT_EQ_INT(ts_rpc_pack_error(&e.pk, ts_err_code(TS_EBAD_REQUEST), "unknown key: bogus"), 0);
  /* msgpack.packb([1, 2, ["bad_request", "unknown key: bogus"], None]) */
  static const uint8_t want_head[] = {0x94, 0x01, 0x02, 0x92, 0xab, 'b', 'a', 'd', '_', 'r', 'e',
                                      'q', 'u', 'e', 's', 't', 0xb2};
  TT_EQ_INT(e.sb.size, sizeof(want_head) + 18 + 1);
  TT_ASSERT(memcmp(e.sb.data, want_head, sizeof(want_head)) == 0);
  TT_ASSERT(memcmp(e.sb.data + sizeof(want_head), "unknown key: bogus", 18) == 0);
  TT_EQ_INT((uint8_t)e.sb.data[e.sb.size - 1], 0xc0);

  ts_rpc_msg m;
  TT_EQ_INT(ts_rpc_decode_reply(unpacked(&e), &m), 0);
  TT_EQ_INT(m.kind, TS_RPC_RESPONSE);
  TT_EQ_INT(m.msgid, 2);
  TT_ASSERT(m.err != NULL && m.err->type == MSGPACK_OBJECT_ARRAY);
  TT_EQ_INT(m.err->via.array.size, 2);
  TT_ASSERT(ts_mp_str_eq(&m.err->via.array.ptr[0], "bad_request"));
  TT_ASSERT(ts_mp_str_eq(&m.err->via.array.ptr[1], "unknown key: bogus"));
  TT_ASSERT(m.result != NULL && m.result->type == MSGPACK_OBJECT_NIL);
  env_free(&e);

  /* Every wire code travels the same way. */
  for (int err = TS_EBAD_REQUEST; err < TS_ERROR_END_; err++) {
    env_init(&e);
    TT_EQ_INT(ts_rpc_pack_response_head(&e.pk, 77), 0);
    TT_EQ_INT(ts_rpc_pack_error(&e.pk, ts_err_code(err), ts_strerror(err)), 0);
    TT_EQ_INT(ts_rpc_decode_reply(unpacked(&e), &m), 0);
    TT_EQ_INT(m.msgid, 77);
    TT_ASSERT(ts_mp_str_eq(&m.err->via.array.ptr[0], ts_err_code(err)));
    TT_ASSERT(ts_mp_str_eq(&m.err->via.array.ptr[1], ts_strerror(err)));
    TT_EQ_INT(m.result->type, MSGPACK_OBJECT_NIL);
    env_free(&e);
  }
}

static void notification_roundtrip(void) {
  env e;
  env_init(&e);
  TT_EQ_INT(ts_rpc_pack_notification_head(&e.pk, "revoked"), 0);
  TT_ASSERT(msgpack_pack_array(&e.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_map(&e.pk, 3) == 0);
  pstr(&e.pk, "kind");
  pstr(&e.pk, "jti");
  pstr(&e.pk, "id");
  pstr(&e.pk, "abc");
  pstr(&e.pk, "until");
  TT_ASSERT(msgpack_pack_int64(&e.pk, 1700000000) == 0);
  static const uint8_t want_head[] = {0x93, 0x02, 0xa7, 'r', 'e', 'v', 'o', 'k', 'e', 'd', 0x91,
                                      0x83};
  TT_ASSERT(e.sb.size > sizeof(want_head));
  TT_ASSERT(memcmp(e.sb.data, want_head, sizeof(want_head)) == 0);

  ts_rpc_msg m;
  TT_EQ_INT(ts_rpc_decode_reply(unpacked(&e), &m), 0);
  TT_EQ_INT(m.kind, TS_RPC_NOTIFICATION);
  TT_ASSERT(method_is(&m, "revoked"));
  TT_ASSERT(m.args != NULL && m.args->type == MSGPACK_OBJECT_ARRAY);
  TT_EQ_INT(m.args->via.array.size, 1);
  TT_EQ_INT(m.args->via.array.ptr[0].type, MSGPACK_OBJECT_MAP);
  TT_ASSERT(ts_mp_str_eq(&m.args->via.array.ptr[0].via.map.ptr[1].val, "abc"));
  env_free(&e);

  /* The keys notification, exactly as msgpack.packb([2, "keys", [{"keys_version": 3}]]). */
  env_init(&e);
  TT_EQ_INT(ts_rpc_pack_notification_head(&e.pk, "keys"), 0);
  TT_ASSERT(msgpack_pack_array(&e.pk, 1) == 0);
  TT_ASSERT(msgpack_pack_map(&e.pk, 1) == 0);
  pstr(&e.pk, "keys_version");
  TT_ASSERT(msgpack_pack_int(&e.pk, 3) == 0);
  static const uint8_t want[] = {0x93, 0x02, 0xa4, 'k', 'e', 'y', 's', 0x91, 0x81, 0xac, 'k',
                                 'e', 'y', 's', '_', 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x03};
  expect_bytes(&e, want, sizeof(want));
  env_free(&e);
}

static void reply_bad_envelopes(void) {
  for (int which = 0; which < 6; which++) {
    env e;
    env_init(&e);
    msgpack_packer *pk = &e.pk;
    switch (which) {
    case 0: /* a request is not a reply */
      TT_EQ_INT(ts_rpc_pack_request_head(pk, 1, "sys.ping"), 0);
      TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
      break;
    case 1: /* a response whose msgid is beyond uint32 */
      head(pk, 4, 1);
      TT_ASSERT(msgpack_pack_uint64(pk, (uint64_t)1 << 32) == 0);
      TT_ASSERT(msgpack_pack_nil(pk) == 0);
      TT_ASSERT(msgpack_pack_nil(pk) == 0);
      break;
    case 2: /* a notification whose method is not a str */
      head(pk, 3, 2);
      TT_ASSERT(msgpack_pack_int(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_array(pk, 0) == 0);
      break;
    case 3: /* a notification whose args are not an array */
      head(pk, 3, 2);
      pstr(pk, "revoked");
      TT_ASSERT(msgpack_pack_map(pk, 0) == 0);
      break;
    case 4: /* a response of 3 elements */
      head(pk, 3, 1);
      TT_ASSERT(msgpack_pack_uint32(pk, 1) == 0);
      TT_ASSERT(msgpack_pack_nil(pk) == 0);
      break;
    case 5: TT_ASSERT(msgpack_pack_map(pk, 0) == 0); break;
    }
    ts_rpc_msg m;
    int rc = ts_rpc_decode_reply(unpacked(&e), &m);
    TT_ASSERT_MSG(rc == TS_EENVELOPE, "case %d: got %d", which, rc);
    env_free(&e);
  }
}

static void str_eq(void) {
  env e;
  env_init(&e);
  TT_ASSERT(msgpack_pack_array(&e.pk, 4) == 0);
  pstr(&e.pk, "sub");
  TT_ASSERT(msgpack_pack_str_with_body(&e.pk, "su\0b", 4) == 0);
  TT_ASSERT(msgpack_pack_bin_with_body(&e.pk, "sub", 3) == 0);
  pstr(&e.pk, "");
  const msgpack_object *a = unpacked(&e)->via.array.ptr;
  TT_ASSERT(ts_mp_str_eq(&a[0], "sub"));
  TT_ASSERT(!ts_mp_str_eq(&a[0], "su"));
  TT_ASSERT(!ts_mp_str_eq(&a[0], "subs"));
  TT_ASSERT(!ts_mp_str_eq(&a[0], "Sub"));
  TT_ASSERT(!ts_mp_str_eq(&a[1], "su")); /* an embedded NUL does not end the str */
  TT_ASSERT(!ts_mp_str_eq(&a[2], "sub")); /* bin is not str */
  TT_ASSERT(ts_mp_str_eq(&a[3], ""));
  env_free(&e);
}

/* ---------------------------------------------------------------------------------------------
 * The error table */

static void error_codes(void) {
  TT_EQ_STR(ts_err_code(TS_EBAD_REQUEST), "bad_request");
  TT_EQ_STR(ts_err_code(TS_EUNKNOWN_METHOD), "unknown_method");
  TT_EQ_STR(ts_err_code(TS_EUNAUTHENTICATED), "unauthenticated");
  TT_EQ_STR(ts_err_code(TS_EEXPIRED), "expired");
  TT_EQ_STR(ts_err_code(TS_EREVOKED), "revoked");
  TT_EQ_STR(ts_err_code(TS_EREUSED), "reused");
  TT_EQ_STR(ts_err_code(TS_EFORBIDDEN), "forbidden");
  TT_EQ_STR(ts_err_code(TS_EOVERLOADED), "overloaded");
  TT_EQ_STR(ts_err_code(TS_EUNAVAILABLE), "unavailable");
  TT_EQ_STR(ts_err_code(TS_EINTERNAL), "internal");
  /* Internal codes travel as the wire code of their row. */
  TT_EQ_STR(ts_err_code(TS_ENOMEM), "internal");
  TT_EQ_STR(ts_err_code(TS_EMSGSIZE), "bad_request");
  TT_EQ_STR(ts_err_code(TS_EMSGID), "bad_request");
  TT_EQ_STR(ts_err_code(TS_EIO), "unavailable");
  TT_EQ_STR(ts_err_code(TS_EMAPFULL), "unavailable");
  TT_EQ_STR(ts_err_code(TS_ENOTFOUND), "unauthenticated");
  TT_EQ_STR(ts_err_code(TS_ECONFIG), "internal");

  TT_EQ_STR(ts_strerror(0), "ok");
  TT_EQ_STR(ts_strerror(TS_EUNKNOWN_METHOD), "unknown method");
  TT_EQ_STR(ts_strerror(TS_EREUSED), "refresh token reused; its family is revoked");
  TT_EQ_STR(ts_strerror(TS_ELENGTH), "length header larger than the message limit");

  /* Anything outside the table is "internal", never NULL, never out of bounds. */
  static const int unknown[] = {-1, -4, 1, 12345, -100000, TS_ERROR_FIRST_, TS_ERROR_END_,
                                TS_ERROR_END_ + 1, -2147483647 - 1, 2147483647};
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    TT_EQ_STR(ts_err_code(unknown[i]), "internal");
    TT_EQ_STR(ts_strerror(unknown[i]), "internal error");
  }

  /* Every code of the table is one PROTOCOL.md names, and every message is non-empty. */
  static const char *const wire[] = {"bad_request", "unknown_method", "unauthenticated",
                                     "expired", "revoked", "reused", "forbidden", "overloaded",
                                     "unavailable", "internal"};
  for (int err = TS_EBAD_REQUEST; err < TS_ERROR_END_; err++) {
    const char *c = ts_err_code(err);
    int known = 0;
    for (size_t i = 0; i < sizeof(wire) / sizeof(wire[0]); i++) known |= strcmp(c, wire[i]) == 0;
    TT_ASSERT_MSG(known, "code %d travels as \"%s\"", err, c);
    TT_ASSERT_MSG(ts_strerror(err)[0] != '\0', "code %d has no message", err);
    TT_ASSERT(err < 0);
  }
}

static const tt_case cases[] = {
    TT_CASE(request_empty_params),
    TT_CASE(request_map_params),
    TT_CASE(request_empty_method),
    TT_CASE(msgid_any_width),
    TT_CASE(msgid_not_uint32),
    TT_CASE(method_not_str),
    TT_CASE(params_bad_shapes),
    TT_CASE(client_notification),
    TT_CASE(bad_envelopes),
    TT_CASE(pack_request_standard_bytes),
    TT_CASE(response_ok_roundtrip),
    TT_CASE(response_error_roundtrip),
    TT_CASE(notification_roundtrip),
    TT_CASE(reply_bad_envelopes),
    TT_CASE(str_eq),
    TT_CASE(error_codes),
};

TT_MAIN(cases)
