/* tests/fuzz/fuzz_jws.c: compact JWS parsing and verification, JWT claim checks (proto/jws.h).
 *
 * The input is a token. Keys: the RFC 8037 appendix A key (kids "rfc8037" and "k1"), another
 * valid key ("other"), the all-zero small-order point ("zero"); every other kid is unknown.
 *   1. ts_jws_verify on the input as given, with typ "at+jwt" and "rt+jwt": only 0 or
 *      TS_EUNAUTHENTICATED; a forgery must fail (only a mutation that keeps a valid signature,
 *      i.e. none, may pass: this is where parsing of untrusted headers is fuzzed);
 *   2. the input's first two segments re-signed with the RFC 8037 key and verified again, so
 *      that the header checks after the signature and the payload parsing see arbitrary
 *      bytes too;
 *   3. whatever verifies is checked by ts_jws_check_claims under several rule sets (0,
 *      TS_EUNAUTHENTICATED or TS_EEXPIRED only, also at INT64 extremes), and signed again by
 *      ts_jws_sign: a token we issue must verify to the same claims and kid;
 *   4. base64url: whatever ts_jws_b64_decode accepts re-encodes to the same text. */
#include "fuzz.h"

#include "error.h"
#include "jws.h"

#include <sodium.h>
#include <string.h>

static uint8_t rfc_pk[32], rfc_sk[64], other_pk[32];
static const uint8_t zero_pk[32];

static int key_fn(void *ctx, const char *kid, uint8_t pk[32]) {
  FUZZ_CHECK(ctx == (void *)key_fn);
  size_t n = strlen(kid);
  FUZZ_CHECK(n >= 1 && n <= TS_JWS_KID_MAX);
  const uint8_t *k = NULL;
  if (strcmp(kid, "rfc8037") == 0 || strcmp(kid, "k1") == 0) k = rfc_pk;
  else if (strcmp(kid, "other") == 0) k = other_pk;
  else if (strcmp(kid, "zero") == 0) k = zero_pk;
  if (!k) return TS_ENOTFOUND;
  memcpy(pk, k, 32);
  return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  FUZZ_CHECK(sodium_init() >= 0);
  /* RFC 8037 A.1/A.2 */
  static const char d[] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
  static const char x[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
  uint8_t seed[32], xb[32];
  size_t n;
  FUZZ_CHECK(ts_jws_b64_decode(d, strlen(d), seed, sizeof(seed), &n) == 0 && n == 32);
  FUZZ_CHECK(ts_jws_b64_decode(x, strlen(x), xb, sizeof(xb), &n) == 0 && n == 32);
  crypto_sign_seed_keypair(rfc_pk, rfc_sk, seed);
  FUZZ_CHECK(memcmp(rfc_pk, xb, 32) == 0);
  uint8_t sk2[64];
  memset(seed, 1, sizeof(seed));
  crypto_sign_seed_keypair(other_pk, sk2, seed);
  return 0;
}

static void check_claims(const json_t *claims) {
  static const ts_claim_rules rules[] = {
      {1700000000, 60, "tessera", NULL},
      {1700000000, 0, NULL, "api"},
      {INT64_MAX, INT64_MAX, NULL, ""},
      {INT64_MIN, INT64_MAX, "tessera", "api"},
      {0, -5, NULL, NULL},
  };
  for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
    int rc = ts_jws_check_claims(claims, &rules[i]);
    FUZZ_CHECK(rc == 0 || rc == TS_EUNAUTHENTICATED || rc == TS_EEXPIRED);
    if (rc == 0) {
      json_t *exp = json_object_get(claims, "exp");
      FUZZ_CHECK(json_is_integer(exp));
    }
  }
}

/* Verifies token; when it passes, checks its claims and that re-signing them round-trips. */
static void verify(const char *token, size_t len, const char *typ, int resign) {
  json_t *claims = (json_t *)1;
  char kid[TS_JWS_KID_MAX + 1];
  memset(kid, 'x', sizeof(kid));
  int rc = ts_jws_verify(token, len, key_fn, (void *)key_fn, typ, &claims, kid);
  FUZZ_CHECK(rc == 0 || rc == TS_EUNAUTHENTICATED || rc == TS_ENOMEM);
  if (rc != 0) {
    FUZZ_CHECK(claims == NULL && kid[0] == '\0');
    return;
  }
  FUZZ_CHECK(json_is_object(claims));
  FUZZ_CHECK(strnlen(kid, sizeof(kid)) >= 1 && strnlen(kid, sizeof(kid)) <= TS_JWS_KID_MAX);
  check_claims(claims);
  if (resign && strcmp(kid, "zero") != 0) {
    char *again = NULL;
    uint8_t pk[32];
    FUZZ_CHECK(key_fn((void *)key_fn, kid, pk) == 0);
    /* Only the RFC key's secret is known here: sign with it under a kid that maps to it. */
    rc = ts_jws_sign(rfc_sk, "rfc8037", typ, claims, &again);
    FUZZ_CHECK(rc == 0 || rc == TS_EBAD_REQUEST);
    if (rc == 0) {
      json_t *back = NULL;
      char kid2[TS_JWS_KID_MAX + 1];
      FUZZ_CHECK(strlen(again) <= TS_JWS_MAX_TOKEN);
      rc = ts_jws_verify(again, strlen(again), key_fn, (void *)key_fn, typ, &back, kid2);
      FUZZ_CHECK(rc == 0);
      FUZZ_CHECK(strcmp(kid2, "rfc8037") == 0);
      FUZZ_CHECK(json_equal(back, claims));
      json_decref(back);
      free(again);
    } else {
      FUZZ_CHECK(again == NULL);
    }
  }
  json_decref(claims);
}

static void check_b64(const uint8_t *data, size_t size) {
  if (size > 2 * TS_JWS_MAX_TOKEN) return;
  size_t cap = size / 4 * 3 + 3, n = 0;
  uint8_t *bin = malloc(cap);
  FUZZ_CHECK(bin != NULL);
  if (ts_jws_b64_decode((const char *)data, size, bin, cap, &n) == 0) {
    FUZZ_CHECK(n <= cap);
    char *text = NULL;
    FUZZ_CHECK(ts_jws_b64_encode(bin, n, &text) == 0);
    FUZZ_CHECK(strlen(text) == size && memcmp(text, data, size) == 0);
    free(text);
    /* A capacity too small for the result fails (and does not write past it). */
    if (n > 0) {
      uint8_t *small = malloc(n - 1 ? n - 1 : 1);
      FUZZ_CHECK(small != NULL);
      size_t m = 0;
      FUZZ_CHECK(ts_jws_b64_decode((const char *)data, size, small, n - 1, &m) != 0 && m == 0);
      free(small);
    }
  }
  free(bin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *tok = (const char *)data;
  verify(tok, size, "at+jwt", 1);
  verify(tok, size, "rt+jwt", 0);

  /* Re-sign the first two segments: header "." payload "." b64(sig) */
  const uint8_t *d1 = memchr(data, '.', size);
  const uint8_t *d2 = d1 ? memchr(d1 + 1, '.', size - (size_t)(d1 + 1 - data)) : NULL;
  size_t head = d2 ? (size_t)(d2 - data) : size; /* no second dot: sign everything */
  if (head <= TS_JWS_MAX_TOKEN && d1) {
    size_t sl = ts_jws_b64_len(TS_JWS_SIG_LEN);
    char *t = malloc(head + 1 + sl + 1);
    FUZZ_CHECK(t != NULL);
    memcpy(t, data, head);
    uint8_t sig[TS_JWS_SIG_LEN];
    crypto_sign_detached(sig, NULL, data, head, rfc_sk);
    t[head] = '.';
    ts_jws_b64_encode_to(t + head + 1, sig, sizeof(sig));
    verify(t, head + 1 + sl, "at+jwt", 1);
    free(t);
  }

  check_b64(data, size);
  if (d1) check_b64(data, (size_t)(d1 - data));
  return 0;
}
