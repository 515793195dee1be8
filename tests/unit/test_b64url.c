/* tests/unit/test_b64url.c: the fixed-length base64url decoder of proto/b64url.h against
 * libsodium's.
 *
 * Every case compares with sodium_bin2base64/sodium_base642bin (URL-safe, no padding), plus
 * the one rule libsodium does not apply: a string whose last character carries non-zero bits
 * past the data is refused (several spellings would name one sid). */
#include "b64url.h"
#include "tt.h"

#include <sodium.h>
#include <string.h>

#define VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
static const size_t lengths[] = {1, 2, 3, 5, 6, 7, 16, 22, 32, 33, 64};

/* libsodium's verdict on s as n bytes, with the canonical rule on top. */
static bool reference_decode(uint8_t *out, size_t n, const char *s, size_t len) {
  size_t got = 0;
  const char *end = NULL;
  if (len != TS_B64URL_CHARS(n) ||
      sodium_base642bin(out, n, s, len, NULL, &got, &end, VARIANT) != 0 || got != n ||
      end != s + len)
    return false;
  char again[100];
  sodium_bin2base64(again, sizeof(again), out, n, VARIANT);
  return strcmp(again, s) == 0; /* canonical: the one spelling of these bytes */
}

/* libsodium's encoding of random values (and of all zeros, all ones) decodes to the value. */
static void decodes_what_libsodium_encodes(void) {
  TT_ASSERT(sodium_init() >= 0);
  for (size_t li = 0; li < sizeof(lengths) / sizeof(*lengths); li++) {
    size_t n = lengths[li];
    for (int round = 0; round < 2000; round++) {
      uint8_t bin[64], back[64];
      randombytes_buf(bin, n);
      if (round == 0) memset(bin, 0, n);
      if (round == 1) memset(bin, 0xff, n);
      char s[100];
      sodium_bin2base64(s, sizeof(s), bin, n, VARIANT);
      TT_EQ_INT(strlen(s), TS_B64URL_CHARS(n));
      TT_ASSERT(ts_b64url_decode_exact(back, n, s, strlen(s)));
      TT_ASSERT(memcmp(back, bin, n) == 0);
    }
  }
}

/* Every byte value at every position of valid strings: accepted exactly when libsodium
 * accepts the string and it is canonical, with the same bytes. */
static void decodes_as_libsodium_does(void) {
  TT_ASSERT(sodium_init() >= 0);
  int accepted = 0, refused = 0;
  for (size_t li = 0; li < sizeof(lengths) / sizeof(*lengths); li++) {
    size_t n = lengths[li], len = TS_B64URL_CHARS(n);
    for (int round = 0; round < 4; round++) {
      uint8_t bin[64];
      randombytes_buf(bin, n);
      char s[100];
      sodium_bin2base64(s, sizeof(s), bin, n, VARIANT);
      for (size_t pos = 0; pos < len; pos++) {
        for (int c = 0; c < 256; c++) {
          char t[100];
          memcpy(t, s, len + 1);
          t[pos] = (char)c;
          uint8_t ours[64], theirs[64];
          bool ok = ts_b64url_decode_exact(ours, n, t, len);
          bool want = c != 0 && reference_decode(theirs, n, t, len);
          TT_ASSERT_MSG(ok == want, "n %zu, char %d at %zu: ours %d, reference %d", n, c, pos,
                        ok, want);
          if (ok) TT_ASSERT(memcmp(ours, theirs, n) == 0);
          ok ? accepted++ : refused++;
        }
      }
    }
  }
  TT_ASSERT(accepted > 1000 && refused > 1000);
}

static void refuses_wrong_lengths_and_spare_bits(void) {
  TT_ASSERT(sodium_init() >= 0);
  uint8_t sid[32], out[32];
  randombytes_buf(sid, sizeof(sid));
  char s[100];
  sodium_bin2base64(s, sizeof(s), sid, sizeof(sid), VARIANT);
  TT_EQ_INT(strlen(s), 43);
  TT_ASSERT(ts_b64url_decode_exact(out, 32, s, 43));
  TT_ASSERT(!ts_b64url_decode_exact(out, 32, s, 42));
  TT_ASSERT(!ts_b64url_decode_exact(out, 32, s, 44));
  TT_ASSERT(!ts_b64url_decode_exact(out, 32, "", 0));
  /* 32 bytes leave 2 spare bits in the last character: 'A' (000000) is canonical, 'B'
   * (000001) names the same bytes and must be refused. */
  memset(sid, 0, sizeof(sid));
  sodium_bin2base64(s, sizeof(s), sid, sizeof(sid), VARIANT);
  TT_EQ_INT(s[42], 'A');
  s[42] = 'B';
  TT_ASSERT(!ts_b64url_decode_exact(out, 32, s, 43));
  s[42] = 'E'; /* 000100: its high four bits end the last byte, its two spare bits are zero */
  TT_ASSERT(ts_b64url_decode_exact(out, 32, s, 43));
  TT_EQ_INT(out[31], 0x01);
  /* Standard base64's characters are not base64url's. */
  s[0] = '+';
  TT_ASSERT(!ts_b64url_decode_exact(out, 32, s, 43));
  s[0] = '/';
  TT_ASSERT(!ts_b64url_decode_exact(out, 32, s, 43));
  s[0] = '=';
  TT_ASSERT(!ts_b64url_decode_exact(out, 32, s, 43));
}

static const tt_case cases[] = {
    TT_CASE(decodes_what_libsodium_encodes),
    TT_CASE(decodes_as_libsodium_does),
    TT_CASE(refuses_wrong_lengths_and_spare_bits),
};

TT_MAIN(cases)
