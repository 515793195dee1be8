/* tests/integration/test_tokens.c: access tokens against the real daemon (PROTOCOL.md
 * "tokens", "Errors", "Limits"; SECURITY.md "Tokens"): the issue/verify round trip, bad issue
 * params, and every way a token is refused and the code it is refused with (tampering, foreign
 * algorithms, wrong typ, unknown kid, key-carrying headers, duplicate members, issuer,
 * audience, times and leeway, size). Keys: test_keys.c; purpose tokens: test_purpose.c; the
 * CLI: test_cli.c.
 *
 * Forged tokens are made by the tests, not by the daemon (tests/lib/forge.h): with the
 * daemon's own key when a test needs a token that is well signed but wrong in some other way,
 * with ts_jws_sign_raw so that the exact header and payload bytes are ours. Each forged case
 * has a well-formed twin that passes, so a refusal means what it claims.
 *
 * Waiting: replies are the signal. The only wait on the clock is where the wall clock is the
 * thing under test (a token with ttl 1 and no leeway). */
#include "calls.h"
#include "forge.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include "jws.h"
#include "keyring.h"

#include <tessera/tessera.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef TESSERAD_PATH
#error "TESSERAD_PATH must be defined by the build"
#endif

#define ACCESS_TTL_DEFAULT 900    /* --access-ttl 15m */
#define MAX_ACCESS_TTL 86400      /* --max-access-ttl 24h */
#define MAX_PURPOSE_TTL 2592000   /* --max-purpose-ttl 30d */

static void expect_refused(tessera_client *c, const char *what, const char *tok,
                           const char *code) {
  tc_expect_verify(c, what, tok, NULL, NULL, code);
}

/* ---- issue and verify ---------------------------------------------------------------------- */

static void issue_verify_round_trip(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *reply = NULL;
  json_t *extra = json_pack("{s:s, s:i, s:{s:[i, i]}}", "role", "admin", "n", 7, "nested", "a",
                            1, 2);
  char *tok = tc_issue(c, json_pack("{s:s, s:s, s:s, s:O}", "sub", "alice", "aud", "api", "scope",
                                    "read write", "claims", extra), &reply);
  const char *jti = tc_str(reply, "jti");
  TT_EQ_INT(strlen(jti), 22);
  long long expires_at = tc_int(reply, "expires_at"), expires_in = tc_int(reply, "expires_in");
  TT_ASSERT_MSG(expires_in == ACCESS_TTL_DEFAULT || expires_in == ACCESS_TTL_DEFAULT - 1,
                "expires_in %lld", expires_in);

  /* The header is exactly the three members the protocol names. */
  json_t *hdr = tf_segment_json(tok, 0);
  TT_EQ_INT(json_object_size(hdr), 3);
  TT_EQ_STR(tc_str(hdr, "alg"), "EdDSA");
  TT_EQ_STR(tc_str(hdr, "typ"), "at+jwt");

  json_t *r = tc_verify_ok(c, "round trip", tok, "api", NULL);
  json_t *cl = json_object_get(r, "claims");
  TT_EQ_STR(tc_str(cl, "iss"), "tessera");
  TT_EQ_STR(tc_str(cl, "sub"), "alice");
  TT_EQ_STR(tc_str(cl, "aud"), "api");
  TT_EQ_STR(tc_str(cl, "scope"), "read write");
  TT_EQ_STR(tc_str(cl, "jti"), jti);
  TT_EQ_STR(tc_str(cl, "role"), "admin");
  TT_EQ_INT(tc_int(cl, "n"), 7);
  TT_ASSERT(json_equal(json_object_get(cl, "nested"), json_object_get(extra, "nested")));
  TT_EQ_INT(tc_int(cl, "exp"), expires_at);
  TT_EQ_INT(tc_int(cl, "exp") - tc_int(cl, "iat"), ACCESS_TTL_DEFAULT);
  TT_EQ_INT(tc_int(cl, "nbf"), tc_int(cl, "iat"));
  TT_ASSERT(llabs(tc_int(cl, "iat") - (long long)time(NULL)) <= 2);
  TT_ASSERT(json_object_get(cl, "purpose") == NULL);
  TT_EQ_STR(tc_str(r, "kid"), tc_str(hdr, "kid"));

  /* A local verifier needs nothing but the JWKS: the signature checks with the published x. */
  json_t *set = tc_jwks(c);
  TT_ASSERT(tc_int(set, "max_age") > 0);
  size_t i;
  json_t *k;
  bool checked = false;
  json_array_foreach(json_object_get(set, "keys"), i, k) {
    TT_EQ_STR(tc_str(k, "kty"), "OKP");
    TT_EQ_STR(tc_str(k, "crv"), "Ed25519");
    TT_EQ_STR(tc_str(k, "use"), "sig");
    TT_EQ_STR(tc_str(k, "alg"), "EdDSA");
    TT_ASSERT_MSG(json_object_get(k, "d") == NULL, "keys.jwks publishes a private key");
    uint8_t pk[32];
    size_t n;
    const char *x = tc_str(k, "x");
    TT_EQ_INT(ts_jws_b64_decode(x, strlen(x), pk, sizeof(pk), &n), 0);
    char thumb[TS_KID_LEN + 1];
    ts_keyring_thumbprint(pk, thumb);
    TT_EQ_STR(tc_str(k, "kid"), thumb); /* kid = RFC 7638 thumbprint */
    if (strcmp(tc_str(k, "kid"), tc_str(hdr, "kid")) != 0) continue;
    const char *dot2 = strrchr(tok, '.');
    char *sig_b64 = tf_segment(tok, 2);
    uint8_t sig[64];
    TT_EQ_INT(ts_jws_b64_decode(sig_b64, strlen(sig_b64), sig, sizeof(sig), &n), 0);
    TT_EQ_INT(crypto_sign_verify_detached(sig, (const uint8_t *)tok, (size_t)(dot2 - tok), pk), 0);
    free(sig_b64);
    checked = true;
  }
  TT_ASSERT_MSG(checked, "the signing kid is not in keys.jwks");
  TT_EQ_INT(tc_jwks_count(set), 2); /* a managed set: the active and the next key */

  /* check_revoked on a live token; aud in an array; a ttl of our own; no aud at all. */
  json_t *p = tc_verify_params(tok, "api", NULL);
  json_object_set_new(p, "check_revoked", json_true());
  json_decref(tc_call_ok(c, "token.verify", p));
  char *multi = tc_issue(c, json_pack("{s:s, s:[s, s], s:i}", "sub", "bob", "aud", "web", "api",
                                      "ttl", 60), NULL);
  json_t *r2 = tc_verify_ok(c, "aud array", multi, "api", NULL);
  cl = json_object_get(r2, "claims");
  TT_EQ_INT(tc_int(cl, "exp") - tc_int(cl, "iat"), 60);
  TT_EQ_INT(json_array_size(json_object_get(cl, "aud")), 2);
  json_decref(tc_verify_ok(c, "aud array, the other one", multi, "web", NULL));
  char *plain = tc_issue_sub(c, "carol");
  json_t *r3 = tc_verify_ok(c, "no aud", plain, NULL, NULL);
  TT_ASSERT(json_object_get(json_object_get(r3, "claims"), "aud") == NULL);

  json_decref(r3), json_decref(r2), json_decref(set), json_decref(r), json_decref(hdr);
  json_decref(reply), json_decref(extra);
  free(plain), free(multi), free(tok);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void issue_rejects_bad_params(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  static const char *const registered[] = {"iss", "sub", "aud", "exp", "nbf", "iat",
                                           "jti", "scope", "purpose", "fam"};
  for (size_t i = 0; i < sizeof(registered) / sizeof(registered[0]); i++)
    tc_expect_error(c, "token.issue",
                    json_pack("{s:s, s:{s:s}}", "sub", "alice", "claims", registered[i], "x"),
                 "bad_request", registered[i]);
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:i}", "sub", "a", "ttl", MAX_ACCESS_TTL + 1),
                  "bad_request", "ttl");
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:i}", "sub", "a", "ttl", 0), "bad_request",
                  "ttl");
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:i}", "sub", "a", "ttl", -5), "bad_request",
                  "ttl");
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:s}", "sub", "a", "ttl", "60"), "bad_request",
                  "ttl");
  tc_expect_error(c, "token.issue",
               json_pack("{s:s, s:s, s:i}", "sub", "a", "purpose", "p", "ttl", MAX_PURPOSE_TTL + 1),
               "bad_request", "ttl");
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:i}", "sub", "a", "aud", 5), "bad_request",
                  "aud");
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:[]}", "sub", "a", "aud"), "bad_request", "aud");
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:[i]}", "sub", "a", "aud", 1), "bad_request",
                  "aud");
  tc_expect_error(c, "token.issue", json_pack("{s:s}", "sub", ""), "bad_request", "sub");
  tc_expect_error(c, "token.issue", json_pack("{}"), "bad_request", "sub");
  char long_sub[258];
  memset(long_sub, 's', 257);
  long_sub[257] = 0;
  tc_expect_error(c, "token.issue", json_pack("{s:s}", "sub", long_sub), "bad_request", "sub");
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:s}", "sub", "a", "claims", "x"),
                  "bad_request", "claims");
  char big[5000];
  memset(big, 'b', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:{s:s}}", "sub", "a", "claims", "big", big),
                  "bad_request", "claims");
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:i}", "sub", "a", "bogus", 1), "bad_request",
                  "bogus");
  /* Claims within 4 KiB of msgpack whose JSON (\u0001 escapes) would make a token over 8 KiB:
   * refused, never issued (a token the daemon itself would refuse). */
  char ctl[3001];
  memset(ctl, 1, 3000);
  ctl[3000] = 0;
  tc_expect_error(c, "token.issue", json_pack("{s:s, s:{s:s}}", "sub", "a", "claims", "x", ctl),
                  "bad_request", NULL);
  /* Within the limits is fine, at both maxima. */
  json_decref(
      tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "a", "ttl", MAX_ACCESS_TTL)));
  json_decref(tc_call_ok(c, "token.issue", json_pack("{s:s, s:s, s:i}", "sub", "a", "purpose", "p",
                                                     "ttl", MAX_PURPOSE_TTL)));
  /* token.verify's own params. */
  tc_expect_error(c, "token.verify", json_pack("{}"), "bad_request", "token");
  tc_expect_error(c, "token.verify", json_pack("{s:i}", "token", 5), "bad_request", "token");
  tc_expect_error(c, "token.verify", json_pack("{s:s, s:s}", "token", "x", "check_revoked", "yes"),
                  "bad_request", "check_revoked");
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- refusals ------------------------------------------------------------------------------ */

static void tampered_tokens_are_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *tok = tc_issue_sub(c, "alice");
  json_decref(tc_verify_ok(c, "the original", tok, NULL, NULL));
  char *kid = tc_kid_of(c, tok);
  json_t *set = tc_jwks(c);
  const char *other_kid = NULL; /* the next key: known, but not the one that signed */
  size_t i;
  json_t *k;
  json_array_foreach(json_object_get(set, "keys"), i, k) {
    if (strcmp(tc_str(k, "kid"), kid) != 0) other_kid = tc_str(k, "kid");
  }
  TT_ASSERT(other_kid != NULL);

  /* Header: each change keeps the header acceptable, so only the signature can refuse it. */
  char hdr[256];
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"x\":1}", kid);
  char *t = tf_replace_segment(tok, 0, hdr);
  expect_refused(c, "header with an extra member", t, "unauthenticated");
  free(t);
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"Ed25519\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
  t = tf_replace_segment(tok, 0, hdr);
  expect_refused(c, "header with alg Ed25519 for EdDSA", t, "unauthenticated");
  free(t);
  t = tf_replace_segment(tok, 0, tf_std_header("at+jwt", other_kid));
  expect_refused(c, "header naming the other published kid", t, "unauthenticated");
  free(t);
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\", \"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
  t = tf_replace_segment(tok, 0, hdr);
  expect_refused(c, "header with a space", t, "unauthenticated");
  free(t);

  /* Payload: a changed sub, an added claim, the same claims re-serialized. */
  json_t *claims = tf_segment_json(tok, 1);
  json_object_set_new(claims, "sub", json_string("admin"));
  char *text = json_dumps(claims, JSON_COMPACT);
  t = tf_replace_segment(tok, 1, text);
  expect_refused(c, "payload with another sub", t, "unauthenticated");
  free(t), free(text);
  json_object_set_new(claims, "sub", json_string("alice"));
  json_object_set_new(claims, "scope", json_string("admin"));
  text = json_dumps(claims, JSON_COMPACT);
  t = tf_replace_segment(tok, 1, text);
  expect_refused(c, "payload with an added scope", t, "unauthenticated");
  free(t), free(text);
  json_object_del(claims, "scope");
  text = json_dumps(claims, JSON_INDENT(1));
  t = tf_replace_segment(tok, 1, text);
  expect_refused(c, "payload re-serialized with whitespace", t, "unauthenticated");
  free(t), free(text);
  json_decref(claims);

  /* Signature. */
  void (*sig_changes[])(uint8_t *, size_t *) = {tf_flip_first_bit, tf_flip_last_bit, tf_drop_last_byte,
                                                tf_add_a_byte, tf_s_plus_l};
  const char *sig_names[] = {"signature first bit", "signature last bit", "signature 63 bytes",
                             "signature 65 bytes", "signature S + L"};
  for (size_t n = 0; n < sizeof(sig_changes) / sizeof(sig_changes[0]); n++) {
    t = tf_with_signature(tok, sig_changes[n]);
    expect_refused(c, sig_names[n], t, "unauthenticated");
    free(t);
  }
  char *h = tf_segment(tok, 0), *p = tf_segment(tok, 1), *s = tf_segment(tok, 2);
  t = tf_join3(h, p, "");
  expect_refused(c, "no signature", t, "unauthenticated");
  free(t);

  /* Encoding: one accepted spelling of every token. */
  t = tf_noncanonical_signature(tok);
  expect_refused(c, "signature with stray trailing bits", t, "unauthenticated");
  free(t);
  char buf[TS_JWS_MAX_TOKEN + 64];
  snprintf(buf, sizeof(buf), "%s.%s=.%s", h, p, s);
  expect_refused(c, "padded payload", buf, "unauthenticated");
  snprintf(buf, sizeof(buf), "%s.%s", h, p);
  expect_refused(c, "two segments", buf, "unauthenticated");
  snprintf(buf, sizeof(buf), "%s.%s.%s.%s", h, p, s, s);
  expect_refused(c, "four segments", buf, "unauthenticated");
  snprintf(buf, sizeof(buf), " %s", tok);
  expect_refused(c, "leading space", buf, "unauthenticated");
  snprintf(buf, sizeof(buf), "%s\n", tok);
  expect_refused(c, "trailing newline", buf, "unauthenticated");
  expect_refused(c, "garbage", "not a token", "unauthenticated");
  free(h), free(p), free(s);

  json_decref(tc_verify_ok(c, "the original, still", tok, NULL, NULL));
  json_decref(set);
  free(kid), free(tok);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void foreign_algorithms_are_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tf_signer s;
  tf_daemon_signer(&d, &s);
  /* The control: a token we forge with the daemon's key passes, with both accepted algs. */
  char *ok = tf_forge(&s, tf_good_claims());
  json_decref(tc_verify_ok(c, "forged control", ok, NULL, NULL));
  char hdr[256];
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"Ed25519\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", s.kid);
  char *t = tf_sign_claims(&s, hdr, tf_good_claims());
  json_decref(tc_verify_ok(c, "alg Ed25519 (RFC 9864)", t, NULL, NULL));
  free(t);

  char *payload = tf_segment(ok, 1); /* base64url; decode for the HMAC helpers */
  json_t *claims = tf_segment_json(ok, 1);
  char *ptext = json_dumps(claims, JSON_COMPACT);

  /* Ed25519-signed but naming another alg. */
  static const char *const algs[] = {"eddsa", "EDDSA", "ED25519", "none", "HS256", "RS256",
                                     "ES256", "EdDSA ", ""};
  for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", algs[i],
             s.kid);
    t = tf_sign_text(&s, hdr, ptext);
    char what[64];
    snprintf(what, sizeof(what), "alg \"%s\", Ed25519-signed", algs[i]);
    expect_refused(c, what, t, "unauthenticated");
    free(t);
  }
  snprintf(hdr, sizeof(hdr), "{\"typ\":\"at+jwt\",\"kid\":\"%s\"}", s.kid);
  t = tf_sign_text(&s, hdr, ptext);
  expect_refused(c, "no alg", t, "unauthenticated");
  free(t);
  snprintf(hdr, sizeof(hdr), "{\"alg\":[\"EdDSA\"],\"typ\":\"at+jwt\",\"kid\":\"%s\"}", s.kid);
  t = tf_sign_text(&s, hdr, ptext);
  expect_refused(c, "alg an array", t, "unauthenticated");
  free(t);

  /* alg none, unsigned. */
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", s.kid);
  char *h = tf_b64(hdr, strlen(hdr));
  t = tf_join3(h, payload, "");
  expect_refused(c, "alg none, empty signature", t, "unauthenticated");
  free(t), free(h);
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"none\",\"typ\":\"at+jwt\"}");
  h = tf_b64(hdr, strlen(hdr));
  t = tf_join3(h, payload, "");
  expect_refused(c, "alg none without kid", t, "unauthenticated");
  free(t), free(h);

  /* HS256 keyed with what an attacker knows: the public key's bytes, its x, its JWK text. */
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", s.kid);
  char x[TS_KID_LEN + 1], jwk[256];
  ts_jws_b64_encode_to(x, s.pk, sizeof(s.pk));
  snprintf(jwk, sizeof(jwk),
           "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"%s\",\"use\":\"sig\","
           "\"alg\":\"EdDSA\"}", x, s.kid);
  t = tf_hs256_token(hdr, ptext, s.pk, sizeof(s.pk));
  expect_refused(c, "HS256 keyed with the public key bytes", t, "unauthenticated");
  free(t);
  t = tf_hs256_token(hdr, ptext, x, strlen(x));
  expect_refused(c, "HS256 keyed with x", t, "unauthenticated");
  free(t);
  t = tf_hs256_token(hdr, ptext, jwk, strlen(jwk));
  expect_refused(c, "HS256 keyed with the JWK text", t, "unauthenticated");
  free(t);

  free(ptext), json_decref(claims), free(payload), free(ok);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void wrong_typ_is_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *access = tc_issue_sub(c, "alice");
  char *purpose = tc_issue_purpose(c, "alice", "email");
  json_decref(tc_verify_ok(c, "access as access", access, NULL, NULL));
  json_decref(tc_verify_ok(c, "purpose as purpose", purpose, NULL, "email"));
  tc_expect_verify(c, "purpose token as access", purpose, NULL, NULL, "unauthenticated");
  tc_expect_verify(c, "access token with purpose", access, NULL, "email", "unauthenticated");
  tc_expect_verify(c, "purpose token, another purpose", purpose, NULL, "reset", "unauthenticated");
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", access, "purpose", "email"),
                  "unauthenticated", NULL);
  tc_expect_error(c, "session.exchange",
                  json_pack("{s:s, s:s}", "token", access, "purpose", "email"), "unauthenticated",
               NULL);

  /* Forged: the daemon's key, every other typ. */
  tf_signer s;
  tf_daemon_signer(&d, &s);
  static const char *const typs[] = {"rt+jwt", "JWT", "AT+JWT", "at+jwt ", "application/at+jwt",
                                     ""};
  for (size_t i = 0; i < sizeof(typs) / sizeof(typs[0]); i++) {
    char *t = tf_sign_claims(&s, tf_std_header(typs[i], s.kid), tf_good_claims());
    char what[64];
    snprintf(what, sizeof(what), "typ \"%s\"", typs[i]);
    expect_refused(c, what, t, "unauthenticated");
    free(t);
  }
  char hdr[256];
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", s.kid);
  char *t = tf_sign_claims(&s, hdr, tf_good_claims());
  expect_refused(c, "no typ", t, "unauthenticated");
  free(t);
  /* A pt+jwt we sign with the right purpose claim passes as a purpose token, not as access. */
  json_t *pc = tf_good_claims();
  json_object_set_new(pc, "purpose", json_string("email"));
  t = tf_sign_claims(&s, tf_std_header("pt+jwt", s.kid), pc);
  json_decref(tc_verify_ok(c, "forged purpose control", t, NULL, "email"));
  expect_refused(c, "forged purpose token as access", t, "unauthenticated");
  free(t);
  /* An access token carrying a purpose claim is still no purpose token. */
  pc = tf_good_claims();
  json_object_set_new(pc, "purpose", json_string("email"));
  t = tf_forge(&s, pc);
  tc_expect_verify(c, "at+jwt with a purpose claim, as purpose", t, NULL, "email", "unauthenticated");
  free(t);
  free(purpose), free(access);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void unknown_kid_is_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tf_signer mine, stranger;
  tf_daemon_signer(&d, &mine);
  tf_stranger_signer(&stranger);
  char *t = tf_forge(&stranger, tf_good_claims());
  expect_refused(c, "a stranger's key and kid", t, "unauthenticated");
  free(t);
  /* The stranger's signature under the daemon's kid. */
  t = tf_sign_claims(&stranger, tf_std_header("at+jwt", mine.kid), tf_good_claims());
  expect_refused(c, "a stranger's signature under our kid", t, "unauthenticated");
  free(t);
  /* Our signature under kids that are not ours. */
  static const char *const kids[] = {"../../etc/passwd", "a/b", "a\\\\b", "", "kid"};
  for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
    char what[64];
    snprintf(what, sizeof(what), "kid \"%s\"", kids[i]);
    t = tf_sign_claims(&mine, tf_std_header("at+jwt", kids[i]), tf_good_claims());
    expect_refused(c, what, t, "unauthenticated");
    free(t);
  }
  char hdr[512], longkid[200];
  memset(longkid, 'k', 199);
  longkid[199] = 0;
  t = tf_sign_claims(&mine, tf_std_header("at+jwt", longkid), tf_good_claims());
  expect_refused(c, "a 199-byte kid", t, "unauthenticated");
  free(t);
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":7}");
  t = tf_sign_claims(&mine, hdr, tf_good_claims());
  expect_refused(c, "kid a number", t, "unauthenticated");
  free(t);
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\"}");
  t = tf_sign_claims(&mine, hdr, tf_good_claims());
  expect_refused(c, "no kid", t, "unauthenticated");
  free(t);
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\\u0000\"}",
           mine.kid);
  t = tf_sign_claims(&mine, hdr, tf_good_claims());
  expect_refused(c, "kid with a NUL", t, "unauthenticated");
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void key_carrying_headers_are_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tf_signer s;
  tf_daemon_signer(&d, &s);
  char x[TS_KID_LEN + 1];
  ts_jws_b64_encode_to(x, s.pk, sizeof(s.pk));
  char jwk[256];
  snprintf(jwk, sizeof(jwk), "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", x);
  const char *members[][2] = {
      {"jku", "\"https://attacker.example/jwks.json\""},
      {"x5u", "\"https://attacker.example/cert.pem\""},
      {"jwk", jwk},
      {"x5c", "[\"MIIB\"]"},
      {"crit", "[\"exp\"]"},
      {"crit", "[]"},
  };
  for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
    char hdr[512], what[64];
    snprintf(hdr, sizeof(hdr), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"%s\":%s}",
             s.kid, members[i][0], members[i][1]);
    char *t = tf_sign_claims(&s, hdr, tf_good_claims());
    snprintf(what, sizeof(what), "header member %s: %.20s", members[i][0], members[i][1]);
    expect_refused(c, what, t, "unauthenticated");
    free(t);
  }
  tessera_close(c);
  tc_stop_clean(&d);
}

static void duplicate_members_are_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tf_signer s;
  tf_daemon_signer(&d, &s);
  long long now = (long long)time(NULL);
  char payload[512], hdr[512];
  snprintf(payload, sizeof(payload),
           "{\"iss\":\"tessera\",\"sub\":\"mallory\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,"
           "\"jti\":\"dup-0000000000000000000\"}", now, now, now + 300);
  char *t = tf_sign_text(&s, tf_std_header("at+jwt", s.kid), payload);
  json_decref(tc_verify_ok(c, "the control", t, NULL, NULL));
  free(t);
  snprintf(payload, sizeof(payload),
           "{\"iss\":\"tessera\",\"sub\":\"mallory\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,"
           "\"jti\":\"dup-0000000000000000000\",\"sub\":\"admin\"}", now, now, now + 300);
  t = tf_sign_text(&s, tf_std_header("at+jwt", s.kid), payload);
  expect_refused(c, "sub twice", t, "unauthenticated");
  free(t);
  snprintf(payload, sizeof(payload),
           "{\"iss\":\"tessera\",\"sub\":\"mallory\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,"
           "\"exp\":%lld,\"jti\":\"dup-0000000000000000000\"}", now, now, now + 300, now + 99999);
  t = tf_sign_text(&s, tf_std_header("at+jwt", s.kid), payload);
  expect_refused(c, "exp twice", t, "unauthenticated");
  free(t);
  snprintf(payload, sizeof(payload),
           "{\"iss\":\"tessera\",\"sub\":\"mallory\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,"
           "\"jti\":\"dup-0000000000000000000\"}", now, now, now + 300);
  snprintf(hdr, sizeof(hdr),
           "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"typ\":\"at+jwt\"}", s.kid);
  t = tf_sign_text(&s, hdr, payload);
  expect_refused(c, "typ twice in the header", t, "unauthenticated");
  free(t);
  snprintf(hdr, sizeof(hdr),
           "{\"alg\":\"none\",\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", s.kid);
  t = tf_sign_text(&s, hdr, payload);
  expect_refused(c, "alg twice in the header", t, "unauthenticated");
  free(t);
  /* Not an object, invalid UTF-8. */
  t = tf_sign_text(&s, tf_std_header("at+jwt", s.kid), "[1,2]");
  expect_refused(c, "payload an array", t, "unauthenticated");
  free(t);
  snprintf(payload, sizeof(payload),
           "{\"iss\":\"tessera\",\"sub\":\"m\xff\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,"
           "\"jti\":\"dup-0000000000000000000\"}", now, now, now + 300);
  t = tf_sign_text(&s, tf_std_header("at+jwt", s.kid), payload);
  expect_refused(c, "payload with invalid UTF-8", t, "unauthenticated");
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void wrong_issuer_is_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tf_signer s;
  tf_daemon_signer(&d, &s);
  json_t *cl = tf_good_claims();
  json_object_set_new(cl, "iss", json_string("evil"));
  char *t = tf_forge(&s, cl);
  expect_refused(c, "iss evil", t, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_set_new(cl, "iss", json_string("tessera "));
  t = tf_forge(&s, cl);
  expect_refused(c, "iss with a trailing space", t, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_del(cl, "iss");
  t = tf_forge(&s, cl);
  expect_refused(c, "no iss", t, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_set_new(cl, "iss", json_pack("[s]", "tessera"));
  t = tf_forge(&s, cl);
  expect_refused(c, "iss an array", t, "unauthenticated");
  free(t);
  /* Foreign and expired: identity comes first. */
  cl = tf_good_claims();
  json_object_set_new(cl, "iss", json_string("evil"));
  json_object_set_new(cl, "exp", json_integer((json_int_t)time(NULL) - 3600));
  t = tf_forge(&s, cl);
  expect_refused(c, "iss evil and expired", t, "unauthenticated");
  free(t);
  /* Missing sub or jti. */
  cl = tf_good_claims();
  json_object_del(cl, "sub");
  t = tf_forge(&s, cl);
  expect_refused(c, "no sub", t, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_del(cl, "jti");
  t = tf_forge(&s, cl);
  expect_refused(c, "no jti", t, "unauthenticated");
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);

  /* A daemon with another --issuer refuses the tokens of the first. */
  td_daemon d2;
  const char *args[] = {"--issuer", "other", NULL};
  td_start(&d2, args);
  c = tc_client(&d2);
  tf_daemon_signer(&d2, &s);
  t = tf_forge(&s, tf_good_claims()); /* iss tessera */
  expect_refused(c, "iss tessera at an issuer 'other'", t, "unauthenticated");
  free(t);
  char *own = tc_issue_sub(c, "alice");
  json_t *r = tc_verify_ok(c, "its own token", own, NULL, NULL);
  TT_EQ_STR(tc_str(json_object_get(r, "claims"), "iss"), "other");
  json_decref(r);
  free(own);
  tessera_close(c);
  tc_stop_clean(&d2);
}

static void audience_is_checked(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *api = tc_issue(c, json_pack("{s:s, s:s}", "sub", "alice", "aud", "api"), NULL);
  char *plain = tc_issue_sub(c, "alice");
  json_decref(tc_verify_ok(c, "aud api as api", api, "api", NULL));
  tc_expect_verify(c, "aud api as web", api, "web", NULL, "unauthenticated");
  tc_expect_verify(c, "aud api, none expected", api, NULL, NULL, "unauthenticated");
  tc_expect_verify(c, "aud api as API", api, "API", NULL, "unauthenticated");
  tc_expect_verify(c, "no aud, api expected", plain, "api", NULL, "unauthenticated");
  tf_signer s;
  tf_daemon_signer(&d, &s);
  json_t *cl = tf_good_claims();
  json_object_set_new(cl, "aud", json_pack("[i, s]", 1, "api"));
  char *t = tf_forge(&s, cl);
  tc_expect_verify(c, "aud array holding a number", t, "api", NULL, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_set_new(cl, "aud", json_pack("[]"));
  t = tf_forge(&s, cl);
  tc_expect_verify(c, "aud empty array, none expected", t, NULL, NULL, "unauthenticated");
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);

  /* A configured default audience: expected when the call names none. */
  const char *args[] = {"--audience", "api", NULL};
  td_start(&d, args);
  c = tc_client(&d);
  char *a1 = tc_issue(c, json_pack("{s:s, s:[s, s]}", "sub", "alice", "aud", "web", "api"), NULL);
  char *a2 = tc_issue(c, json_pack("{s:s, s:s}", "sub", "alice", "aud", "web"), NULL);
  char *a3 = tc_issue_sub(c, "alice");
  json_decref(tc_verify_ok(c, "default audience in an array", a1, NULL, NULL));
  tc_expect_verify(c, "aud web at default api", a2, NULL, NULL, "unauthenticated");
  json_decref(tc_verify_ok(c, "aud web, web named", a2, "web", NULL));
  tc_expect_verify(c, "no aud at default api", a3, NULL, NULL, "unauthenticated");
  free(a1), free(a2), free(a3);
  tessera_close(c);
  tc_stop_clean(&d);
  free(api), free(plain);
}

/* {sub: "alice", aud: A} on the raw wire, where A is one str (n == 1 and !as_array) or an array
 * of n strs, each given as bytes (any bytes: the client library cannot send invalid UTF-8). */
static void raw_aud_code(const td_daemon *d, const char *method, bool as_array,
                         const char *const *strs, const size_t *lens, size_t n, char *code,
                         size_t cap) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  msgpack_pack_str_with_body(&pk, "sub", 3);
  msgpack_pack_str_with_body(&pk, "alice", 5);
  msgpack_pack_str_with_body(&pk, "aud", 3);
  if (as_array) msgpack_pack_array(&pk, n);
  for (size_t i = 0; i < n; i++) msgpack_pack_str_with_body(&pk, strs[i], lens[i]);
  tw_call_raw(d->socket, method, strlen(method), sb.data, sb.size, code, cap);
  msgpack_sbuffer_destroy(&sb);
}

/* An aud that is not valid UTF-8 (or holds a NUL) is refused: it used to be dropped in the
 * conversion to JSON, and the token was issued with no audience at all (fail-open). */
static void aud_with_invalid_utf8_is_bad_request(void) {
  td_daemon d;
  td_start(&d, NULL);
  static const char *const methods[] = {"token.issue", "token.pair"};
  struct {
    bool array;
    const char *s[2];
    size_t len[2];
    size_t n;
    const char *code;
  } rows[] = {
      {false, {"api\xff"}, {4}, 1, "bad_request"},
      {true, {"good", "\xff"}, {4, 1}, 2, "bad_request"},
      {true, {"\xc0\xaf"}, {2}, 1, "bad_request"},   /* overlong '/' */
      {false, {"a\0b"}, {3}, 1, "bad_request"},       /* a NUL */
      {true, {"good", "a\0b"}, {4, 3}, 2, "bad_request"},
      {false, {"api"}, {3}, 1, ""},                   /* the well-formed twins */
      {true, {"good", "caf\xc3\xa9"}, {4, 5}, 2, ""},
  };
  for (size_t m = 0; m < 2; m++) {
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
      char code[32];
      raw_aud_code(&d, methods[m], rows[i].array, rows[i].s, rows[i].len, rows[i].n, code,
                   sizeof(code));
      TT_ASSERT_MSG(strcmp(code, rows[i].code) == 0, "%s row %zu: got '%s', expected '%s'",
                    methods[m], i, code, rows[i].code);
    }
  }
  /* Nothing was stored for the refused pairs: only the two good ones made families. */
  tessera_client *c = tc_client(&d);
  json_t *st = tc_call_ok(c, "sys.stats", NULL);
  TT_EQ_INT(tc_int(st, "families"), 2);
  json_decref(st);
  /* And a good aud is in the token. */
  char *t = tc_issue(c, json_pack("{s:s, s:[s, s]}", "sub", "alice", "aud", "good", "caf\u00e9"), NULL);
  json_t *v = tc_verify_ok(c, "aud with an accent", t, "caf\u00e9", NULL);
  TT_ASSERT(json_is_array(json_object_get(json_object_get(v, "claims"), "aud")));
  json_decref(v);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void times_are_checked_with_leeway(void) {
  td_daemon d;
  td_start(&d, NULL); /* --leeway 60 */
  tessera_client *c = tc_client(&d);
  tf_signer s;
  tf_daemon_signer(&d, &s);
  json_int_t now = (json_int_t)time(NULL);
  struct {
    const char *what;
    const char *claim;
    json_int_t value;
    const char *code;
  } rows[] = {
      {"exp 2 minutes ago", "exp", now - 120, "expired"},
      {"exp an hour ago", "exp", now - 3600, "expired"},
      {"exp 20 s ago, within the leeway", "exp", now - 20, ""},
      {"nbf in 2 minutes", "nbf", now + 120, "expired"},
      {"nbf in a day", "nbf", now + 86400, "expired"},
      {"nbf in 20 s, within the leeway", "nbf", now + 20, ""},
      {"iat in 2 minutes", "iat", now + 120, "expired"},
      {"iat in 20 s, within the leeway", "iat", now + 20, ""},
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    json_t *cl = tf_good_claims();
    json_object_set_new(cl, rows[i].claim, json_integer(rows[i].value));
    char *t = tf_forge(&s, cl);
    json_decref(tc_expect_verify(c, rows[i].what, t, NULL, NULL, rows[i].code));
    free(t);
  }
  json_t *cl = tf_good_claims();
  json_object_del(cl, "exp");
  char *t = tf_forge(&s, cl);
  expect_refused(c, "no exp", t, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_set_new(cl, "exp", json_string("9999999999"));
  t = tf_forge(&s, cl);
  expect_refused(c, "exp a string", t, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_set_new(cl, "exp", json_real(9999999999.0));
  t = tf_forge(&s, cl);
  expect_refused(c, "exp a real", t, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_set_new(cl, "nbf", json_string("0"));
  t = tf_forge(&s, cl);
  expect_refused(c, "nbf a string", t, "unauthenticated");
  free(t);
  /* An expired token stays expired when revocation is consulted too. */
  cl = tf_good_claims();
  json_object_set_new(cl, "exp", json_integer(now - 3600));
  t = tf_forge(&s, cl);
  json_t *p = tc_verify_params(t, NULL, NULL);
  json_object_set_new(p, "check_revoked", json_true());
  tc_expect_error(c, "token.verify", p, "expired", NULL);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A real token with ttl 1 and no leeway: valid now, expired once the wall clock passes exp. */
static void issued_token_expires_without_leeway(void) {
  td_daemon d;
  const char *args[] = {"--leeway", "0", NULL};
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *reply = NULL;
  tc_start_of_next_second(); /* the issue and the first verify well inside one second */
  char *t = tc_issue(c, json_pack("{s:s, s:i}", "sub", "alice", "ttl", 1), &reply);
  long long exp = tc_int(reply, "expires_at");
  TT_ASSERT(tc_int(reply, "expires_in") <= 1);
  /* Valid at once: judged after the reply, which proves it came before exp. */
  const char *code = tc_verify_code(c, t, NULL, false);
  if (tc_before_second(exp)) TT_EQ_STR(code, "");
  else TT_ASSERT_MSG(!code[0] || strcmp(code, "expired") == 0, "verify: %s", code);
  /* RFC 7519 4.1.4: the token is refused from the second exp itself (with leeway 0). Wait for
   * that second as time() reads it: the daemon's clock, which is the coarse one and may lag
   * CLOCK_REALTIME by a tick, so the loop asks time() and naps a little past each boundary. */
  while ((long long)time(NULL) < exp) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    TT_ASSERT(exp - (long long)now.tv_sec < 5);
    long nap = 1000000000L - now.tv_nsec + 2000000; /* to 2 ms past the next second */
    if (nap > 1000000000L) nap = 2000000;           /* already past: a tick's worth */
    struct timespec ts = {0, nap};
    if (ts.tv_nsec == 1000000000L) ts.tv_sec = 1, ts.tv_nsec = 0;
    nanosleep(&ts, NULL);
  }
  expect_refused(c, "ttl 1, at exp", t, "expired");
  json_decref(reply);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void token_over_8k_is_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tf_signer s;
  tf_daemon_signer(&d, &s);
  char *at = tf_token_of_length(&s, TS_JWS_MAX_TOKEN);
  json_decref(tc_verify_ok(c, "a well-signed token of exactly 8 KiB", at, NULL, NULL));
  char *over = tf_token_of_length(&s, TS_JWS_MAX_TOKEN + 1);
  expect_refused(c, "a well-signed token of 8 KiB + 1", over, "unauthenticated");
  char *huge = tf_token_of_length(&s, 60000);
  expect_refused(c, "a well-signed token of 60000 bytes", huge, "unauthenticated");
  /* token.consume and session.exchange refuse it the same way. */
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", over, "purpose", "p"),
                  "unauthenticated", NULL);
  tc_expect_error(c, "session.exchange", json_pack("{s:s, s:s}", "token", over, "purpose", "p"),
                  "unauthenticated", NULL);
  free(huge), free(over), free(at);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(issue_verify_round_trip),
    TT_CASE(issue_rejects_bad_params),
    TT_CASE(tampered_tokens_are_unauthenticated),
    TT_CASE(foreign_algorithms_are_unauthenticated),
    TT_CASE(wrong_typ_is_unauthenticated),
    TT_CASE(unknown_kid_is_unauthenticated),
    TT_CASE(key_carrying_headers_are_unauthenticated),
    TT_CASE(duplicate_members_are_unauthenticated),
    TT_CASE(wrong_issuer_is_unauthenticated),
    TT_CASE(audience_is_checked),
    TT_CASE(aud_with_invalid_utf8_is_bad_request),
    TT_CASE(times_are_checked_with_leeway),
    TT_CASE(issued_token_expires_without_leeway),
    TT_CASE(token_over_8k_is_unauthenticated),
};

TT_MAIN(cases)
