/* tests/fuzz/fuzz_json.c: msgpack <-> JSON (proto/json.h), both directions on every input.
 *
 * msgpack -> JSON: the input, as the daemon sees claims and session data: pre-scanned with the
 * daemon's default limits, unpacked by msgpack-c, then ts_mp_to_json. When that gives a value,
 * it must survive a round trip: ts_json_pack, unpack, ts_mp_to_json again, json_equal.
 * JSON -> msgpack: the input as JSON text (what the CLI and the client library read),
 * ts_json_pack, then the bytes must pass the pre-scan as one message of exactly their length
 * (when within its limits), unpack, and convert back to an equal value.
 * Equality is checked by a comparison that takes the length of keys into account (jansson
 * 2.14's json_equal looks keys up as C strings, so it calls two objects with a key holding
 * NUL different).
 * Claims: a JSON object converted from msgpack is what token.issue signs. ts_jws_sign promises
 * never to issue a token that ts_jws_verify would refuse: so when it signs one, the token
 * verifies to equal claims. */
#include "fuzz.h"

#include "error.h"
#include "json.h"
#include "jws.h"
#include "scan.h"

#include <msgpack.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

static const ts_scan_limits lim = {64 * 1024, 10};
static const ts_scan_limits roomy = {1u << 30, 31};

static uint8_t sign_pk[32], sign_sk[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  FUZZ_CHECK(sodium_init() >= 0);
  uint8_t seed[32];
  memset(seed, 7, sizeof(seed));
  crypto_sign_seed_keypair(sign_pk, sign_sk, seed);
  return 0;
}

static int key_fn(void *ctx, const char *kid, uint8_t out[32]) {
  (void)ctx;
  if (strcmp(kid, "k") != 0) return TS_ENOTFOUND;
  memcpy(out, sign_pk, 32);
  return 0;
}

/* json_equal, but keys compared with their length. */
static bool same(const json_t *a, const json_t *b) {
  if (!a || !b || json_typeof(a) != json_typeof(b)) return false;
  switch (json_typeof(a)) {
  case JSON_OBJECT: {
    const char *key;
    size_t klen;
    json_t *v;
    if (json_object_size(a) != json_object_size(b)) return false;
    json_object_keylen_foreach((json_t *)a, key, klen, v) {
      if (!same(v, json_object_getn(b, key, klen))) return false;
    }
    return true;
  }
  case JSON_ARRAY:
    if (json_array_size(a) != json_array_size(b)) return false;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!same(json_array_get(a, i), json_array_get(b, i))) return false;
    return true;
  case JSON_STRING:
    return json_string_length(a) == json_string_length(b) &&
           memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0;
  default:
    return json_equal(a, b);
  }
}

/* Signs claims as token.issue does; a token we issue must verify to the same claims. */
static void sign_verify(const json_t *claims) {
  char *token = NULL;
  int rc = ts_jws_sign(sign_sk, "k", "at+jwt", claims, &token);
  FUZZ_CHECK(rc == 0 || rc == TS_EBAD_REQUEST);
  if (rc != 0) {
    FUZZ_CHECK(token == NULL);
    return;
  }
  json_t *back = NULL;
  rc = ts_jws_verify(token, strlen(token), key_fn, NULL, "at+jwt", &back, NULL);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(same(back, claims));
  json_decref(back);
  free(token);
}

/* Packs j, unpacks it and converts it back; checks the result equals j. */
static void round_trip(const json_t *j) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  int rc = ts_json_pack(&pk, j);
  FUZZ_CHECK(rc == 0); /* every JSON value maps */
  ts_scan s;
  ts_scan_init(&s);
  int n = ts_scan_feed(&s, (const uint8_t *)sb.data, sb.size, &roomy);
  /* What we pack is plain msgpack: complete, or only too deep for the scanner. */
  FUZZ_CHECK(n == (int)sb.size || n == TS_EDEPTH);
  if (n > 0) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    FUZZ_CHECK(msgpack_unpack_next(&up, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    FUZZ_CHECK(off == sb.size);
    json_t *back = ts_mp_to_json(&up.data);
    FUZZ_CHECK(back != NULL);
    FUZZ_CHECK(same(back, j));
    json_decref(back);
    msgpack_unpacked_destroy(&up);
  }
  msgpack_sbuffer_destroy(&sb);
}

static void from_msgpack(const uint8_t *data, size_t size) {
  ts_scan s;
  ts_scan_init(&s);
  int n = ts_scan_feed(&s, data, size, &lim);
  if (n <= 0) return;
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  if (msgpack_unpack_next(&up, (const char *)data, (size_t)n, &off) == MSGPACK_UNPACK_SUCCESS) {
    json_t *j = ts_mp_to_json(&up.data);
    if (j) round_trip(j);
    if (json_is_object(j)) sign_verify(j);
    json_decref(j);
  }
  msgpack_unpacked_destroy(&up);
}

static void from_json(const uint8_t *data, size_t size) {
  json_error_t err;
  json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
  if (!j) return;
  round_trip(j);
  json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  from_msgpack(data, size);
  from_json(data, size);
  return 0;
}
