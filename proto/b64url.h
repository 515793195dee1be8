/* proto/b64url.h: decoding base64url (RFC 4648 section 5, no padding) of a fixed-length
 * secret, in constant time.
 *
 * The session id is decoded on every validate. libsodium's sodium_base642bin is general
 * (padding, characters to ignore, any length, one character at a time) and was 12% of
 * validate's CPU; this does only the fixed-length, canonical case, eight characters at a time,
 * with no branch or table lookup that depends on the data (the characters may be a secret).
 * Encoding, and every other decode, stay with libsodium. tests/unit/test_b64url.c checks it
 * against libsodium. Nothing here allocates; the caller owns every buffer. */
#ifndef TS_B64URL_H
#define TS_B64URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Characters of n bytes: ceil(8n / 6). */
#define TS_B64URL_CHARS(n) (((n) * 8 + 5) / 6)

/* Decodes exactly TS_B64URL_CHARS(n) characters of s (len must equal it) into n <= 64 bytes
 * of out.
 * False, with out unspecified, for a wrong length, a character outside the base64url alphabet,
 * or non-zero bits past the data in the last character (a second spelling of the same bytes). */
bool ts_b64url_decode_exact(uint8_t *out, size_t n, const char *s, size_t len);

#endif
