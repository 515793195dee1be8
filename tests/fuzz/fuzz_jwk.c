/* tests/fuzz/fuzz_jwk.c: JWK import (sidecar/keyring/keyring.h, ts_keyring_jwk_import).
 *
 * The input is the text of a .jwk file (the keyring reads at most TS_KEYRING_FILE_MAX bytes).
 * Properties: the result is 0 or TS_ECONFIG with a reason (never TS_ECONFIG without one);
 * on refusal the key is wiped; on success the key is consistent (kid is the RFC 7638
 * thumbprint of pk; with d, sk derives pk) and export -> import gives the same key back,
 * public and private; the public JWK object holds the same x and kid. */
#include "fuzz.h"

#include "error.h"
#include "keyring.h"

#include <sodium.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  FUZZ_CHECK(sodium_init() >= 0);
  return 0;
}

static int all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return 0;
  return 1;
}

static void same_key(const ts_key *a, const ts_key *b) {
  FUZZ_CHECK(memcmp(a->pk, b->pk, sizeof(a->pk)) == 0);
  FUZZ_CHECK(strcmp(a->kid, b->kid) == 0);
}

static void reimport(const ts_key *k, int with_private) {
  char text[TS_JWK_TEXT_MAX];
  FUZZ_CHECK(ts_keyring_jwk_export(k, with_private, text, sizeof(text)) == 0);
  ts_key back;
  const char *why = NULL;
  int rc = ts_keyring_jwk_import(text, strlen(text), &back, &why);
  FUZZ_CHECK(rc == 0 && why == NULL);
  same_key(k, &back);
  FUZZ_CHECK(back.has_sk == with_private);
  if (with_private) FUZZ_CHECK(memcmp(back.sk, k->sk, sizeof(k->sk)) == 0);
  sodium_memzero(text, sizeof(text));
  sodium_memzero(&back, sizeof(back));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size >= TS_KEYRING_FILE_MAX) return 0; /* the keyring refuses such files unread */
  ts_key k;
  memset(&k, 0xa5, sizeof(k));
  const char *why = (const char *)1;
  int rc = ts_keyring_jwk_import((const char *)data, size, &k, &why);
  FUZZ_CHECK(rc == 0 || rc == TS_ECONFIG || rc == TS_ENOMEM);
  if (rc != 0) {
    FUZZ_CHECK(rc != TS_ECONFIG || (why != NULL && why != (const char *)1 && *why));
    FUZZ_CHECK(all_zero(&k, sizeof(k)));
    return 0;
  }
  FUZZ_CHECK(why == NULL);
  char kid[TS_KID_LEN + 1];
  ts_keyring_thumbprint(k.pk, kid);
  FUZZ_CHECK(strcmp(kid, k.kid) == 0 && strlen(kid) == TS_KID_LEN);
  FUZZ_CHECK(k.role == TS_KEY_OTHER && k.file[0] == '\0');
  if (k.has_sk) {
    FUZZ_CHECK(k.has_sk == 1);
    uint8_t pk[32];
    FUZZ_CHECK(crypto_sign_ed25519_sk_to_pk(pk, k.sk) == 0);
    FUZZ_CHECK(memcmp(pk, k.pk, 32) == 0);
    reimport(&k, 1);
  } else {
    FUZZ_CHECK(all_zero(k.sk, sizeof(k.sk)));
  }
  reimport(&k, 0);

  json_t *pub = NULL;
  FUZZ_CHECK(ts_keyring_jwk_public(&k, &pub) == 0);
  char *text = json_dumps(pub, JSON_COMPACT);
  FUZZ_CHECK(text != NULL);
  ts_key back;
  FUZZ_CHECK(ts_keyring_jwk_import(text, strlen(text), &back, NULL) == 0);
  same_key(&k, &back);
  FUZZ_CHECK(!back.has_sk);
  free(text);
  json_decref(pub);
  sodium_memzero(&k, sizeof(k));
  return 0;
}
