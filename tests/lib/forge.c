/* tests/lib/forge.c: see forge.h. */
#include "forge.h"

#include "calls.h"

#include "jws.h"
#include "tt.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tf_daemon_signer(const td_daemon *d, tf_signer *s) {
  TT_ASSERT(sodium_init() >= 0);
  ts_keyring *kr = NULL;
  char err[512] = "";
  int rc = ts_keyring_load(&kr, d->keys, 0, (int64_t)time(NULL), err, sizeof(err));
  TT_ASSERT_MSG(rc == 0, "open %s: %s", d->keys, err);
  const ts_key *k = ts_keyring_active(kr);
  TT_ASSERT(k != NULL && k->has_sk);
  memcpy(s->sk, k->sk, sizeof(s->sk));
  memcpy(s->pk, k->pk, sizeof(s->pk));
  memcpy(s->kid, k->kid, sizeof(s->kid));
  ts_keyring_free(kr);
}

void tf_stranger_signer(tf_signer *s) {
  TT_ASSERT(sodium_init() >= 0);
  crypto_sign_keypair(s->pk, s->sk);
  ts_keyring_thumbprint(s->pk, s->kid);
}

const char *tf_std_header(const char *typ, const char *kid) {
  static char h[256];
  snprintf(h, sizeof(h), "{\"alg\":\"EdDSA\",\"typ\":\"%s\",\"kid\":\"%s\"}", typ, kid);
  return h;
}

json_t *tf_good_claims(void) {
  json_int_t now = (json_int_t)time(NULL);
  return json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "iss", "tessera", "sub", "mallory", "iat",
                   now, "nbf", now, "exp", now + 300, "jti", "forged-jti-0000000000a");
}

char *tf_sign_text(const tf_signer *s, const char *header, const char *payload) {
  char *tok = NULL;
  TT_EQ_INT(ts_jws_sign_raw(s->sk, header, strlen(header), payload, strlen(payload), &tok), 0);
  return tok;
}

char *tf_sign_claims(const tf_signer *s, const char *header, json_t *claims) {
  char *payload = json_dumps(claims, JSON_COMPACT);
  TT_ASSERT(payload != NULL);
  json_decref(claims);
  char *tok = tf_sign_text(s, header, payload);
  free(payload);
  return tok;
}

char *tf_forge(const tf_signer *s, json_t *claims) {
  return tf_sign_claims(s, tf_std_header("at+jwt", s->kid), claims);
}

char *tf_b64(const void *bin, size_t len) {
  char *out = NULL;
  TT_EQ_INT(ts_jws_b64_encode(bin, len, &out), 0);
  return out;
}

char *tf_join3(const char *a, const char *b, const char *c) {
  size_t n = strlen(a) + strlen(b) + strlen(c) + 3;
  char *t = malloc(n);
  TT_ASSERT(t != NULL);
  snprintf(t, n, "%s.%s.%s", a, b, c);
  return t;
}

char *tf_segment(const char *tok, int i) {
  const char *p = tok;
  for (int k = 0; k < i; k++) {
    p = strchr(p, '.');
    TT_ASSERT(p != NULL);
    p++;
  }
  const char *end = strchr(p, '.');
  size_t n = end ? (size_t)(end - p) : strlen(p);
  char *s = strndup(p, n);
  TT_ASSERT(s != NULL);
  return s;
}

json_t *tf_segment_json(const char *tok, int i) {
  char *seg = tf_segment(tok, i);
  uint8_t buf[TS_JWS_MAX_TOKEN];
  size_t n;
  TT_EQ_INT(ts_jws_b64_decode(seg, strlen(seg), buf, sizeof(buf), &n), 0);
  free(seg);
  json_t *v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
  TT_ASSERT(json_is_object(v));
  return v;
}

char *tf_replace_segment(const char *tok, int i, const char *text) {
  char *parts[3] = {tf_segment(tok, 0), tf_segment(tok, 1), tf_segment(tok, 2)};
  free(parts[i]);
  parts[i] = tf_b64(text, strlen(text));
  char *t = tf_join3(parts[0], parts[1], parts[2]);
  for (int k = 0; k < 3; k++) free(parts[k]);
  return t;
}

char *tf_with_signature(const char *tok, void (*fn)(uint8_t *sig, size_t *len)) {
  char *sig_b64 = tf_segment(tok, 2);
  uint8_t sig[128];
  size_t n;
  TT_EQ_INT(ts_jws_b64_decode(sig_b64, strlen(sig_b64), sig, sizeof(sig), &n), 0);
  TT_EQ_INT(n, 64);
  fn(sig, &n);
  char *h = tf_segment(tok, 0), *p = tf_segment(tok, 1), *s = tf_b64(sig, n);
  char *t = tf_join3(h, p, s);
  free(h), free(p), free(s), free(sig_b64);
  return t;
}

void tf_flip_first_bit(uint8_t *sig, size_t *len) { (void)len, sig[0] ^= 1; }
void tf_flip_last_bit(uint8_t *sig, size_t *len) { sig[*len - 1] ^= 0x01; }
void tf_drop_last_byte(uint8_t *sig, size_t *len) { (void)sig, (*len)--; }
void tf_add_a_byte(uint8_t *sig, size_t *len) { sig[(*len)++] = 0; }
void tf_s_plus_l(uint8_t *sig, size_t *len) {
  static const uint8_t L[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                                0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                                0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};
  (void)len;
  unsigned carry = 0;
  for (int i = 0; i < 32; i++) {
    unsigned v = sig[32 + i] + L[i] + carry;
    sig[32 + i] = (uint8_t)v;
    carry = v >> 8;
  }
}

char *tf_noncanonical_signature(const char *tok) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  char *t = strdup(tok);
  size_t n = strlen(t);
  const char *p = strchr(alphabet, t[n - 1]);
  TT_ASSERT(p != NULL && ((p - alphabet) & 15) == 0); /* 64 bytes: 4 unused bits, all zero */
  t[n - 1] = alphabet[(p - alphabet) | 1];
  return t;
}

char *tf_hs256_token(const char *header, const char *payload, const void *key, size_t keylen) {
  char *h = tf_b64(header, strlen(header)), *p = tf_b64(payload, strlen(payload));
  size_t n = strlen(h) + 1 + strlen(p);
  char *input = malloc(n + 1);
  TT_ASSERT(input != NULL);
  snprintf(input, n + 1, "%s.%s", h, p);
  uint8_t mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key, keylen);
  crypto_auth_hmacsha256_update(&st, (const uint8_t *)input, n);
  crypto_auth_hmacsha256_final(&st, mac);
  char *m = tf_b64(mac, sizeof(mac));
  char *t = tf_join3(h, p, m);
  free(h), free(p), free(m), free(input);
  return t;
}

char *tf_token_of_length(const tf_signer *s, size_t want) {
  for (int spaces = 0; spaces < 4; spaces++) {
    char header[256];
    snprintf(header, sizeof(header), "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",%*s\"kid\":\"%s\"}",
             spaces, "", s->kid);
    size_t fixed = ts_jws_b64_len(strlen(header)) + 2 + ts_jws_b64_len(64);
    TT_ASSERT(want > fixed + 200);
    json_t *c = tf_good_claims();
    json_object_set_new(c, "pad", json_string(""));
    char *base = json_dumps(c, JSON_COMPACT);
    size_t base_len = strlen(base);
    free(base);
    for (size_t plen = base_len; ts_jws_b64_len(plen) <= want - fixed; plen++) {
      if (ts_jws_b64_len(plen) != want - fixed) continue;
      char *pad = malloc(plen - base_len + 1);
      memset(pad, 'a', plen - base_len);
      pad[plen - base_len] = 0;
      json_object_set_new(c, "pad", json_string(pad));
      free(pad);
      char *tok = tf_sign_claims(s, header, c);
      TT_EQ_INT(strlen(tok), want);
      return tok;
    }
    json_decref(c);
  }
  tt_fail(__FILE__, __LINE__, "no token of %zu bytes", want);
}

json_t *tf_claims(const char *sub, int64_t iat, int64_t exp) {
  static int seq;
  char jti[32];
  snprintf(jti, sizeof(jti), "test-jti-%d", ++seq);
  return json_pack("{s:s, s:s, s:I, s:I, s:I, s:s}", "iss", "tessera", "sub", sub, "iat",
                   (json_int_t)iat, "nbf", (json_int_t)iat, "exp", (json_int_t)exp, "jti", jti);
}

char *tf_sign(const tf_signer *s, const char *typ, json_t *claims) {
  char *tok = NULL;
  TT_ASSERT(ts_jws_sign(s->sk, s->kid, typ, claims, &tok) == 0);
  json_decref(claims);
  return tok;
}

long long tf_claim_int(const char *tok, const char *name) {
  json_t *c = tf_segment_json(tok, 1);
  json_t *v = json_object_get(c, name);
  TT_ASSERT_MSG(json_is_integer(v), "no integer claim %s", name);
  long long n = (long long)json_integer_value(v);
  json_decref(c);
  return n;
}

void tf_named_stranger(tf_signer *s, int i) {
  tf_stranger_signer(s);
  snprintf(s->kid, sizeof(s->kid), "stranger-%d", i);
}

void tf_hammer_tokens(tessera_client *c, char **good, int ngood, char **bad, int nbad) {
  for (int i = 0; i < ngood; i++) {
    char sub[16];
    snprintf(sub, sizeof(sub), "user%d", i);
    good[i] = tc_issue_claims(c, sub, NULL);
  }
  int64_t now = (int64_t)time(NULL);
  for (int i = 0; i < nbad; i++) {
    tf_signer x;
    tf_named_stranger(&x, i);
    bad[i] = tf_sign(&x, "at+jwt", tf_claims("eve", now, now + 600));
  }
}

/* ---- key files --------------------------------------------------------------------------- */

/* `tessera keygen dir`; returns the kid it printed. */
void tf_keygen(const td_daemon *d, const char *dir, char kid[TS_KID_LEN + 1]) {
  char out[256], err[1024];
  const char *args[] = {"keygen", dir, NULL};
  int st = td_cli(d, NULL, out, sizeof(out), err, sizeof(err), args);
  TT_ASSERT_MSG(st == 0, "tessera keygen %s: exit %d: %s", dir, st, err);
  size_t n = strlen(out);
  TT_ASSERT_MSG(n == TS_KID_LEN + 1 && out[TS_KID_LEN] == '\n', "keygen printed '%s'", out);
  memcpy(kid, out, TS_KID_LEN);
  kid[TS_KID_LEN] = 0;
}

void tf_key_path(const char *dir, const char *kid, char *path, size_t cap) {
  snprintf(path, cap, "%s/%s.jwk", dir, kid);
}
