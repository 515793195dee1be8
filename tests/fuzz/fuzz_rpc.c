/* tests/fuzz/fuzz_rpc.c: the msgpack-rpc envelope (proto/rpc.h) and params checking
 * (sidecar/params.h), on every message of a byte stream.
 *
 * The input is a stream as a connection delivers it; each message the pre-scan accepts (the
 * daemon's default limits) is unpacked by msgpack-c, as sidecar/dispatch.c does, then:
 *   - ts_rpc_decode_request (server view): 0, TS_EENVELOPE or TS_EMSGID only; a request's
 *     method is never NULL; params is NULL or a map whose keys are all str;
 *   - ts_params_parse against a table with a row of every param type (and against an empty
 *     table, what the no-params methods use): 0 or TS_EBAD_REQUEST, and the message is
 *     printable ASCII (it goes on the wire; it may name keys but never echo raw bytes);
 *   - ts_mp_packed_size equals the bytes msgpack-c's packer writes for the same object (the
 *     size limit on maps relies on it), and stops at any limit;
 *   - ts_rpc_decode_reply (client view): 0 or TS_EENVELOPE; a response has err and result. */
#include "fuzz.h"

#include "error.h"
#include "params.h"
#include "rpc.h"
#include "scan.h"

#include <msgpack.h>
#include <string.h>

static const ts_scan_limits lim = {64 * 1024, 10};

/* One row of each type, names as the real methods use them. */
static const ts_param spec[] = {
    {"sub", TS_P_STR, false, 1, 256},  {"sid", TS_P_STR, false, 0, 0},
    {"ttl", TS_P_DURATION, false, 0, 0}, {"exp", TS_P_INT, false, 0, 0},
    {"flag", TS_P_BOOL, false, 0, 0},    {"data", TS_P_MAP, false, 0, 4096},
    {"claims", TS_P_MAP, false, 0, 64},  {"aud", TS_P_ANY, false, 0, 0},
};
static const ts_param spec_required[] = {
    {"sub", TS_P_STR, true, 1, 256},
    {"client", TS_P_MAP, true, 0, 4096},
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  return 0;
}

static void check_why(int rc, const char *why, size_t cap) {
  FUZZ_CHECK(rc == 0 || rc == TS_EBAD_REQUEST);
  if (rc == 0) return;
  size_t n = strnlen(why, cap);
  FUZZ_CHECK(n > 0 && n < cap);
  for (size_t i = 0; i < n; i++) FUZZ_CHECK(why[i] >= 0x20 && why[i] < 0x7f);
}

static void check_params(const msgpack_object *params) {
  char why[160];
  ts_param_value v[N(spec)];
  memset(why, 'x', sizeof(why));
  check_why(ts_params_parse(params, spec, N(spec), v, why, sizeof(why)), why, sizeof(why));
  ts_param_value w[N(spec_required)];
  memset(why, 'x', sizeof(why));
  check_why(ts_params_parse(params, spec_required, N(spec_required), w, why, sizeof(why)), why,
            sizeof(why));
  memset(why, 'x', sizeof(why));
  check_why(ts_params_parse(params, NULL, 0, NULL, why, sizeof(why)), why, sizeof(why));
  if (params) FUZZ_CHECK(ts_params_parse(params, NULL, 0, NULL, why, sizeof(why)) ==
                         (params->via.map.size ? TS_EBAD_REQUEST : 0));
}

static void check_packed_size(const msgpack_object *o) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  FUZZ_CHECK(msgpack_pack_object(&pk, *o) == 0);
  size_t exact = sb.size;
  msgpack_sbuffer_destroy(&sb);
  FUZZ_CHECK(ts_mp_packed_size(o, SIZE_MAX - 1) == exact);
  /* Within a limit: exact. Past it: more than the limit (a container stops counting at
   * limit + 1; a scalar says its size), which is all TS_P_MAP's check relies on. */
  const size_t limits[] = {0, 1, 16, 4096, exact / 2, exact, exact + 1};
  for (size_t i = 0; i < N(limits); i++) {
    size_t got = ts_mp_packed_size(o, limits[i]);
    if (exact <= limits[i]) FUZZ_CHECK(got == exact);
    else FUZZ_CHECK(got > limits[i] && got <= exact);
  }
}

static void check_message(const uint8_t *msg, size_t len) {
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  if (msgpack_unpack_next(&up, (const char *)msg, len, &off) != MSGPACK_UNPACK_SUCCESS) {
    msgpack_unpacked_destroy(&up); /* the daemon answers TS_EENVELOPE and closes */
    return;
  }
  const msgpack_object *o = &up.data;
  check_packed_size(o);

  ts_rpc_msg m;
  int rc = ts_rpc_decode_request(o, &m);
  FUZZ_CHECK(rc == 0 || rc == TS_EENVELOPE || rc == TS_EMSGID);
  if (rc == 0 && m.kind == TS_RPC_REQUEST) {
    FUZZ_CHECK(m.error == 0 || m.error == TS_EBAD_REQUEST);
    if (m.error) {
      FUZZ_CHECK(m.error_detail != NULL);
    } else {
      FUZZ_CHECK(m.method != NULL);
      if (m.params) {
        FUZZ_CHECK(m.params->type == MSGPACK_OBJECT_MAP);
        for (uint32_t i = 0; i < m.params->via.map.size; i++)
          FUZZ_CHECK(m.params->via.map.ptr[i].key.type == MSGPACK_OBJECT_STR);
      }
      check_params(m.params);
    }
  } else if (rc == 0) {
    FUZZ_CHECK(m.kind == TS_RPC_NOTIFICATION);
  }

  rc = ts_rpc_decode_reply(o, &m);
  FUZZ_CHECK(rc == 0 || rc == TS_EENVELOPE);
  if (rc == 0 && m.kind == TS_RPC_RESPONSE) FUZZ_CHECK(m.err && m.result);
  if (rc == 0 && m.kind == TS_RPC_NOTIFICATION) FUZZ_CHECK(m.method && m.args);
  msgpack_unpacked_destroy(&up);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    ts_scan s;
    ts_scan_init(&s);
    int n = ts_scan_feed(&s, data + off, size - off, &lim);
    if (n <= 0) break; /* incomplete, or the connection would be closed */
    check_message(data + off, (size_t)n);
    off += (size_t)n;
  }
  return 0;
}
