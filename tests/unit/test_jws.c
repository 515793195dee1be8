/* tests/unit/test_jws.c: compact JWS with Ed25519 and the claim checks (proto/jws.h).
 *
 * Known answers: RFC 8037 A.4 (the A.1 key signs {"alg":"EdDSA"} / "Example of Ed25519
 * signing" to the RFC's exact JWS), RFC 8032 7.1 TEST 1 (the same key; empty message).
 * Negative tests: every rejection of SECURITY.md "Tokens". Most bad tokens are *validly
 * signed* (ts_jws_sign_raw over a bad header or payload), so each test shows that the check
 * itself refuses, not that the signature happens to fail. */
#include "error.h"
#include "jws.h"
#include "tt.h"

#include <sodium.h>

/* RFC 8032 7.1 TEST 1 = RFC 8037 A.1 */
static const char *const SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char *const PK_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char *const SIG1_HEX =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b4"
    "6bd25bf5f0595bbe24655141438e7a100b";
static const char *const A1_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
static const char *const A4_JWS =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvM"
    "g3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/* The group order L, little-endian. */
static const uint8_t L_LE[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                                 0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                                 0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};

#define H_OK "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}"
#define P_OK "{\"sub\":\"alice\",\"exp\":2000000000}"

static uint8_t g_pk[32], g_sk[64];
static char g_long_kid[TS_JWS_KID_MAX + 1];

static void setup(void) {
  uint8_t seed[32];
  TT_ASSERT(sodium_init() >= 0);
  TT_EQ_INT(sodium_hex2bin(seed, 32, SEED_HEX, 64, NULL, NULL, NULL), 0);
  crypto_sign_seed_keypair(g_pk, g_sk, seed);
  memset(g_long_kid, 'a', TS_JWS_KID_MAX);
  g_long_kid[TS_JWS_KID_MAX] = '\0';
}

/* Knows "k1" and the 128-character kid, both for the A.1 key. */
static int lookup(void *ctx, const char *kid, uint8_t pk[32]) {
  (void)ctx;
  if (strcmp(kid, "k1") != 0 && strcmp(kid, g_long_kid) != 0) return TS_ENOTFOUND;
  memcpy(pk, g_pk, 32);
  return 0;
}

/* Knows every kid: isolates the verifier's own kid checks from the lookup. */
static int any_kid(void *ctx, const char *kid, uint8_t pk[32]) {
  (void)ctx, (void)kid;
  memcpy(pk, g_pk, 32);
  return 0;
}

static int never_called(void *ctx, const char *kid, uint8_t pk[32]) {
  (void)ctx, (void)kid, (void)pk;
  tt_fail(__FILE__, __LINE__, "key lookup reached");
}

/* A token over exactly these header and payload bytes, validly signed by the A.1 key. */
static char *tok(const char *hdr, const char *payload) {
  char *t = NULL;
  TT_EQ_INT(ts_jws_sign_raw(g_sk, hdr, strlen(hdr), payload, strlen(payload), &t), 0);
  return t;
}

static ts_jws_key_fn g_lookup = lookup;

static int verify_typ(const char *t, size_t len, const char *typ) {
  json_t *claims = NULL;
  char kid[TS_JWS_KID_MAX + 1];
  int rc = ts_jws_verify(t, len, g_lookup, NULL, typ, &claims, kid);
  if (rc == 0) TT_ASSERT(json_is_object(claims));
  else TT_ASSERT(claims == NULL && kid[0] == '\0');
  json_decref(claims);
  return rc;
}

static int verify(const char *t) { return verify_typ(t, strlen(t), "at+jwt"); }

/* verify(tok(hdr, payload)) */
static int verify_hp(const char *hdr, const char *payload) {
  char *t = tok(hdr, payload);
  int rc = verify(t);
  free(t);
  return rc;
}

/* Segment i (0..2) of a token, a new string. */
static char *seg(const char *t, int i) {
  for (; i > 0; i--) t = strchr(t, '.') + 1;
  const char *end = strchr(t, '.');
  size_t n = end ? (size_t)(end - t) : strlen(t);
  char *s = malloc(n + 1);
  memcpy(s, t, n);
  s[n] = '\0';
  return s;
}

static char *join3(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
  char *s = malloc(n);
  snprintf(s, n, "%s.%s.%s", a, b, c);
  return s;
}

static char *b64(const void *bin, size_t len) {
  char *s = NULL;
  TT_EQ_INT(ts_jws_b64_encode(bin, len, &s), 0);
  return s;
}

/* A valid token with its signature segment replaced by the encoding of sig (sig_len bytes). */
static char *with_sig(const char *t, const uint8_t *sig, size_t sig_len) {
  char *h = seg(t, 0), *p = seg(t, 1), *s = b64(sig, sig_len);
  char *r = join3(h, p, s);
  free(h), free(p), free(s);
  return r;
}

static void decode_sig(const char *t, uint8_t sig[64]) {
  char *s = seg(t, 2);
  size_t n;
  TT_EQ_INT(ts_jws_b64_decode(s, strlen(s), sig, 64, &n), 0);
  TT_EQ_INT(n, 64);
  free(s);
}

/* ------------------------------------------------------------------ known answers */

static void rfc8037_a4_sign(void) {
  setup();
  char *t = tok("{\"alg\":\"EdDSA\"}", "Example of Ed25519 signing");
  TT_EQ_STR(t, A4_JWS);
  uint8_t sig[64];
  decode_sig(t, sig);
  TT_EQ_INT(crypto_sign_verify_detached(sig, (const uint8_t *)t, strrchr(t, '.') - t, g_pk), 0);
  free(t);
}

static void rfc8032_test1(void) {
  setup();
  uint8_t pk[32], sig[64], want[64];
  TT_EQ_INT(sodium_hex2bin(pk, 32, PK_HEX, 64, NULL, NULL, NULL), 0);
  TT_ASSERT(memcmp(pk, g_pk, 32) == 0);
  TT_EQ_INT(sodium_hex2bin(want, 64, SIG1_HEX, 128, NULL, NULL, NULL), 0);
  crypto_sign_detached(sig, NULL, (const uint8_t *)"", 0, g_sk);
  TT_ASSERT(memcmp(sig, want, 64) == 0);
  char *x = b64(g_pk, 32);
  TT_EQ_STR(x, A1_X); /* RFC 8037 A.1's x is RFC 8032's public key */
  free(x);
}

/* libsodium 1.0.18 refuses S >= L by itself (sc25519_is_canonical): we rely on it. */
static void libsodium_rejects_s_plus_l(void) {
  setup();
  uint8_t sig[64];
  TT_EQ_INT(sodium_hex2bin(sig, 64, SIG1_HEX, 128, NULL, NULL, NULL), 0);
  TT_EQ_INT(crypto_sign_verify_detached(sig, (const uint8_t *)"", 0, g_pk), 0);
  sodium_add(sig + 32, L_LE, 32); /* S + L < 2^256: the same S mod L */
  TT_ASSERT(crypto_sign_verify_detached(sig, (const uint8_t *)"", 0, g_pk) != 0);
}

/* ------------------------------------------------------------------ base64url */

static int dec(const char *s, size_t *n) {
  uint8_t buf[16];
  return ts_jws_b64_decode(s, strlen(s), buf, sizeof(buf), n);
}

static void b64_canonical_only(void) {
  setup();
  size_t n;
  TT_EQ_INT(dec("", &n), 0);
  TT_EQ_INT(n, 0);
  TT_EQ_INT(dec("Zg", &n), 0);
  TT_EQ_INT(n, 1);
  TT_EQ_INT(dec("Zm8", &n), 0);
  TT_EQ_INT(dec("Zm9v", &n), 0);
  TT_EQ_INT(dec("-_-_", &n), 0);
  TT_EQ_INT(n, 3);
  TT_EQ_INT(dec("Zg==", &n), TS_EBAD_REQUEST);   /* padding */
  TT_EQ_INT(dec("Zm8=", &n), TS_EBAD_REQUEST);
  TT_EQ_INT(dec("+/+/", &n), TS_EBAD_REQUEST);   /* standard alphabet */
  TT_EQ_INT(dec("Zm9v+A", &n), TS_EBAD_REQUEST);
  TT_EQ_INT(dec("Zh", &n), TS_EBAD_REQUEST);     /* non-zero trailing bits */
  TT_EQ_INT(dec("Zm9", &n), TS_EBAD_REQUEST);
  TT_EQ_INT(dec("Z", &n), TS_EBAD_REQUEST);      /* 1 mod 4 */
  TT_EQ_INT(dec("Zm9vY", &n), TS_EBAD_REQUEST);
  TT_EQ_INT(dec(" Zg", &n), TS_EBAD_REQUEST);    /* whitespace */
  TT_EQ_INT(dec("Zm9v\n", &n), TS_EBAD_REQUEST);
  TT_EQ_INT(dec("Zm 9v", &n), TS_EBAD_REQUEST);
  TT_EQ_INT(dec("Zm9v.", &n), TS_EBAD_REQUEST);
  TT_EQ_INT(dec("AAAAAAAAAAAAAAAAAAAAAAAA", &n), TS_EBAD_REQUEST); /* 18 bytes > 16 */
  uint8_t b[3];
  TT_EQ_INT(ts_jws_b64_decode("Zm9v\0", 5, b, 3, &n), TS_EBAD_REQUEST); /* NUL */
}

/* ------------------------------------------------------------------ sign and verify */

static void sign_verify_roundtrip(void) {
  setup();
  json_t *claims = json_pack("{s:s, s:I, s:s}", "sub", "alice", "exp", (json_int_t)2000000000,
                             "note", "caf\xc3\xa9 / </script>");
  char *t = NULL, kid[TS_JWS_KID_MAX + 1];
  TT_EQ_INT(ts_jws_sign(g_sk, "k1", "at+jwt", claims, &t), 0);
  char *h = seg(t, 0);
  uint8_t hdr[128];
  size_t n;
  TT_EQ_INT(ts_jws_b64_decode(h, strlen(h), hdr, sizeof(hdr) - 1, &n), 0);
  hdr[n] = '\0';
  TT_EQ_STR((char *)hdr, H_OK); /* member order and no whitespace */
  json_t *got = NULL;
  TT_EQ_INT(ts_jws_verify(t, strlen(t), lookup, NULL, "at+jwt", &got, kid), 0);
  TT_EQ_STR(kid, "k1");
  TT_ASSERT(json_equal(got, claims));
  json_decref(got);
  TT_ASSERT(ts_jws_verify(t, strlen(t), lookup, NULL, "at+jwt", &got, NULL) == 0); /* no kid */
  json_decref(got);
  free(h), free(t);
  json_decref(claims);
}

/* The hand-written path (ts_jws_sign_payload, ts_jws_json_str; issue 11) gives the bytes
 * jansson gives: the same header, the same escaping, so the same token. */
static void sign_payload_matches_jansson(void) {
  setup();
  static const char tricky[] = "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f caf\xc3\xa9 \xf0\x9f\x94\x91";
  json_t *claims = json_pack("{s:s, s:I, s:s}", "sub", tricky, "exp", (json_int_t)2000000000,
                             "scope", "a b");
  char *dumped = json_dumps(claims, JSON_COMPACT);
  char *want = NULL, *got = NULL;
  TT_EQ_INT(ts_jws_sign(g_sk, "k\"1", "at+jwt", claims, &want), 0);
  TT_EQ_INT(ts_jws_sign_payload(g_sk, "k\"1", "at+jwt", dumped, strlen(dumped), &got), 0);
  TT_EQ_STR(got, want);
  /* One string, escaped by hand, as jansson dumps it. */
  json_t *one = json_string(tricky);
  char *js = json_dumps(one, JSON_ENCODE_ANY);
  char buf[6 * sizeof(tricky) + 2];
  size_t n = ts_jws_json_str(buf, tricky, strlen(tricky));
  TT_ASSERT(n == strlen(js) && memcmp(buf, js, n) == 0);
  TT_EQ_INT((int)ts_jws_json_str(buf, "a\0b", 3), 0); /* a NUL is refused */
  free(got);
  TT_EQ_INT(ts_jws_sign_payload(g_sk, "../k", "at+jwt", dumped, strlen(dumped), &got), TS_EINTERNAL);
  free(js);
  json_decref(one);
  free(dumped);
  free(want);
  free(got);
  json_decref(claims);
}

static void sign_refuses_bad_input(void) {
  setup();
  json_t *arr = json_array(), *obj = json_object(), *big = json_object();
  char *t = (char *)1;
  TT_EQ_INT(ts_jws_sign(g_sk, "k1", "at+jwt", arr, &t), TS_EBAD_REQUEST);
  TT_ASSERT(t == NULL);
  TT_EQ_INT(ts_jws_sign(g_sk, "../k", "at+jwt", obj, &t), TS_EINTERNAL);
  TT_EQ_INT(ts_jws_sign(g_sk, "", "at+jwt", obj, &t), TS_EINTERNAL);
  TT_EQ_INT(ts_jws_sign(g_sk, "k1", "", obj, &t), TS_EINTERNAL);
  char *fill = malloc(7000);
  memset(fill, 'x', 6999);
  fill[6999] = '\0';
  json_object_set_new(big, "fill", json_string(fill));
  TT_EQ_INT(ts_jws_sign(g_sk, "k1", "at+jwt", big, &t), TS_EBAD_REQUEST); /* > 8 KiB */
  free(fill);
  json_decref(arr), json_decref(obj), json_decref(big);
}

static void alg_ed25519_accepted(void) {
  setup();
  TT_EQ_INT(verify_hp("{\"alg\":\"Ed25519\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}", P_OK), 0);
  /* member order and extra harmless members do not matter to the verifier */
  TT_EQ_INT(verify_hp("{\"kid\":\"k1\",\"typ\":\"at+jwt\",\"alg\":\"EdDSA\",\"cty\":\"x\"}", P_OK), 0);
}

/* ------------------------------------------------------------------ header rejections */

static void reject_alg(void) {
  setup();
  static const char *const bad[] = {
      "{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"alg\":\"eddsa\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"alg\":\"EDDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"alg\":\"ed25519\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"alg\":\"EdDSA \",\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"alg\":[\"EdDSA\"],\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"alg\":null,\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
      "{\"typ\":\"at+jwt\",\"kid\":\"k1\"}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    TT_ASSERT_MSG(verify_hp(bad[i], P_OK) == TS_EUNAUTHENTICATED, "accepted %s", bad[i]);
}

/* alg none without a signature, and HS256 keyed with the public key's bytes (the classic
 * key-confusion attack): both refused. */
static void reject_none_and_hs256_confusion(void) {
  setup();
  char *h = b64("{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}", 41);
  char *p = b64(P_OK, strlen(P_OK));
  char *t = join3(h, p, "");
  TT_EQ_INT(verify(t), TS_EUNAUTHENTICATED);
  free(h), free(t);
  const char *hh = "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"k1\"}";
  h = b64(hh, strlen(hh));
  char *input = join3(h, p, "");
  input[strlen(input) - 1] = '\0'; /* "h.p" */
  uint8_t mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, g_pk, 32);
  crypto_auth_hmacsha256_update(&st, (const uint8_t *)input, strlen(input));
  crypto_auth_hmacsha256_final(&st, mac);
  char *s = b64(mac, sizeof(mac));
  t = join3(h, p, s);
  TT_EQ_INT(verify(t), TS_EUNAUTHENTICATED);
  free(h), free(p), free(s), free(t), free(input);
}

static void reject_typ(void) {
  setup();
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"rt+jwt\",\"kid\":\"k1\"}", P_OK),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"AT+JWT\",\"kid\":\"k1\"}", P_OK),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"k1\"}", P_OK),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"kid\":\"k1\"}", P_OK), TS_EUNAUTHENTICATED);
  char *t = tok(H_OK, P_OK);
  TT_EQ_INT(verify_typ(t, strlen(t), "pt+jwt"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_typ(t, strlen(t), "at+jw"), TS_EUNAUTHENTICATED);
  free(t);
}

static void reject_kid(void) {
  setup();
  char hdr[512];
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", g_long_kid);
  TT_EQ_INT(verify_hp(hdr, P_OK), 0); /* 128 characters: the limit, accepted */
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%sa\"}", g_long_kid);
  TT_EQ_INT(verify_hp(hdr, P_OK), TS_EUNAUTHENTICATED); /* 129 */
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k2\"}", P_OK),
            TS_EUNAUTHENTICATED); /* unknown */
  g_lookup = any_kid; /* from here on only the kid checks can refuse */
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%sa\"}", g_long_kid);
  TT_EQ_INT(verify_hp(hdr, P_OK), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"a.b\"}", P_OK), 0);
  static const char *const bad[] = {
      "\"\"", "1", "null", "[\"k1\"]", "{\"k1\":1}", "\"../k1\"", "\"a/b\"",
      "\"k1/\"", "\"a\\\\b\"", "\"..\"", "\"k1\\u0000\"", "\"k\\n1\"",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":%s}", bad[i]);
    TT_ASSERT_MSG(verify_hp(hdr, P_OK) == TS_EUNAUTHENTICATED, "accepted kid %s", bad[i]);
  }
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\"}", P_OK), TS_EUNAUTHENTICATED);
}

static void reject_key_headers(void) {
  setup();
  static const char *const extra[] = {
      "\"jku\":\"https://evil.example/jwks\"", "\"x5u\":\"https://evil.example/cert\"",
      "\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
      "\"x5c\":[\"MIIB\"]", "\"crit\":[\"exp\"]", "\"crit\":[]", "\"jku\":null",
  };
  char hdr[512];
  for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\",%s}", extra[i]);
    TT_ASSERT_MSG(verify_hp(hdr, P_OK) == TS_EUNAUTHENTICATED, "accepted %s", hdr);
  }
}

static void reject_duplicates(void) {
  setup();
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\",\"alg\":\"none\"}", P_OK),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\",\"kid\":\"k1\"}", P_OK),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, "{\"sub\":\"alice\",\"exp\":2000000000,\"sub\":\"admin\"}"),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, "{\"sub\":\"a\",\"exp\":1,\"x\":{\"y\":1,\"y\":2}}"),
            TS_EUNAUTHENTICATED);
}

static void reject_not_json_object(void) {
  setup();
  TT_EQ_INT(verify_hp("[\"EdDSA\"]", P_OK), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\"", P_OK),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK "x", P_OK), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, "[1,2]"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, "\"alice\""), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, "Example of Ed25519 signing"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, ""), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp("", P_OK), TS_EUNAUTHENTICATED);
}

static void reject_invalid_utf8(void) {
  setup();
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\",\"x\":\"\xff\"}", P_OK),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\xc3\"}", P_OK),
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, "{\"sub\":\"al\xc0\xafice\",\"exp\":2000000000}"), /* overlong */
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, "{\"sub\":\"\xed\xa0\x80\",\"exp\":2000000000}"), /* surrogate */
            TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_hp(H_OK, "{\"sub\":\"caf\xc3\xa9\",\"exp\":2000000000}"), 0); /* valid */
}

/* ------------------------------------------------------------------ shape rejections */

static void reject_segments(void) {
  setup();
  char *t = tok(H_OK, P_OK), *h = seg(t, 0), *p = seg(t, 1), *s = seg(t, 2);
  TT_EQ_INT(verify(t), 0);
  char two[1024], four[1024];
  snprintf(two, sizeof(two), "%s.%s", h, p);
  TT_EQ_INT(verify(two), TS_EUNAUTHENTICATED);
  snprintf(two, sizeof(two), "%s.%s%s", h, p, s);
  TT_EQ_INT(verify(two), TS_EUNAUTHENTICATED);
  snprintf(four, sizeof(four), "%s.%s.%s.%s", h, p, s, s);
  TT_EQ_INT(verify(four), TS_EUNAUTHENTICATED);
  snprintf(four, sizeof(four), "%s.%s.%s.", h, p, s);
  TT_EQ_INT(verify(four), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify(""), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify(".."), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify_typ(t, strlen(t) - 1, "at+jwt"), TS_EUNAUTHENTICATED); /* len is honoured */
  free(t), free(h), free(p), free(s);
}

/* Each segment spelled non-canonically while decoding to the same bytes (or trivially
 * close): padding, whitespace, '+' '/', trailing bits. */
static void reject_noncanonical_base64(void) {
  setup();
  char *t = tok(H_OK, P_OK), *h = seg(t, 0), *p = seg(t, 1), *s = seg(t, 2);
  char buf[1024];
  const char *fmts[] = {"%s=.%s.%s", "%s.%s==.%s", "%s.%s.%s=", " %s.%s.%s", "%s.%s.%s\n",
                        "%s.%s .%s", "%s.%s.%s "};
  for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
    snprintf(buf, sizeof(buf), fmts[i], h, p, s);
    TT_ASSERT_MSG(verify(buf) == TS_EUNAUTHENTICATED, "accepted variant %zu", i);
  }
  /* the signature's last character carries 2 data bits and 4 trailing bits: set one */
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t sl = strlen(s);
  size_t idx = (size_t)(strchr(alphabet, s[sl - 1]) - alphabet);
  TT_EQ_INT(idx & 15, 0);
  s[sl - 1] = alphabet[idx | 1];
  snprintf(buf, sizeof(buf), "%s.%s.%s", h, p, s);
  TT_EQ_INT(verify(buf), TS_EUNAUTHENTICATED);
  s[sl - 1] = alphabet[idx];
  /* '+' and '/' in place of '-' and '_' (same bits in standard base64) */
  char *u = tok(H_OK, "{\"sub\":\"\xef\xbf\xbe\xef\xbf\xbf\",\"exp\":2000000000,\"n\":\"~~~~\"}");
  TT_EQ_INT(verify(u), 0);
  char *v = strdup(u);
  int swapped = 0;
  for (char *c = v; *c; c++) {
    if (*c == '-') *c = '+', swapped++;
    if (*c == '_') *c = '/', swapped++;
  }
  TT_ASSERT(swapped > 0);
  TT_EQ_INT(verify(v), TS_EUNAUTHENTICATED);
  free(t), free(h), free(p), free(s), free(u), free(v);
}

static void reject_signature_length(void) {
  setup();
  char *t = tok(H_OK, P_OK);
  uint8_t sig[65] = {0};
  decode_sig(t, sig);
  char *t63 = with_sig(t, sig, 63), *t65 = with_sig(t, sig, 65), *t0 = with_sig(t, sig, 0);
  TT_EQ_INT(verify(t63), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify(t65), TS_EUNAUTHENTICATED);
  TT_EQ_INT(verify(t0), TS_EUNAUTHENTICATED);
  char *t64 = with_sig(t, sig, 64);
  TT_EQ_INT(verify(t64), 0);
  free(t), free(t63), free(t65), free(t0), free(t64);
}

static void reject_s_not_below_l(void) {
  setup();
  char *t = tok(H_OK, P_OK);
  uint8_t sig[64];
  decode_sig(t, sig);
  sodium_add(sig + 32, L_LE, 32);
  char *bad = with_sig(t, sig, 64);
  TT_EQ_INT(verify(bad), TS_EUNAUTHENTICATED);
  free(t), free(bad);
}

static void reject_tampered(void) {
  setup();
  char *t = tok(H_OK, P_OK);
  char *other = tok("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\",\"cty\":\"x\"}",
                    "{\"sub\":\"admin\",\"exp\":2000000000}");
  char *h = seg(t, 0), *p = seg(t, 1), *s = seg(t, 2), *h2 = seg(other, 0), *p2 = seg(other, 1);
  char *a = join3(h2, p, s), *b = join3(h, p2, s);
  TT_EQ_INT(verify(a), TS_EUNAUTHENTICATED); /* header swapped */
  TT_EQ_INT(verify(b), TS_EUNAUTHENTICATED); /* payload swapped */
  uint8_t sig[64];
  decode_sig(t, sig);
  for (int bit = 0; bit < 512; bit += 37) {
    sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    char *c = with_sig(t, sig, 64);
    TT_ASSERT_MSG(verify(c) == TS_EUNAUTHENTICATED, "signature bit %d", bit);
    sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    free(c);
  }
  /* another key's valid signature */
  uint8_t pk2[32], sk2[64];
  crypto_sign_keypair(pk2, sk2);
  char *t2 = NULL;
  TT_EQ_INT(ts_jws_sign_raw(sk2, H_OK, strlen(H_OK), P_OK, strlen(P_OK), &t2), 0);
  TT_EQ_INT(verify(t2), TS_EUNAUTHENTICATED);
  free(t), free(other), free(h), free(p), free(s), free(h2), free(p2), free(a), free(b), free(t2);
}

/* A validly signed token of exactly want bytes (header variants cover every length mod 4). */
static char *token_of_len(size_t want) {
  static const char *const hdrs[] = {
      H_OK,
      "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\",\"c\":\"\"}",
      "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"k1\",\"c\":\"x\"}",
  };
  char *payload = malloc(want + 64), *t = NULL;
  for (size_t i = 0; !t && i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
    size_t hl = ts_jws_b64_len(strlen(hdrs[i]));
    for (size_t fill = 0; !t && fill < want; fill++) {
      int n = snprintf(payload, want + 64, "{\"exp\":2000000000,\"f\":\"%*s\"}", (int)fill, "");
      size_t total = hl + 1 + ts_jws_b64_len((size_t)n) + 1 + ts_jws_b64_len(64);
      if (total > want) break;
      if (total == want) t = tok(hdrs[i], payload);
    }
  }
  free(payload);
  TT_ASSERT(t != NULL && strlen(t) == want);
  return t;
}

/* Exactly 8192 bytes pass; one more is refused before anything is decoded. */
static void reject_oversized(void) {
  setup();
  char *t = token_of_len(TS_JWS_MAX_TOKEN);
  TT_EQ_INT(verify(t), 0);
  free(t);
  t = token_of_len(TS_JWS_MAX_TOKEN + 1);
  json_t *claims = NULL;
  TT_EQ_INT(ts_jws_verify(t, strlen(t), never_called, NULL, "at+jwt", &claims, NULL),
            TS_EUNAUTHENTICATED);
  TT_ASSERT(claims == NULL);
  TT_EQ_INT(ts_jws_verify(t, strlen(t), lookup, NULL, "at+jwt", &claims, NULL),
            TS_EUNAUTHENTICATED);
  free(t);
  char *junk = malloc(1 << 20);
  memset(junk, 'A', 1 << 20);
  TT_EQ_INT(ts_jws_verify(junk, 1 << 20, never_called, NULL, "at+jwt", &claims, NULL),
            TS_EUNAUTHENTICATED);
  free(junk);
}

/* ------------------------------------------------------------------ claims */

static json_t *claims(const char *text) {
  json_error_t e;
  json_t *c = json_loads(text, 0, &e);
  TT_ASSERT_MSG(c != NULL, "bad test JSON %s", text);
  return c;
}

static int check(const char *text, int64_t now, const char *iss, const char *aud) {
  ts_claim_rules r = {.now = now, .leeway = 60, .iss = iss, .aud = aud};
  json_t *c = claims(text);
  int rc = ts_jws_check_claims(c, &r);
  json_decref(c);
  return rc;
}

static void claims_exp_boundary(void) {
  const char *c = "{\"exp\":1000}";
  TT_EQ_INT(check(c, 0, NULL, NULL), 0);
  TT_EQ_INT(check(c, 1000, NULL, NULL), 0);
  TT_EQ_INT(check(c, 1059, NULL, NULL), 0); /* the last second of the leeway */
  TT_EQ_INT(check(c, 1060, NULL, NULL), TS_EEXPIRED); /* now == exp + leeway: refused */
  TT_EQ_INT(check(c, 1061, NULL, NULL), TS_EEXPIRED);
  TT_EQ_INT(check(c, 5000, NULL, NULL), TS_EEXPIRED);
  TT_EQ_INT(check("{\"exp\":9223372036854775807}", 2000000000, NULL, NULL), 0); /* no overflow */
  ts_claim_rules r = {.now = 1001, .leeway = 0};
  json_t *j = claims(c);
  TT_EQ_INT(ts_jws_check_claims(j, &r), TS_EEXPIRED);
  r.now = 1000; /* RFC 7519 4.1.4: refused "on or after" exp */
  TT_EQ_INT(ts_jws_check_claims(j, &r), TS_EEXPIRED);
  r.now = 999;
  TT_EQ_INT(ts_jws_check_claims(j, &r), 0);
  json_decref(j);
}

static void claims_nbf_boundary(void) {
  const char *c = "{\"exp\":5000,\"nbf\":1000}";
  TT_EQ_INT(check(c, 1000, NULL, NULL), 0);
  TT_EQ_INT(check(c, 940, NULL, NULL), 0); /* now == nbf - leeway: valid */
  TT_EQ_INT(check(c, 939, NULL, NULL), TS_EEXPIRED);
  TT_EQ_INT(check(c, 0, NULL, NULL), TS_EEXPIRED);
  TT_EQ_INT(check("{\"exp\":5000,\"nbf\":-9223372036854775807}", 100, NULL, NULL), 0);
}

/* iat in the future is refused beyond the leeway; exactly at now + leeway it passes. */
static void claims_iat_in_the_future(void) {
  const char *c = "{\"exp\":9000,\"iat\":1060}";
  TT_EQ_INT(check(c, 1000, NULL, NULL), 0);    /* iat == now + leeway */
  TT_EQ_INT(check(c, 999, NULL, NULL), TS_EEXPIRED);
  TT_EQ_INT(check("{\"exp\":9000,\"iat\":100000}", 1000, NULL, NULL), TS_EEXPIRED);
  TT_EQ_INT(check("{\"exp\":9000,\"iat\":9223372036854775807}", 1000, NULL, NULL), TS_EEXPIRED);
  TT_EQ_INT(check("{\"exp\":9000,\"iat\":-5}", 1000, NULL, NULL), 0);
  ts_claim_rules r = {.now = 1000, .leeway = 0};
  json_t *j = claims("{\"exp\":9000,\"iat\":1001}");
  TT_EQ_INT(ts_jws_check_claims(j, &r), TS_EEXPIRED);
  r.now = 1001;
  TT_EQ_INT(ts_jws_check_claims(j, &r), 0);
  r.now = INT64_MAX; /* no overflow on now + leeway either */
  r.leeway = 60;
  TT_EQ_INT(ts_jws_check_claims(j, &r), TS_EEXPIRED); /* past exp, not an overflow verdict */
  json_decref(j);
}

static void claims_types(void) {
  TT_EQ_INT(check("{}", 0, NULL, NULL), TS_EUNAUTHENTICATED);            /* exp required */
  TT_EQ_INT(check("{\"exp\":\"5000\"}", 0, NULL, NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000.0}", 0, NULL, NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":null}", 0, NULL, NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"nbf\":\"1\"}", 0, NULL, NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"iat\":1.5}", 0, NULL, NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"iat\":1}", 0, NULL, NULL), 0);
  ts_claim_rules r = {.now = 0};
  json_t *a = json_array();
  TT_EQ_INT(ts_jws_check_claims(a, &r), TS_EUNAUTHENTICATED);
  json_decref(a);
}

static void claims_iss(void) {
  TT_EQ_INT(check("{\"exp\":5000,\"iss\":\"tessera\"}", 0, "tessera", NULL), 0);
  TT_EQ_INT(check("{\"exp\":5000,\"iss\":\"evil\"}", 0, "tessera", NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"iss\":\"tessera \"}", 0, "tessera", NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000}", 0, "tessera", NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"iss\":[\"tessera\"]}", 0, "tessera", NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"iss\":\"evil\"}", 0, NULL, NULL), 0); /* not checked */
  /* identity before time: a foreign expired token is unauthenticated */
  TT_EQ_INT(check("{\"exp\":5000,\"iss\":\"evil\"}", 9000, "tessera", NULL), TS_EUNAUTHENTICATED);
}

static void claims_aud(void) {
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":\"api\"}", 0, NULL, "api"), 0);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":[\"web\",\"api\"]}", 0, NULL, "api"), 0);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":\"web\"}", 0, NULL, "api"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":\"apix\"}", 0, NULL, "api"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":[\"web\"]}", 0, NULL, "api"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":[]}", 0, NULL, "api"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":[\"api\",1]}", 0, NULL, "api"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":1}", 0, NULL, "api"), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000}", 0, NULL, "api"), TS_EUNAUTHENTICATED); /* aud missing */
  /* a token carrying aud when none is expected (RFC 7519 4.1.3) */
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":\"api\"}", 0, NULL, NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":[]}", 0, NULL, NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000,\"aud\":null}", 0, NULL, NULL), TS_EUNAUTHENTICATED);
  TT_EQ_INT(check("{\"exp\":5000}", 0, NULL, NULL), 0);
}

static const tt_case cases[] = {
    TT_CASE(rfc8037_a4_sign),
    TT_CASE(rfc8032_test1),
    TT_CASE(libsodium_rejects_s_plus_l),
    TT_CASE(b64_canonical_only),
    TT_CASE(sign_verify_roundtrip),
    TT_CASE(sign_payload_matches_jansson),
    TT_CASE(sign_refuses_bad_input),
    TT_CASE(alg_ed25519_accepted),
    TT_CASE(reject_alg),
    TT_CASE(reject_none_and_hs256_confusion),
    TT_CASE(reject_typ),
    TT_CASE(reject_kid),
    TT_CASE(reject_key_headers),
    TT_CASE(reject_duplicates),
    TT_CASE(reject_not_json_object),
    TT_CASE(reject_invalid_utf8),
    TT_CASE(reject_segments),
    TT_CASE(reject_noncanonical_base64),
    TT_CASE(reject_signature_length),
    TT_CASE(reject_s_not_below_l),
    TT_CASE(reject_tampered),
    TT_CASE(reject_oversized),
    TT_CASE(claims_exp_boundary),
    TT_CASE(claims_nbf_boundary),
    TT_CASE(claims_iat_in_the_future),
    TT_CASE(claims_types),
    TT_CASE(claims_iss),
    TT_CASE(claims_aud),
};

TT_MAIN(cases)
