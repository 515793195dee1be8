/* tests/integration/test_tokens.c: keys and tokens against the real daemon (PROTOCOL.md "keys",
 * "tokens", "session.exchange", "Errors", "Limits"; SECURITY.md "Tokens"): the issue/verify
 * round trip, every way a token is refused and the code it is refused with, keys.jwks and
 * keys.rotate (admin only; unavailable for keys managed outside), key directories (the RFC 8037
 * key, permissions, SIGHUP), single-use purpose tokens and session.exchange, and the CLI.
 *
 * Forged tokens are made here, not by the daemon: with the daemon's own key (read from its key
 * directory with the keyring code) when a test needs a token that is well signed but wrong in
 * some other way, with ts_jws_sign_raw so that the exact header and payload bytes are ours.
 * Each forged case has a well-formed twin that passes, so a refusal means what it claims.
 *
 * Waiting: replies are the signal. The only wait on the clock is where the wall clock is the
 * thing under test (a token with ttl 1 and no leeway). A SIGHUP reload answers nothing; its
 * signal is the [2, "keys", ...] notification an events.subscribe connection receives when the
 * key set changed. A reload that fails changes nothing and notifies nobody: that one is
 * awaited in the log, in a bounded loop. */
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
#define PURPOSE_TTL_DEFAULT 86400 /* --purpose-ttl 24h */
#define MAX_ACCESS_TTL 86400      /* --max-access-ttl 24h */
#define MAX_PURPOSE_TTL 2592000   /* --max-purpose-ttl 30d */

/* RFC 8037 A.1 and A.3. */
#define RFC8037_D "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
#define RFC8037_X "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
#define RFC8037_KID "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

/* token.issue with params (stolen); returns the token (malloc'd); the whole reply in *reply
 * when reply is not NULL. */
static char *issue(tessera_client *c, json_t *params, json_t **reply) {
  json_t *r = tc_call_ok(c, "token.issue", params);
  char *tok = strdup(tc_str(r, "token"));
  TT_ASSERT(tok != NULL);
  if (reply) *reply = r;
  else json_decref(r);
  return tok;
}

static char *issue_sub(tessera_client *c, const char *sub) {
  return issue(c, json_pack("{s:s}", "sub", sub), NULL);
}

static char *issue_purpose(tessera_client *c, const char *sub, const char *purpose) {
  return issue(c, json_pack("{s:s, s:s}", "sub", sub, "purpose", purpose), NULL);
}

/* token.verify params for tok with an optional aud and purpose. */
static json_t *verify_params(const char *tok, const char *aud, const char *purpose) {
  json_t *p = json_pack("{s:s}", "token", tok);
  if (aud) json_object_set_new(p, "aud", json_string(aud));
  if (purpose) json_object_set_new(p, "purpose", json_string(purpose));
  return p;
}

/* Verifies tok and expects code ("" for success); what names the case in a failure. Returns
 * the result on success (caller frees), else NULL. */
static json_t *expect_verify(tessera_client *c, const char *what, const char *tok, const char *aud,
                             const char *purpose, const char *code) {
  json_t *r = NULL;
  const char *got = tc_call_code(c, "token.verify", verify_params(tok, aud, purpose), &r);
  TT_ASSERT_MSG(strcmp(got, code) == 0, "%s: token.verify answered '%s' (%s), expected '%s'",
                what, got[0] ? got : "success", tc_last_message(), code[0] ? code : "success");
  return r;
}

static json_t *verify_ok(tessera_client *c, const char *what, const char *tok, const char *aud,
                         const char *purpose) {
  json_t *r = expect_verify(c, what, tok, aud, purpose, "");
  TT_ASSERT(json_is_object(json_object_get(r, "claims")));
  return r;
}

static void expect_refused(tessera_client *c, const char *what, const char *tok,
                           const char *code) {
  expect_verify(c, what, tok, NULL, NULL, code);
}

/* The kid a valid access token verifies with. */
static char *kid_of(tessera_client *c, const char *tok) {
  json_t *r = verify_ok(c, "kid_of", tok, NULL, NULL);
  char *kid = strdup(tc_str(r, "kid"));
  json_decref(r);
  return kid;
}

static json_t *jwks(tessera_client *c) {
  json_t *r = tc_call_ok(c, "keys.jwks", NULL);
  TT_ASSERT(json_is_array(json_object_get(r, "keys")));
  return r;
}

static bool jwks_has(const json_t *set, const char *kid) {
  size_t i;
  json_t *k;
  json_array_foreach(json_object_get(set, "keys"), i, k) {
    if (strcmp(tc_str(k, "kid"), kid) == 0) return true;
  }
  return false;
}

static size_t jwks_count(const json_t *set) {
  return json_array_size(json_object_get(set, "keys"));
}

/* ---- processes ---------------------------------------------------------------------------- */

/* `tessera keygen dir`; returns the kid it printed. */
static void keygen(const td_daemon *d, const char *dir, char kid[TS_KID_LEN + 1]) {
  char out[256], err[1024];
  const char *args[] = {"keygen", dir, NULL};
  int st = td_cli(d, NULL, out, sizeof(out), err, sizeof(err), args);
  TT_ASSERT_MSG(st == 0, "tessera keygen %s: exit %d: %s", dir, st, err);
  size_t n = strlen(out);
  TT_ASSERT_MSG(n == TS_KID_LEN + 1 && out[TS_KID_LEN] == '\n', "keygen printed '%s'", out);
  memcpy(kid, out, TS_KID_LEN);
  kid[TS_KID_LEN] = 0;
}

static void key_path(const char *dir, const char *kid, char *path, size_t cap) {
  snprintf(path, cap, "%s/%s.jwk", dir, kid);
}

/* A raw connection subscribed to the daemon's events (PROTOCOL.md "events"). */
typedef struct keys_feed {
  int fd;
  tw_reader rd;
} keys_feed;

static void feed_open(keys_feed *f, const td_daemon *d) {
  f->fd = tw_connect(d->socket);
  tw_reader_init(&f->rd, f->fd);
  TT_ASSERT(tw_send_request(f->fd, 1, "events.subscribe"));
  uint32_t id;
  char code[32];
  TT_ASSERT(tw_read_response(&f->rd, 10000, &id, code, sizeof(code)));
  TT_ASSERT_MSG(id == 1 && code[0] == 0, "events.subscribe: '%s'", code);
}

static void feed_close(keys_feed *f) {
  tw_reader_destroy(&f->rd);
  close(f->fd);
}

/* SIGHUP, then waits for the "keys" notification the reload sends; returns its keys_version. */
static long long sighup_and_await_keys(const td_daemon *d, keys_feed *f) {
  TT_ASSERT(kill(d->pid, SIGHUP) == 0);
  for (;;) {
    const msgpack_object *o = tw_next(&f->rd, 10000);
    TT_ASSERT_MSG(o != NULL, "no \"keys\" notification within 10 s of SIGHUP");
    TT_ASSERT(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3);
    const msgpack_object *m = &o->via.array.ptr[1], *args = &o->via.array.ptr[2];
    TT_EQ_INT(o->via.array.ptr[0].via.u64, 2);
    if (m->type != MSGPACK_OBJECT_STR || m->via.str.size != 4 || memcmp(m->via.str.ptr, "keys", 4))
      continue; /* another kind of event */
    TT_ASSERT(args->type == MSGPACK_OBJECT_ARRAY && args->via.array.size == 1);
    const msgpack_object *map = &args->via.array.ptr[0];
    TT_ASSERT(map->type == MSGPACK_OBJECT_MAP && map->via.map.size == 1);
    TT_ASSERT(map->via.map.ptr[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    return (long long)map->via.map.ptr[0].val.via.u64;
  }
}

/* ---- issue and verify ---------------------------------------------------------------------- */

static void issue_verify_round_trip(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *reply = NULL;
  json_t *extra = json_pack("{s:s, s:i, s:{s:[i, i]}}", "role", "admin", "n", 7, "nested", "a",
                            1, 2);
  char *tok = issue(c, json_pack("{s:s, s:s, s:s, s:O}", "sub", "alice", "aud", "api", "scope",
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

  json_t *r = verify_ok(c, "round trip", tok, "api", NULL);
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
  json_t *set = jwks(c);
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
  TT_EQ_INT(jwks_count(set), 2); /* a managed set: the active and the next key */

  /* check_revoked on a live token; aud in an array; a ttl of our own; no aud at all. */
  json_t *p = verify_params(tok, "api", NULL);
  json_object_set_new(p, "check_revoked", json_true());
  json_decref(tc_call_ok(c, "token.verify", p));
  char *multi = issue(c, json_pack("{s:s, s:[s, s], s:i}", "sub", "bob", "aud", "web", "api",
                                   "ttl", 60), NULL);
  json_t *r2 = verify_ok(c, "aud array", multi, "api", NULL);
  cl = json_object_get(r2, "claims");
  TT_EQ_INT(tc_int(cl, "exp") - tc_int(cl, "iat"), 60);
  TT_EQ_INT(json_array_size(json_object_get(cl, "aud")), 2);
  json_decref(verify_ok(c, "aud array, the other one", multi, "web", NULL));
  char *plain = issue_sub(c, "carol");
  json_t *r3 = verify_ok(c, "no aud", plain, NULL, NULL);
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
  char *tok = issue_sub(c, "alice");
  json_decref(verify_ok(c, "the original", tok, NULL, NULL));
  char *kid = kid_of(c, tok);
  json_t *set = jwks(c);
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

  json_decref(verify_ok(c, "the original, still", tok, NULL, NULL));
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
  json_decref(verify_ok(c, "forged control", ok, NULL, NULL));
  char hdr[256];
  snprintf(hdr, sizeof(hdr), "{\"alg\":\"Ed25519\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", s.kid);
  char *t = tf_sign_claims(&s, hdr, tf_good_claims());
  json_decref(verify_ok(c, "alg Ed25519 (RFC 9864)", t, NULL, NULL));
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
  char *access = issue_sub(c, "alice");
  char *purpose = issue_purpose(c, "alice", "email");
  json_decref(verify_ok(c, "access as access", access, NULL, NULL));
  json_decref(verify_ok(c, "purpose as purpose", purpose, NULL, "email"));
  expect_verify(c, "purpose token as access", purpose, NULL, NULL, "unauthenticated");
  expect_verify(c, "access token with purpose", access, NULL, "email", "unauthenticated");
  expect_verify(c, "purpose token, another purpose", purpose, NULL, "reset", "unauthenticated");
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
  json_decref(verify_ok(c, "forged purpose control", t, NULL, "email"));
  expect_refused(c, "forged purpose token as access", t, "unauthenticated");
  free(t);
  /* An access token carrying a purpose claim is still no purpose token. */
  pc = tf_good_claims();
  json_object_set_new(pc, "purpose", json_string("email"));
  t = tf_forge(&s, pc);
  expect_verify(c, "at+jwt with a purpose claim, as purpose", t, NULL, "email", "unauthenticated");
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
  json_decref(verify_ok(c, "the control", t, NULL, NULL));
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
  char *own = issue_sub(c, "alice");
  json_t *r = verify_ok(c, "its own token", own, NULL, NULL);
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
  char *api = issue(c, json_pack("{s:s, s:s}", "sub", "alice", "aud", "api"), NULL);
  char *plain = issue_sub(c, "alice");
  json_decref(verify_ok(c, "aud api as api", api, "api", NULL));
  expect_verify(c, "aud api as web", api, "web", NULL, "unauthenticated");
  expect_verify(c, "aud api, none expected", api, NULL, NULL, "unauthenticated");
  expect_verify(c, "aud api as API", api, "API", NULL, "unauthenticated");
  expect_verify(c, "no aud, api expected", plain, "api", NULL, "unauthenticated");
  tf_signer s;
  tf_daemon_signer(&d, &s);
  json_t *cl = tf_good_claims();
  json_object_set_new(cl, "aud", json_pack("[i, s]", 1, "api"));
  char *t = tf_forge(&s, cl);
  expect_verify(c, "aud array holding a number", t, "api", NULL, "unauthenticated");
  free(t);
  cl = tf_good_claims();
  json_object_set_new(cl, "aud", json_pack("[]"));
  t = tf_forge(&s, cl);
  expect_verify(c, "aud empty array, none expected", t, NULL, NULL, "unauthenticated");
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);

  /* A configured default audience: expected when the call names none. */
  const char *args[] = {"--audience", "api", NULL};
  td_start(&d, args);
  c = tc_client(&d);
  char *a1 = issue(c, json_pack("{s:s, s:[s, s]}", "sub", "alice", "aud", "web", "api"), NULL);
  char *a2 = issue(c, json_pack("{s:s, s:s}", "sub", "alice", "aud", "web"), NULL);
  char *a3 = issue_sub(c, "alice");
  json_decref(verify_ok(c, "default audience in an array", a1, NULL, NULL));
  expect_verify(c, "aud web at default api", a2, NULL, NULL, "unauthenticated");
  json_decref(verify_ok(c, "aud web, web named", a2, "web", NULL));
  expect_verify(c, "no aud at default api", a3, NULL, NULL, "unauthenticated");
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
  char *t = issue(c, json_pack("{s:s, s:[s, s]}", "sub", "alice", "aud", "good", "caf\u00e9"), NULL);
  json_t *v = verify_ok(c, "aud with an accent", t, "caf\u00e9", NULL);
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
    json_decref(expect_verify(c, rows[i].what, t, NULL, NULL, rows[i].code));
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
  json_t *p = verify_params(t, NULL, NULL);
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
  char *t = issue(c, json_pack("{s:s, s:i}", "sub", "alice", "ttl", 1), &reply);
  long long exp = tc_int(reply, "expires_at");
  TT_ASSERT(tc_int(reply, "expires_in") <= 1);
  if ((long long)time(NULL) < exp) json_decref(verify_ok(c, "ttl 1, at once", t, NULL, NULL));
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
  json_decref(verify_ok(c, "a well-signed token of exactly 8 KiB", at, NULL, NULL));
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

/* ---- keys ---------------------------------------------------------------------------------- */

static void keys_rotate_keeps_old_tokens_valid(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *old = issue_sub(c, "alice");
  char *active = kid_of(c, old);
  json_t *before = jwks(c);
  TT_EQ_INT(jwks_count(before), 2);
  const char *next = NULL;
  size_t i;
  json_t *k;
  json_array_foreach(json_object_get(before, "keys"), i, k) {
    if (strcmp(tc_str(k, "kid"), active) != 0) next = tc_str(k, "kid");
  }
  TT_ASSERT(next != NULL);

  keys_feed feed; /* subscribers hear of the new set */
  feed_open(&feed, &d);
  json_t *r = tc_call_ok(c, "keys.rotate", NULL);
  TT_EQ_STR(tc_str(r, "kid"), next);
  TT_EQ_STR(tc_str(r, "previous"), active);

  char *fresh = issue_sub(c, "bob");
  char *fresh_kid = kid_of(c, fresh);
  TT_EQ_STR(fresh_kid, next);
  json_t *v = verify_ok(c, "a token signed before the rotation", old, NULL, NULL);
  TT_EQ_STR(tc_str(v, "kid"), active);
  json_decref(v);
  json_t *after = jwks(c);
  TT_EQ_INT(jwks_count(after), 3);
  TT_ASSERT(jwks_has(after, active) && jwks_has(after, next));
  TT_ASSERT(tc_int(after, "keys_version") != tc_int(before, "keys_version"));
  const msgpack_object *note = tw_next(&feed.rd, 10000);
  TT_ASSERT_MSG(note && note->type == MSGPACK_OBJECT_ARRAY && note->via.array.size == 3 &&
                    note->via.array.ptr[1].type == MSGPACK_OBJECT_STR &&
                    note->via.array.ptr[1].via.str.size == 4 &&
                    memcmp(note->via.array.ptr[1].via.str.ptr, "keys", 4) == 0,
                "no \"keys\" notification after keys.rotate");
  TT_EQ_INT(note->via.array.ptr[2].via.array.ptr[0].via.map.ptr[0].val.via.u64,
            tc_int(after, "keys_version"));
  feed_close(&feed);
  /* The new next key is published before it signs. */
  const char *new_next = NULL;
  json_array_foreach(json_object_get(after, "keys"), i, k) {
    if (strcmp(tc_str(k, "kid"), active) && strcmp(tc_str(k, "kid"), next))
      new_next = tc_str(k, "kid");
  }
  TT_ASSERT(new_next != NULL);

  /* A second rotation: the new next signs; both older keys still verify. */
  json_t *r2 = tc_call_ok(c, "keys.rotate", NULL);
  TT_EQ_STR(tc_str(r2, "kid"), new_next);
  TT_EQ_STR(tc_str(r2, "previous"), next);
  char *third = issue_sub(c, "carol");
  char *third_kid = kid_of(c, third);
  TT_EQ_STR(third_kid, new_next);
  json_decref(verify_ok(c, "two rotations old", old, NULL, NULL));
  json_decref(verify_ok(c, "one rotation old", fresh, NULL, NULL));

  /* The state survives a restart. */
  json_t *set_before = jwks(c);
  tessera_close(c);
  TT_ASSERT(WIFEXITED(td_stop(&d)));
  td_launch(&d, NULL);
  c = tc_client(&d);
  json_t *set_after = jwks(c);
  TT_ASSERT(json_equal(json_object_get(set_before, "keys"), json_object_get(set_after, "keys")));
  json_decref(verify_ok(c, "after a restart", old, NULL, NULL));
  char *fourth = issue_sub(c, "dave");
  char *fourth_kid = kid_of(c, fourth);
  TT_EQ_STR(fourth_kid, new_next);

  json_decref(set_after), json_decref(set_before), json_decref(r2), json_decref(after);
  json_decref(r), json_decref(before);
  free(fourth_kid), free(fourth), free(third_kid), free(third), free(fresh_kid), free(fresh);
  free(active), free(old);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void keys_rotate_needs_admin(void) {
  td_daemon d;
  const struct passwd *nobody = tc_start_for_nobody(&d);
  char uid[32];
  snprintf(uid, sizeof(uid), "%u", (unsigned)nobody->pw_uid);
  tessera_client *c = tc_client(&d);
  json_t *before = jwks(c);
  /* nobody is let in (keys.jwks), but keys.rotate is for admins. */
  TT_EQ_STR(tc_call_as_nobody(&d, "keys.jwks", "keys.rotate"), "forbidden");
  json_t *after = jwks(c);
  TT_EQ_INT(tc_int(after, "keys_version"), tc_int(before, "keys_version"));
  /* root, the daemon's own uid, is the default admin. */
  json_decref(tc_call_ok(c, "keys.rotate", NULL));
  json_decref(after), json_decref(before);
  tessera_close(c);
  tc_stop_clean(&d);

  /* --admin-uid names someone else: root is refused too. */
  const char *args2[] = {"--admin-uid", uid, NULL};
  td_start(&d, args2);
  c = tc_client(&d);
  tc_expect_error(c, "keys.rotate", NULL, "forbidden", NULL);
  json_decref(jwks(c)); /* reading keys is for everyone */
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Keys made by `tessera keygen`, no keys.json: keys managed outside; rotation is not ours. */
static void keys_rotate_unavailable_when_unmanaged(void) {
  td_daemon d;
  td_init(&d);
  char kid[TS_KID_LEN + 1], path[512];
  keygen(&d, d.keys, kid);
  key_path(d.keys, kid, path, sizeof(path));
  struct stat st;
  TT_ASSERT(stat(path, &st) == 0 && S_ISREG(st.st_mode));
  TT_EQ_INT(st.st_mode & 0777, 0600);
  TT_ASSERT(stat(d.keys, &st) == 0);
  TT_EQ_INT(st.st_mode & 0777, 0700);
  td_launch(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *set = jwks(c);
  TT_EQ_INT(jwks_count(set), 1);
  TT_ASSERT(jwks_has(set, kid));
  char *t = issue_sub(c, "alice");
  char *signed_by = kid_of(c, t);
  TT_EQ_STR(signed_by, kid);
  tc_expect_error(c, "keys.rotate", NULL, "unavailable", NULL);
  json_t *again = jwks(c);
  TT_ASSERT(json_equal(set, again));
  char state[512];
  snprintf(state, sizeof(state), "%s/keys.json", d.keys);
  TT_ASSERT_MSG(access(state, F_OK) != 0, "the daemon wrote keys.json into an unmanaged dir");
  json_decref(again), json_decref(set);
  free(signed_by), free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void group_readable_key_refuses_start(void) {
  static const mode_t modes[] = {0640, 0604, 0660, 0620};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    td_daemon d;
    td_init(&d);
    char kid[TS_KID_LEN + 1], good[TS_KID_LEN + 1], path[512];
    keygen(&d, d.keys, good); /* a sound key beside it does not help */
    keygen(&d, d.keys, kid);
    key_path(d.keys, kid, path, sizeof(path));
    TT_ASSERT(chmod(path, modes[i]) == 0);
    int st = td_launch_refused(&d);
    TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) != 0, "mode %04o: exit status %d",
                  (unsigned)modes[i], st);
    char *log = td_read_log(&d);
    char name[64];
    snprintf(name, sizeof(name), "%s.jwk", kid);
    TT_ASSERT_MSG(log && strstr(log, name), "mode %04o: the log does not name %s:\n%s",
                  (unsigned)modes[i], name, log ? log : "");
    /* ...and no key material. */
    TT_ASSERT(strstr(log, "\"d\"") == NULL);
    free(log);
    td_cleanup(&d);
  }
}

static void rfc8037_key_is_published_with_its_thumbprint(void) {
  td_daemon d;
  td_init(&d);
  TT_ASSERT(mkdir(d.keys, 0700) == 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/rfc8037.jwk", d.keys);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  TT_ASSERT(fd >= 0);
  const char *jwk = "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"" RFC8037_D "\",\"x\":\""
                    RFC8037_X "\"}\n";
  TT_EQ_INT(write(fd, jwk, strlen(jwk)), (long long)strlen(jwk));
  close(fd);
  td_launch(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *set = jwks(c);
  TT_EQ_INT(jwks_count(set), 1);
  json_t *k = json_array_get(json_object_get(set, "keys"), 0);
  TT_EQ_STR(tc_str(k, "kid"), RFC8037_KID);
  TT_EQ_STR(tc_str(k, "x"), RFC8037_X);
  TT_EQ_STR(tc_str(k, "kty"), "OKP");
  TT_EQ_STR(tc_str(k, "crv"), "Ed25519");
  TT_ASSERT(json_object_get(k, "d") == NULL);
  char *t = issue_sub(c, "alice");
  json_t *hdr = tf_segment_json(t, 0);
  TT_EQ_STR(tc_str(hdr, "kid"), RFC8037_KID);
  json_decref(verify_ok(c, "signed by the RFC key", t, NULL, NULL));
  tc_expect_error(c, "keys.rotate", NULL, "unavailable", NULL); /* a key of its own: unmanaged */
  json_decref(hdr), json_decref(set);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* SIGHUP reloads the key directory: in an unmanaged dir the newest key signs; in a managed dir
 * a dropped-in key is published but the roles stay; a reload that fails keeps the keys. */
static void sighup_reloads_the_key_dir(void) {
  td_daemon d;
  td_init(&d);
  char k1[TS_KID_LEN + 1], k2[TS_KID_LEN + 1], path[512];
  keygen(&d, d.keys, k1);
  key_path(d.keys, k1, path, sizeof(path));
  /* k1 an hour old, so that k2 is the newest by mtime whatever second it is born in. */
  struct timespec times[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
  TT_ASSERT(utimensat(AT_FDCWD, path, times, 0) == 0);
  td_launch(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *t1 = issue_sub(c, "alice");
  char *kid1 = kid_of(c, t1);
  TT_EQ_STR(kid1, k1);
  json_t *before = jwks(c);
  TT_EQ_INT(jwks_count(before), 1);

  keygen(&d, d.keys, k2);
  keys_feed feed;
  feed_open(&feed, &d);
  long long version = sighup_and_await_keys(&d, &feed);
  json_t *after = jwks(c);
  TT_EQ_INT(tc_int(after, "keys_version"), version);
  TT_ASSERT(version != tc_int(before, "keys_version"));
  TT_EQ_INT(jwks_count(after), 2);
  TT_ASSERT(jwks_has(after, k1) && jwks_has(after, k2));
  char *t2 = issue_sub(c, "bob");
  char *kid2 = kid_of(c, t2);
  TT_EQ_STR(kid2, k2);
  json_decref(verify_ok(c, "signed before the reload", t1, NULL, NULL));

  /* A key file too open: the reload fails, the keys in use stay, the daemon serves on. */
  char k3[TS_KID_LEN + 1];
  keygen(&d, d.keys, k3);
  key_path(d.keys, k3, path, sizeof(path));
  TT_ASSERT(chmod(path, 0644) == 0);
  TT_ASSERT(kill(d.pid, SIGHUP) == 0);
  td_await_log(&d, "key reload failed");
  json_t *kept = jwks(c);
  TT_ASSERT(json_equal(json_object_get(kept, "keys"), json_object_get(after, "keys")));
  TT_EQ_INT(tc_int(kept, "keys_version"), version);
  TT_ASSERT(tw_next(&feed.rd, 0) == NULL); /* and no "keys" notification */
  feed_close(&feed);
  char *t3 = issue_sub(c, "carol");
  json_decref(verify_ok(c, "after a failed reload", t3, NULL, NULL));
  json_decref(verify_ok(c, "after a failed reload, the first", t1, NULL, NULL));
  json_decref(kept), json_decref(after), json_decref(before);
  free(t3), free(kid2), free(t2), free(kid1), free(t1);
  tessera_close(c);
  tc_stop_clean(&d);

  /* Managed (the daemon made the keys and keys.json): a dropped-in key is published, the
   * active key stays. */
  td_start(&d, NULL);
  c = tc_client(&d);
  char *m1 = issue_sub(c, "alice");
  char *active = kid_of(c, m1);
  char extra[TS_KID_LEN + 1];
  keygen(&d, d.keys, extra);
  feed_open(&feed, &d);
  version = sighup_and_await_keys(&d, &feed);
  feed_close(&feed);
  json_t *set = jwks(c);
  TT_EQ_INT(tc_int(set, "keys_version"), version);
  TT_ASSERT(jwks_has(set, extra));
  TT_EQ_INT(jwks_count(set), 3);
  char *m2 = issue_sub(c, "bob");
  char *still = kid_of(c, m2);
  TT_EQ_STR(still, active);
  json_decref(set);
  free(still), free(m2), free(active), free(m1);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- purpose tokens -------------------------------------------------------------------------- */

static void purpose_token_defaults_to_24h(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *reply = NULL;
  char *t = issue(c, json_pack("{s:s, s:s}", "sub", "alice", "purpose", "email"), &reply);
  long long in = tc_int(reply, "expires_in");
  /* expires_in is counted from the reply's own now: 86400, or 86399 if a second ticked
   * between signing and replying. */
  TT_ASSERT_MSG(in == PURPOSE_TTL_DEFAULT || in == PURPOSE_TTL_DEFAULT - 1, "expires_in %lld", in);
  json_t *hdr = tf_segment_json(t, 0);
  TT_EQ_STR(tc_str(hdr, "typ"), "pt+jwt");
  json_t *r = verify_ok(c, "purpose token", t, NULL, "email");
  json_t *cl = json_object_get(r, "claims");
  TT_EQ_INT(tc_int(cl, "exp") - tc_int(cl, "iat"), PURPOSE_TTL_DEFAULT);
  TT_EQ_INT(tc_int(cl, "exp"), tc_int(reply, "expires_at"));
  TT_EQ_STR(tc_str(cl, "purpose"), "email");
  TT_EQ_STR(tc_str(cl, "sub"), "alice");
  json_decref(r), json_decref(hdr), json_decref(reply);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void purpose_token_is_consumed_once(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *t = issue(c, json_pack("{s:s, s:s, s:{s:s}}", "sub", "alice", "purpose", "reset",
                               "claims", "ip", "192.0.2.1"), NULL);
  json_decref(verify_ok(c, "before use", t, NULL, "reset"));
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "email"),
               "unauthenticated", NULL);
  tc_expect_error(c, "token.consume", json_pack("{s:s}", "token", t), "bad_request", "purpose");
  json_t *r = tc_call_ok(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"));
  json_t *cl = json_object_get(r, "claims");
  TT_EQ_STR(tc_str(cl, "sub"), "alice");
  TT_EQ_STR(tc_str(cl, "purpose"), "reset");
  TT_EQ_STR(tc_str(cl, "ip"), "192.0.2.1");
  json_decref(r);
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"),
               "revoked", NULL);
  expect_verify(c, "verify after use", t, NULL, "reset", "revoked");
  tc_expect_error(c, "session.exchange", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"),
               "revoked", NULL);
  /* Another token of the same sub and purpose is its own. */
  char *t2 = issue_purpose(c, "alice", "reset");
  json_decref(
      tc_call_ok(c, "token.consume", json_pack("{s:s, s:s}", "token", t2, "purpose", "reset")));
  /* Durable: still used after a restart. */
  tessera_close(c);
  TT_ASSERT(WIFEXITED(td_stop(&d)));
  td_launch(&d, NULL);
  c = tc_client(&d);
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"),
               "revoked", NULL);
  expect_verify(c, "verify after use and a restart", t2, NULL, "reset", "revoked");
  free(t2), free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void session_exchange_happens_once(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *t = issue_purpose(c, "carol", "email");
  tc_expect_error(c, "session.exchange", json_pack("{s:s, s:s}", "token", t, "purpose", "reset"),
               "unauthenticated", NULL);
  tc_expect_error(c, "session.exchange", json_pack("{s:s}", "token", t), "bad_request", "purpose");
  /* The refusals did not use it up. */
  json_t *s =
      tc_call_ok(c, "session.exchange", json_pack("{s:s, s:s}", "token", t, "purpose", "email"));
  const char *sid = tc_str(s, "sid");
  TT_EQ_INT(strlen(sid), 43);
  TT_ASSERT(json_is_string(json_object_get(s, "handle")));
  TT_ASSERT(tc_int(s, "expires_in") > 0);
  TT_ASSERT(tc_int(s, "idle_expires_at") <= tc_int(s, "expires_at"));
  TT_ASSERT(strstr(tc_str(s, "cookie"), sid) != NULL);
  json_t *v = tc_call_ok(c, "session.validate", json_pack("{s:s}", "sid", sid));
  TT_EQ_STR(tc_str(v, "sub"), "carol");
  TT_EQ_STR(tc_str(v, "handle"), tc_str(s, "handle"));
  json_decref(v);
  tc_expect_error(c, "session.exchange", json_pack("{s:s, s:s}", "token", t, "purpose", "email"),
               "revoked", NULL);
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", t, "purpose", "email"),
               "revoked", NULL);
  expect_verify(c, "verify after the exchange", t, NULL, "email", "revoked");
  /* Exactly one session came of it. */
  json_t *list = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "carol"));
  TT_EQ_INT(json_array_size(json_object_get(list, "sessions")), 1);
  json_decref(list);

  /* Two exchanges of one token racing on two connections: one session, one revoked. */
  char *t2 = issue_purpose(c, "dave", "email");
  tessera_client *c2 = tc_client(&d);
  json_t *p = json_pack("{s:s, s:s}", "token", t2, "purpose", "email");
  uint32_t id1, id2;
  TT_EQ_INT(tessera_send(c, "session.exchange", p, &id1), 0);
  TT_EQ_INT(tessera_send(c2, "session.exchange", p, &id2), 0);
  json_t *r1 = NULL, *r2 = NULL;
  tessera_error e1 = {{0}, {0}}, e2 = {{0}, {0}};
  int rc1 = tessera_wait(c, id1, 30000, &r1, &e1), rc2 = tessera_wait(c2, id2, 30000, &r2, &e2);
  TT_ASSERT_MSG((rc1 == 0) != (rc2 == 0), "racing exchanges: %d (%s), %d (%s)", rc1, e1.code, rc2,
                e2.code);
  TT_EQ_STR(rc1 == 0 ? e2.code : e1.code, "revoked");
  list = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "dave"));
  TT_EQ_INT(json_array_size(json_object_get(list, "sessions")), 1);
  json_decref(list), json_decref(r1), json_decref(r2), json_decref(p);
  tessera_close(c2);
  free(t2);
  json_decref(s);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- the CLI ------------------------------------------------------------------------------- */

static json_t *parse_out(const char *out) {
  json_error_t je;
  json_t *v = json_loads(out, 0, &je);
  TT_ASSERT_MSG(v != NULL, "not JSON: '%s' (%s)", out, je.text);
  return v;
}

static void cli_token_commands(void) {
  td_daemon d;
  td_start(&d, NULL);
  static char out[16384], err[4096];
  const char *issue_args[] = {"token", "issue", "alice", "--aud", "api", "--aud=web", "--scope",
                              "read", "--claims", "{\"role\":\"admin\"}", "--ttl", "120", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), issue_args), 0);
  json_t *r = parse_out(out);
  char *tok = strdup(tc_str(r, "token"));
  TT_EQ_INT(tc_int(r, "expires_in") <= 120 && tc_int(r, "expires_in") >= 119, 1);
  json_decref(r);

  /* verify: the token from stdin (out of ps), and as an argument. */
  char input[TS_JWS_MAX_TOKEN + 8];
  snprintf(input, sizeof(input), "%s\n", tok);
  const char *verify_stdin[] = {"token", "verify", "-", "--aud", "web", NULL};
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), verify_stdin), 0);
  r = parse_out(out);
  json_t *cl = json_object_get(r, "claims");
  TT_EQ_STR(tc_str(cl, "sub"), "alice");
  TT_EQ_STR(tc_str(cl, "role"), "admin");
  TT_EQ_STR(tc_str(cl, "scope"), "read");
  TT_EQ_INT(json_array_size(json_object_get(cl, "aud")), 2);
  TT_ASSERT(json_is_string(json_object_get(r, "kid")));
  json_decref(r);
  const char *verify_arg[] = {"token", "verify", tok, "--aud", "api", "--check-revoked", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), verify_arg), 0);
  const char *verify_noaud[] = {"token", "verify", tok, NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), verify_noaud), 1);
  TT_ASSERT_MSG(strstr(err, "unauthenticated") != NULL, "stderr: %s", err);
  TT_EQ_STR(out, "");
  const char *verify_empty[] = {"token", "verify", "-", NULL};
  TT_EQ_INT(td_cli(&d, "\n", out, sizeof(out), err, sizeof(err), verify_empty), 2);

  /* decode: no daemon, no verification, and it says so. */
  const char *decode[] = {"token", "decode", "-", NULL};
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), decode), 0);
  TT_ASSERT_MSG(strstr(err, "NOT verified") != NULL, "stderr: %s", err);
  r = parse_out(out);
  TT_EQ_STR(tc_str(json_object_get(r, "header"), "typ"), "at+jwt");
  TT_EQ_STR(tc_str(json_object_get(r, "header"), "alg"), "EdDSA");
  TT_EQ_STR(tc_str(json_object_get(r, "claims"), "sub"), "alice");
  json_decref(r);
  char *tampered = tf_replace_segment(tok, 1, "{\"sub\":\"admin\"}");
  const char *decode_t[] = {"token", "decode", tampered, NULL};
  /* It decodes (unverified) what would never verify. */
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), decode_t), 0);
  TT_ASSERT(strstr(err, "NOT verified") != NULL);
  const char *decode_bad[] = {"token", "decode", "abc.def", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), decode_bad), 1);
  const char *decode_dup[] = {"token", "decode", "eyJhIjoxLCJhIjoyfQ.eyJhIjoxfQ.", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), decode_dup), 1); /* {"a":1,"a":2} */
  free(tampered);

  /* jwks and keys rotate. */
  const char *jwks_args[] = {"jwks", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), jwks_args), 0);
  r = parse_out(out);
  TT_EQ_INT(jwks_count(r), 2);
  json_decref(r);
  const char *rotate[] = {"keys", "rotate", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), rotate), 0);
  r = parse_out(out);
  TT_ASSERT(json_is_string(json_object_get(r, "kid")) &&
            json_is_string(json_object_get(r, "previous")));
  json_decref(r);
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), jwks_args), 0);
  r = parse_out(out);
  TT_EQ_INT(jwks_count(r), 3);
  json_decref(r);

  /* Purpose tokens: exchange once from stdin; consume needs --purpose. */
  const char *issue_p[] = {"token", "issue", "bob", "--purpose", "email", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), issue_p), 0);
  r = parse_out(out);
  snprintf(input, sizeof(input), "%s", tc_str(r, "token"));
  TT_ASSERT(tc_int(r, "expires_in") >= PURPOSE_TTL_DEFAULT - 1);
  json_decref(r);
  const char *consume_nopurpose[] = {"token", "consume", "-", NULL};
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), consume_nopurpose), 2);
  TT_ASSERT_MSG(strstr(err, "--purpose") != NULL, "stderr: %s", err);
  const char *exchange[] = {"session", "exchange", "-", "--purpose", "email", NULL};
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), exchange), 0);
  r = parse_out(out);
  TT_EQ_INT(strlen(tc_str(r, "sid")), 43);
  json_decref(r);
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), exchange), 1);
  TT_ASSERT_MSG(strstr(err, "revoked") != NULL, "stderr: %s", err);
  const char *consume[] = {"token", "consume", input, "--purpose", "email", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), consume), 1);

  /* Usage trouble is 2 and never reaches the daemon. */
  const char *bad_ttl[] = {"token", "issue", "alice", "--ttl", "soon", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), bad_ttl), 2);
  const char *bad_claims[] = {"token", "issue", "alice", "--claims", "[1]", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), bad_claims), 2);
  const char *bad_opt[] = {"token", "verify", tok, "--bogus", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), bad_opt), 2);
  /* The daemon's bad_request is 1. */
  const char *over[] = {"token", "issue", "alice", "--ttl", "99999999", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), over), 1);
  TT_ASSERT_MSG(strstr(err, "bad_request") != NULL, "stderr: %s", err);
  free(tok);
  tc_stop_clean(&d);
}

static void cli_keygen_writes_a_loadable_key(void) {
  td_daemon d;
  td_init(&d);
  char dir[256], kid[TS_KID_LEN + 1], path[512];
  snprintf(dir, sizeof(dir), "%s/fresh", d.dir);
  keygen(&d, dir, kid); /* creates the directory */
  key_path(dir, kid, path, sizeof(path));
  struct stat st;
  TT_ASSERT(stat(path, &st) == 0);
  TT_EQ_INT(st.st_mode & 0777, 0600);
  TT_ASSERT(stat(dir, &st) == 0);
  TT_EQ_INT(st.st_mode & 0777, 0700);
  /* The file is a private JWK whose kid is the thumbprint of its x. */
  TT_ASSERT(sodium_init() >= 0);
  FILE *f = fopen(path, "r");
  char text[TS_KEYRING_FILE_MAX];
  size_t n = fread(text, 1, sizeof(text), f);
  fclose(f);
  ts_key k;
  const char *why = NULL;
  TT_ASSERT_MSG(ts_keyring_jwk_import(text, n, &k, &why) == 0, "import: %s", why);
  TT_ASSERT(k.has_sk);
  TT_EQ_STR(k.kid, kid);
  sodium_memzero(&k, sizeof(k));
  /* A second key is another file; bad directories are errors (exit 1), usage is 2. */
  char kid2[TS_KID_LEN + 1];
  keygen(&d, dir, kid2);
  TT_ASSERT(strcmp(kid, kid2) != 0);
  char out[256], err[1024];
  const char *bad[] = {"keygen", "/proc/no/such/dir", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), bad), 1);
  TT_EQ_STR(out, "");
  const char *none[] = {"keygen", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), none), 2);
  td_cleanup(&d);
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
    TT_CASE(keys_rotate_keeps_old_tokens_valid),
    TT_CASE(keys_rotate_needs_admin),
    TT_CASE(keys_rotate_unavailable_when_unmanaged),
    TT_CASE(group_readable_key_refuses_start),
    TT_CASE(rfc8037_key_is_published_with_its_thumbprint),
    TT_CASE(sighup_reloads_the_key_dir),
    TT_CASE(purpose_token_defaults_to_24h),
    TT_CASE(purpose_token_is_consumed_once),
    TT_CASE(session_exchange_happens_once),
    TT_CASE(cli_token_commands),
    TT_CASE(cli_keygen_writes_a_loadable_key),
};

TT_MAIN(cases)
