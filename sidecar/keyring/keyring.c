/* sidecar/keyring/keyring.c: Ed25519 keys as JWK files, rotation state, JWKS. See keyring.h.
 *
 * Design. The directory is the source of truth; the in-memory keyring is a snapshot of it.
 * A key file is never rewritten: a key is born (written to a temp file, fsynced, renamed into
 * place, directory fsynced) and later deleted. The only file that changes is keys.json, the
 * rotation state, and it changes by atomic rename, so it is the commit point of a rotation:
 *   rotate = drop expired retired keys (delete their files)
 *            -> write the new key file            (not referenced yet: harmless if we crash)
 *            -> rename keys.json into place       (commit: the new roles exist)
 *            -> change the roles in memory.
 * A crash before the commit leaves at most one unreferenced key file; it is published as an
 * "other" key (a public key nobody signs with; harmless) and never made active. A retired key
 * whose file is gone is forgotten; one whose file cannot be deleted stays published.
 *
 * Invariants of an open keyring: exactly one TS_KEY_ACTIVE key, with a secret key; at most one
 * TS_KEY_NEXT (always one when managed), with a secret key; kids unique; keys[] in publish
 * order (active, next, others by mtime desc then kid). The struct lives in sodium_malloc'd
 * memory; keys move only by memmove within it or through a stack copy that is wiped.
 *
 * Trust: like ssh, a key file that group or others may read or write refuses the whole
 * directory, even a public-only one (a writable public key is as bad as a readable secret);
 * so does a key file owned by anyone but the daemon's effective uid or root (its owner could
 * swap the key or chmod it open), and a key directory that group or others may write (they
 * could add, replace or delete key files). Errors name the path, never the key. */
#include "keyring.h"

#include "error.h"
#include "jws.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen,
                                                          const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int str_eq(const json_t *v, const char *s) {
  if (!json_is_string(v)) return 0;
  size_t n = strlen(s);
  return json_string_length(v) == n && memcmp(json_string_value(v), s, n) == 0;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n > m && memcmp(s + n - m, suffix, m) == 0;
}

static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
  return r;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Writes name in dir atomically with mode 0600: a temp file created with O_EXCL, fsync,
 * rename over name, fsync of the directory. Sets *mtime (may be NULL) to the file's mtime.
 * Returns 0 or TS_EIO with a message; the temp file never survives an error. */
static int write_atomic(const char *dir, const char *name, const char *data, size_t len,
                        int64_t *mtime, char *err, size_t errlen) {
  char tmp[NAME_MAX + 1], hex[17];
  uint8_t rnd[8];
  randombytes_buf(rnd, sizeof(rnd));
  sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
  int n = snprintf(tmp, sizeof(tmp), ".%s.%s.tmp", name, hex);
  if (n < 0 || (size_t)n >= sizeof(tmp)) {
    set_err(err, errlen, "%s/%s: file name too long", dir, name);
    return TS_EIO;
  }
  const char *step = "open directory";
  int dfd, fd = -1, created = 0, rc = TS_EIO, closed;
  struct stat st;
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) goto fail;
  step = "create";
  fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) goto fail;
  created = 1;
  step = "write";
  if (write_all(fd, data, len) != 0) goto fail;
  step = "fsync";
  if (fsync(fd) != 0 || fstat(fd, &st) != 0) goto fail;
  step = "close";
  closed = close(fd);
  fd = -1;
  if (closed != 0) goto fail;
  step = "rename";
  if (renameat(dfd, tmp, dfd, name) != 0) goto fail;
  created = 0;
  step = "fsync directory";
  if (fsync(dfd) != 0) goto fail;
  if (mtime) *mtime = (int64_t)st.st_mtime;
  rc = 0;
fail:
  if (rc != 0) set_err(err, errlen, "%s/%s: %s: %s", dir, name, step, strerror(errno));
  if (fd >= 0) close(fd);
  if (created) unlinkat(dfd, tmp, 0);
  if (dfd >= 0) close(dfd);
  return rc;
}

/* A small file read whole. buf may hold a secret: wipe the struct after use. */
struct small_file {
  char buf[TS_KEYRING_FILE_MAX];
  size_t n;
  struct stat st;
};

/* Reads fd to its end into f->buf. Returns 0, or -1 with errno set (EFBIG when the file
 * fills the buffer: TS_KEYRING_FILE_MAX bytes or more). */
static int read_whole(int fd, struct small_file *f) {
  for (;;) {
    if (f->n == sizeof(f->buf)) {
      errno = EFBIG;
      return -1;
    }
    ssize_t r = read(fd, f->buf + f->n, sizeof(f->buf) - f->n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) return 0;
    f->n += (size_t)r;
  }
}

/* Reads name (in dfd, which is dir) into f. secret: refuse group/other permission bits.
 * Returns 0, 1 when name is gone or not a regular file (skip it), or TS_ECONFIG. */
static int read_small(int dfd, const char *dir, const char *name, int secret,
                      struct small_file *f, char *err, size_t errlen) {
  struct stat pre;
  f->n = 0;
  if (fstatat(dfd, name, &pre, 0) != 0) {
    if (errno == ENOENT || errno == ELOOP) return 1; /* gone, or a dangling symlink loop */
    set_err(err, errlen, "%s/%s: %s", dir, name, strerror(errno));
    return TS_ECONFIG;
  }
  if (!S_ISREG(pre.st_mode)) return 1; /* never open a FIFO or a device */
  int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0 || fstat(fd, &f->st) != 0) {
    set_err(err, errlen, "%s/%s: %s", dir, name, strerror(errno));
    if (fd >= 0) close(fd);
    return TS_ECONFIG;
  }
  int rc = 0;
  if (!S_ISREG(f->st.st_mode)) {
    rc = 1;
  } else if (secret && (f->st.st_mode & 077)) {
    set_err(err, errlen, "%s/%s: permissions %04o are too open: group and others must have "
            "no access (chmod 600)", dir, name, (unsigned)(f->st.st_mode & 07777));
    rc = TS_ECONFIG;
  } else if (secret && f->st.st_uid != geteuid() && f->st.st_uid != 0) {
    set_err(err, errlen, "%s/%s: owned by uid %u: a key file must be owned by the daemon's "
            "uid %u or root", dir, name, (unsigned)f->st.st_uid, (unsigned)geteuid());
    rc = TS_ECONFIG;
  } else if (read_whole(fd, f) != 0) {
    if (errno == EFBIG)
      set_err(err, errlen, "%s/%s: %d bytes or more", dir, name, TS_KEYRING_FILE_MAX);
    else
      set_err(err, errlen, "%s/%s: %s", dir, name, strerror(errno));
    rc = TS_ECONFIG;
  }
  close(fd);
  return rc;
}

/* ------------------------------------------------------------------ single keys */

int ts_keyring_thumbprint(const uint8_t pk[32], char kid[TS_KID_LEN + 1]) {
  char x[TS_KID_LEN + 1], members[96];
  uint8_t h[crypto_hash_sha256_BYTES];
  ts_jws_b64_encode_to(x, pk, 32);
  int n = snprintf(members, sizeof(members), "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}",
                   x);
  crypto_hash_sha256(h, (const unsigned char *)members, (unsigned long long)n);
  ts_jws_b64_encode_to(kid, h, sizeof(h));
  return 0;
}

/* Decodes the base64url string member name of o into exactly n bytes. Returns 0 or -1 (out
 * wiped). */
static int b64_member(const json_t *o, const char *name, uint8_t *out, size_t n) {
  const json_t *v = json_object_get(o, name);
  size_t got;
  if (json_is_string(v) &&
      ts_jws_b64_decode(json_string_value(v), json_string_length(v), out, n, &got) == 0 &&
      got == n)
    return 0;
  sodium_memzero(out, n);
  return -1;
}

/* 1 when member name is absent or one of the strings a, b (b may be NULL). */
static int absent_or(const json_t *o, const char *name, const char *a, const char *b) {
  const json_t *v = json_object_get(o, name);
  return !v || str_eq(v, a) || (b && str_eq(v, b));
}

/* Fills k from a parsed JWK object. Returns NULL or the reason it is refused. */
static const char *import_object(const json_t *o, ts_key *k) {
  if (!str_eq(json_object_get(o, "kty"), "OKP")) return "kty is not \"OKP\"";
  if (!str_eq(json_object_get(o, "crv"), "Ed25519")) return "crv is not \"Ed25519\"";
  if (b64_member(o, "x", k->pk, sizeof(k->pk)) != 0)
    return "x is not 32 bytes of canonical base64url";
  if (!crypto_core_ed25519_is_valid_point(k->pk)) return "x is not a valid Ed25519 public key";
  if (!absent_or(o, "use", "sig", NULL)) return "use is not \"sig\"";
  if (!absent_or(o, "alg", "EdDSA", "Ed25519")) return "alg is not \"EdDSA\"";
  if (json_object_get(o, "d")) {
    uint8_t seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
    int bad = b64_member(o, "d", seed, sizeof(seed)) != 0;
    if (!bad) {
      crypto_sign_seed_keypair(pk, k->sk, seed);
      bad = memcmp(pk, k->pk, sizeof(pk)) != 0 ? 2 : 0;
    }
    sodium_memzero(seed, sizeof(seed));
    if (bad == 1) return "d is not 32 bytes of canonical base64url";
    if (bad == 2) return "x is not the public key of d";
    k->has_sk = 1;
  }
  ts_keyring_thumbprint(k->pk, k->kid);
  const json_t *kid = json_object_get(o, "kid");
  if (kid && !str_eq(kid, k->kid)) return "kid is not the RFC 7638 thumbprint of the key";
  return NULL;
}

int ts_keyring_jwk_import(const char *text, size_t len, ts_key *out, const char **why) {
  const char *reason;
  json_error_t jerr;
  sodium_memzero(out, sizeof(*out));
  json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!json_is_object(o))
    reason = "not a JSON object (or duplicate members, or invalid UTF-8)";
  else
    reason = import_object(o, out);
  /* jansson frees without wiping: wipe the d string ourselves (its parser's scratch buffer is
   * beyond our reach). */
  json_t *d = json_object_get(o, "d");
  if (json_is_string(d)) sodium_memzero((char *)json_string_value(d), json_string_length(d));
  json_decref(o);
  if (why) *why = reason;
  if (!reason) return 0;
  sodium_memzero(out, sizeof(*out));
  return TS_ECONFIG;
}

int ts_keyring_jwk_export(const ts_key *k, int with_private, char *out, size_t cap) {
  char x[TS_KID_LEN + 1], d[TS_KID_LEN + 1];
  int n;
  if (with_private && !k->has_sk) return TS_EINTERNAL;
  ts_jws_b64_encode_to(x, k->pk, sizeof(k->pk));
  if (with_private) {
    ts_jws_b64_encode_to(d, k->sk, crypto_sign_SEEDBYTES);
    n = snprintf(out, cap,
                 "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"d\":\"%s\",\"kid\":\"%s\","
                 "\"use\":\"sig\",\"alg\":\"EdDSA\"}", x, d, k->kid);
    sodium_memzero(d, sizeof(d));
  } else {
    n = snprintf(out, cap,
                 "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"%s\","
                 "\"use\":\"sig\",\"alg\":\"EdDSA\"}", x, k->kid);
  }
  if (n >= 0 && (size_t)n < cap) return 0;
  if (cap > 0) sodium_memzero(out, cap);
  return TS_EINTERNAL;
}

int ts_keyring_jwk_public(const ts_key *k, json_t **out) {
  char x[TS_KID_LEN + 1];
  ts_jws_b64_encode_to(x, k->pk, sizeof(k->pk));
  *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x", x,
                   "kid", k->kid, "use", "sig", "alg", "EdDSA");
  return *out ? 0 : TS_ENOMEM;
}

int ts_keyring_keygen(const char *dir, ts_key *out, char *err, size_t errlen) {
  char text[TS_JWK_TEXT_MAX + 1];
  sodium_memzero(out, sizeof(*out));
  crypto_sign_keypair(out->pk, out->sk);
  out->has_sk = 1;
  ts_keyring_thumbprint(out->pk, out->kid);
  snprintf(out->file, sizeof(out->file), "%s.jwk", out->kid);
  int rc = ts_keyring_jwk_export(out, 1, text, sizeof(text) - 1);
  if (rc == 0) {
    size_t n = strlen(text);
    text[n] = '\n';
    rc = write_atomic(dir, out->file, text, n + 1, &out->mtime, err, errlen);
  }
  sodium_memzero(text, sizeof(text));
  if (rc != 0) sodium_memzero(out, sizeof(*out));
  return rc;
}

/* ------------------------------------------------------------------ keys.json */

/* Copies a kid member (a 43-character base64url string). Returns 0 or -1. */
static int kid_copy(char dst[TS_KID_LEN + 1], const json_t *v) {
  if (!json_is_string(v) || json_string_length(v) != TS_KID_LEN) return -1;
  const char *s = json_string_value(v);
  for (size_t i = 0; i < TS_KID_LEN; i++) {
    char c = s[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return -1;
  }
  memcpy(dst, s, TS_KID_LEN + 1);
  return 0;
}

static int parse_state(const json_t *o, ts_keyring_state *st) {
  memset(st, 0, sizeof(*st));
  if (!json_is_object(o)) return -1;
  const json_t *a = json_object_get(o, "active"), *x = json_object_get(o, "next");
  const json_t *r = json_object_get(o, "retired"), *e;
  if (a && !json_is_null(a) && kid_copy(st->active, a) != 0) return -1;
  if (x && !json_is_null(x) && kid_copy(st->next, x) != 0) return -1;
  if (!r || json_is_null(r)) return 0;
  if (!json_is_array(r) || json_array_size(r) > TS_KEYRING_MAX) return -1;
  size_t i;
  json_array_foreach(r, i, e) {
    const json_t *until = json_object_get(e, "until");
    if (!json_is_integer(until) || kid_copy(st->retired[i].kid, json_object_get(e, "kid")) != 0)
      return -1;
    st->retired[i].until = (int64_t)json_integer_value(until);
    st->n_retired++;
  }
  return 0;
}

int ts_keyring_state_load(const char *dir, ts_keyring_state *st, int *found, char *err,
                          size_t errlen) {
  struct small_file f;
  const char *name = TS_KEYRING_STATE_FILE;
  memset(st, 0, sizeof(*st));
  *found = 0;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    set_err(err, errlen, "%s: %s", dir, strerror(errno));
    return TS_ECONFIG;
  }
  int rc = read_small(dfd, dir, name, 0, &f, err, errlen);
  close(dfd);
  if (rc != 0) return rc == 1 ? 0 : rc;
  /* Not secret, but it names the signing key: only the daemon (or root) may change it. */
  if (f.st.st_mode & 022) {
    set_err(err, errlen, "%s/%s: permissions %04o are too open: group and others must not "
            "write to it (chmod go-w)", dir, name, (unsigned)(f.st.st_mode & 07777));
    return TS_ECONFIG;
  }
  if (f.st.st_uid != geteuid() && f.st.st_uid != 0) {
    set_err(err, errlen, "%s/%s: owned by uid %u: it must be owned by the daemon's uid %u or "
            "root", dir, name, (unsigned)f.st.st_uid, (unsigned)geteuid());
    return TS_ECONFIG;
  }
  json_error_t jerr;
  json_t *o = json_loadb(f.buf, f.n, JSON_REJECT_DUPLICATES, &jerr);
  rc = parse_state(o, st);
  json_decref(o);
  if (rc != 0) {
    memset(st, 0, sizeof(*st));
    set_err(err, errlen, "%s/%s: not a key state file ({\"active\":kid, \"next\":kid, "
            "\"retired\":[{\"kid\":kid, \"until\":int}]})", dir, name);
    return TS_ECONFIG;
  }
  *found = 1;
  return 0;
}

int ts_keyring_state_save(const char *dir, const ts_keyring_state *st, char *err,
                          size_t errlen) {
  int rc = TS_ENOMEM;
  char *text = NULL;
  json_t *o = NULL, *retired = json_array();
  if (!retired) goto fail;
  for (size_t i = 0; i < st->n_retired; i++)
    if (json_array_append_new(retired, json_pack("{s:s, s:I}", "kid", st->retired[i].kid,
                                                 "until", (json_int_t)st->retired[i].until)))
      goto fail;
  o = json_pack("{s:s?, s:s?, s:O}", "active", st->active[0] ? st->active : NULL, "next",
                st->next[0] ? st->next : NULL, "retired", retired);
  if (!o || !(text = json_dumps(o, JSON_INDENT(2)))) goto fail;
  rc = write_atomic(dir, TS_KEYRING_STATE_FILE, text, strlen(text), NULL, err, errlen);
fail:
  if (rc == TS_ENOMEM) set_err(err, errlen, "%s/%s: out of memory", dir, TS_KEYRING_STATE_FILE);
  free(text);
  json_decref(o);
  json_decref(retired);
  return rc;
}

/* ------------------------------------------------------------------ keyring internals */

static ts_key *find_mut(ts_keyring *kr, const char *kid) {
  for (size_t i = 0; i < kr->n; i++)
    if (strcmp(kr->keys[i].kid, kid) == 0) return &kr->keys[i];
  return NULL;
}

static ts_key *with_role(ts_keyring *kr, ts_key_role role) {
  for (size_t i = 0; i < kr->n; i++)
    if (kr->keys[i].role == role) return &kr->keys[i];
  return NULL;
}

/* Loads one *.jwk file into the next free slot. Returns 0 (loaded or skipped) or TS_ECONFIG. */
static int load_key_file(ts_keyring *kr, int dfd, const char *name, char *err, size_t errlen) {
  struct small_file f; /* holds a secret: wiped below */
  const char *why = NULL;
  int rc = read_small(dfd, kr->dir, name, 1, &f, err, errlen);
  if (rc != 0) goto done;
  rc = TS_ECONFIG;
  if (kr->n == TS_KEYRING_MAX) {
    set_err(err, errlen, "%s: more than %d key files", kr->dir, TS_KEYRING_MAX);
    goto done;
  }
  ts_key *k = &kr->keys[kr->n];
  if (ts_keyring_jwk_import(f.buf, f.n, k, &why) != 0) {
    set_err(err, errlen, "%s/%s: not a usable Ed25519 JWK: %s", kr->dir, name,
            why ? why : "out of memory");
    goto done;
  }
  const ts_key *dup = find_mut(kr, k->kid);
  if (dup) {
    set_err(err, errlen, "%s/%s: the same key as %s", kr->dir, name, dup->file);
    sodium_memzero(k, sizeof(*k));
    goto done;
  }
  k->mtime = (int64_t)f.st.st_mtime;
  snprintf(k->file, sizeof(k->file), "%s", name);
  kr->n++;
  rc = 0;
done:
  sodium_memzero(&f, sizeof(f));
  return rc == 1 ? 0 : rc;
}

static int load_dir(ts_keyring *kr, char *err, size_t errlen) {
  DIR *d = opendir(kr->dir);
  if (!d) {
    set_err(err, errlen, "%s: %s", kr->dir, strerror(errno));
    return TS_ECONFIG;
  }
  struct stat st;
  if (fstat(dirfd(d), &st) != 0) {
    set_err(err, errlen, "%s: %s", kr->dir, strerror(errno));
    closedir(d);
    return TS_ECONFIG;
  }
  if (st.st_mode & 022) {
    set_err(err, errlen, "%s: permissions %04o are too open: group and others must not write "
            "to the key directory (chmod go-w)", kr->dir, (unsigned)(st.st_mode & 07777));
    closedir(d);
    return TS_ECONFIG;
  }
  if (st.st_uid != geteuid() && st.st_uid != 0) { /* its owner could swap the keys */
    set_err(err, errlen, "%s: owned by uid %u: the key directory must be owned by the daemon's "
            "uid %u or root", kr->dir, (unsigned)st.st_uid, (unsigned)geteuid());
    closedir(d);
    return TS_ECONFIG;
  }
  struct dirent *de;
  int rc = 0;
  while (rc == 0 && (errno = 0, de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.' || !has_suffix(de->d_name, ".jwk")) continue;
    rc = load_key_file(kr, dirfd(d), de->d_name, err, errlen);
  }
  if (rc == 0 && errno != 0) {
    set_err(err, errlen, "%s: %s", kr->dir, strerror(errno));
    rc = TS_ECONFIG;
  }
  closedir(d);
  return rc;
}

/* Removes keys[i], deleting its file first when writable. Returns 0, or -1 when the file
 * could not be deleted (then the key stays). */
static int drop_key(ts_keyring *kr, size_t i) {
  ts_key *k = &kr->keys[i];
  if (kr->writable && k->file[0]) {
    int dfd = open(kr->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int gone = dfd >= 0 && (unlinkat(dfd, k->file, 0) == 0 || errno == ENOENT);
    if (dfd >= 0) close(dfd);
    if (!gone) return -1;
  }
  memmove(k, k + 1, (kr->n - i - 1) * sizeof(*k));
  kr->n--;
  sodium_memzero(&kr->keys[kr->n], sizeof(kr->keys[0]));
  return 0;
}

/* Drops retired keys whose until has passed (now > until). */
static void expire(ts_keyring *kr, int64_t now) {
  for (size_t i = 0; i < kr->n;) {
    if (kr->keys[i].role == TS_KEY_RETIRED && now > kr->keys[i].until && drop_key(kr, i) == 0)
      continue;
    i++;
  }
}

/* Publish order: active, next, then newest mtime first, then smaller kid. */
static int rank(const ts_key *k) {
  return k->role == TS_KEY_ACTIVE ? 0 : k->role == TS_KEY_NEXT ? 1 : 2;
}

static int before(const ts_key *a, const ts_key *b) {
  if (rank(a) != rank(b)) return rank(a) < rank(b);
  if (a->mtime != b->mtime) return a->mtime > b->mtime;
  return strcmp(a->kid, b->kid) < 0;
}

/* Insertion sort (no qsort: its scratch copies of secret keys would never be wiped). */
static void order(ts_keyring *kr) {
  ts_key tmp;
  for (size_t i = 1; i < kr->n; i++) {
    if (!before(&kr->keys[i], &kr->keys[i - 1])) continue;
    size_t j = i;
    tmp = kr->keys[i];
    for (; j > 0 && before(&tmp, &kr->keys[j - 1]); j--) kr->keys[j] = kr->keys[j - 1];
    kr->keys[j] = tmp;
  }
  sodium_memzero(&tmp, sizeof(tmp));
}

static void build_state(const ts_keyring *kr, ts_keyring_state *st) {
  memset(st, 0, sizeof(*st));
  for (size_t i = 0; i < kr->n; i++) {
    const ts_key *k = &kr->keys[i];
    if (k->role == TS_KEY_ACTIVE) memcpy(st->active, k->kid, sizeof(st->active));
    if (k->role == TS_KEY_NEXT) memcpy(st->next, k->kid, sizeof(st->next));
    if (k->role != TS_KEY_RETIRED) continue;
    memcpy(st->retired[st->n_retired].kid, k->kid, sizeof(k->kid));
    st->retired[st->n_retired++].until = k->until;
  }
}

/* Same content, retired entries in any order. */
static int state_eq(const ts_keyring_state *a, const ts_keyring_state *b) {
  if (strcmp(a->active, b->active) != 0 || strcmp(a->next, b->next) != 0 ||
      a->n_retired != b->n_retired)
    return 0;
  for (size_t i = 0; i < a->n_retired; i++) {
    size_t j = 0;
    while (j < b->n_retired && (strcmp(a->retired[i].kid, b->retired[j].kid) != 0 ||
                                a->retired[i].until != b->retired[j].until))
      j++;
    if (j == b->n_retired) return 0;
  }
  return 1;
}

static int save_state(ts_keyring *kr, char *err, size_t errlen) {
  ts_keyring_state st;
  build_state(kr, &st);
  return ts_keyring_state_save(kr->dir, &st, err, errlen);
}

/* Generates a key with the given role into the next free slot. */
static int add_generated(ts_keyring *kr, ts_key_role role, char *err, size_t errlen) {
  if (kr->n == TS_KEYRING_MAX) {
    set_err(err, errlen, "%s: already %d keys; no room for a new one", kr->dir, TS_KEYRING_MAX);
    return TS_EUNAVAILABLE;
  }
  int rc = ts_keyring_keygen(kr->dir, &kr->keys[kr->n], err, errlen);
  if (rc != 0) return rc;
  kr->keys[kr->n++].role = role;
  return 0;
}

/* Without a named active key: the newest private key by mtime, ties to the smallest kid. */
static int pick_active(ts_keyring *kr, char *err, size_t errlen) {
  ts_key *best = NULL;
  for (size_t i = 0; i < kr->n; i++) {
    ts_key *k = &kr->keys[i];
    if (!k->has_sk || k->role != TS_KEY_OTHER) continue;
    if (!best || k->mtime > best->mtime ||
        (k->mtime == best->mtime && strcmp(k->kid, best->kid) < 0))
      best = k;
  }
  if (!best) {
    set_err(err, errlen, "%s: no usable private key (a .jwk file with \"d\")", kr->dir);
    return TS_ECONFIG;
  }
  best->role = TS_KEY_ACTIVE;
  return 0;
}

/* Gives kid the role; a kid named twice in keys.json, or a signing role for a key without
 * its private part, is a configuration error. A kid without a file is ignored. */
static int assign(ts_keyring *kr, const char *kid, ts_key_role role, int64_t until, char *err,
                  size_t errlen) {
  ts_key *k = find_mut(kr, kid);
  if (!k) return 0;
  if (k->role != TS_KEY_OTHER || (role != TS_KEY_RETIRED && !k->has_sk)) {
    set_err(err, errlen, "%s/%s: key %s is %s", kr->dir, TS_KEYRING_STATE_FILE, kid,
            k->role != TS_KEY_OTHER ? "listed twice" : "named to sign but has no \"d\"");
    return TS_ECONFIG;
  }
  k->role = role;
  k->until = until;
  return 0;
}

static int apply_state(ts_keyring *kr, const ts_keyring_state *st, char *err, size_t errlen) {
  if (st->active[0] && !find_mut(kr, st->active)) {
    set_err(err, errlen, "%s/%s: the active key %s has no .jwk file", kr->dir,
            TS_KEYRING_STATE_FILE, st->active);
    return TS_ECONFIG;
  }
  int rc = 0;
  if (st->active[0]) rc = assign(kr, st->active, TS_KEY_ACTIVE, 0, err, errlen);
  if (rc == 0 && st->next[0]) rc = assign(kr, st->next, TS_KEY_NEXT, 0, err, errlen);
  for (size_t i = 0; rc == 0 && i < st->n_retired; i++)
    rc = assign(kr, st->retired[i].kid, TS_KEY_RETIRED, st->retired[i].until, err, errlen);
  if (rc == 0 && !with_role(kr, TS_KEY_ACTIVE)) rc = pick_active(kr, err, errlen);
  return rc;
}

/* Settles the roles after the files are loaded (see ts_keyring_load). */
static int settle(ts_keyring *kr, int64_t now, char *err, size_t errlen) {
  ts_keyring_state st, cur;
  int found, rc = ts_keyring_state_load(kr->dir, &st, &found, err, errlen);
  if (rc != 0) return rc;
  if (!found && (!kr->writable || kr->n > 0)) return pick_active(kr, err, errlen);
  if (!found) {
    kr->managed = 1;
    if ((rc = add_generated(kr, TS_KEY_ACTIVE, err, errlen)) != 0 ||
        (rc = add_generated(kr, TS_KEY_NEXT, err, errlen)) != 0)
      return rc;
    return save_state(kr, err, errlen);
  }
  if ((rc = apply_state(kr, &st, err, errlen)) != 0) return rc;
  expire(kr, now);
  if (!kr->writable) return 0;
  kr->managed = 1;
  if (!with_role(kr, TS_KEY_NEXT) && (rc = add_generated(kr, TS_KEY_NEXT, err, errlen)) != 0)
    return rc;
  build_state(kr, &cur);
  return state_eq(&st, &cur) ? 0 : ts_keyring_state_save(kr->dir, &cur, err, errlen);
}

/* ------------------------------------------------------------------ the keyring */

int ts_keyring_load(ts_keyring **out, const char *dir, int writable, int64_t now, char *err,
                    size_t errlen) {
  *out = NULL;
  set_err(err, errlen, "%s", "");
  if (sodium_init() < 0) {
    set_err(err, errlen, "sodium_init failed");
    return TS_EINTERNAL;
  }
  ts_keyring *kr = sodium_malloc(sizeof(*kr));
  if (!kr) return TS_ENOMEM;
  memset(kr, 0, sizeof(*kr));
  kr->writable = writable != 0;
  int rc = TS_ENOMEM;
  if (strlen(dir) >= sizeof(kr->dir)) {
    rc = TS_ECONFIG;
    set_err(err, errlen, "key directory path too long");
    goto fail;
  }
  memcpy(kr->dir, dir, strlen(dir) + 1);
  if ((rc = load_dir(kr, err, errlen)) != 0) goto fail;
  if ((rc = settle(kr, now, err, errlen)) != 0) goto fail;
  order(kr);
  *out = kr;
  return 0;
fail:
  ts_keyring_free(kr);
  return rc;
}

void ts_keyring_free(ts_keyring *kr) {
  if (!kr) return;
  sodium_memzero(kr, sizeof(*kr));
  sodium_free(kr);
}

int ts_keyring_rotate(ts_keyring *kr, int64_t now, int64_t max_lifetime, char *err,
                      size_t errlen) {
  set_err(err, errlen, "%s", "");
  if (!kr->managed) {
    set_err(err, errlen, "%s: keys are managed outside (read-only directory, or keys without "
            "%s): rotate them there", kr->dir, TS_KEYRING_STATE_FILE);
    return TS_EUNAVAILABLE;
  }
  expire(kr, now);
  ts_key *a = with_role(kr, TS_KEY_ACTIVE), *x = with_role(kr, TS_KEY_NEXT);
  if (!a || !x) {
    set_err(err, errlen, "%s: no active or next key", kr->dir);
    return TS_EINTERNAL;
  }
  int rc = add_generated(kr, TS_KEY_NEXT, err, errlen); /* appends: a and x stay valid */
  if (rc != 0) return rc;
  a->role = TS_KEY_RETIRED;
  a->until = sat_add(now, max_lifetime > 0 ? max_lifetime : 0);
  x->role = TS_KEY_ACTIVE;
  if ((rc = save_state(kr, err, errlen)) != 0) {
    a->role = TS_KEY_ACTIVE;
    a->until = 0;
    x->role = TS_KEY_NEXT;
    kr->keys[kr->n - 1].role = TS_KEY_OTHER; /* if its file cannot go, it stays harmless */
    drop_key(kr, kr->n - 1);
    return rc;
  }
  order(kr);
  return 0;
}

const ts_key *ts_keyring_find(const ts_keyring *kr, const char *kid) {
  return find_mut((ts_keyring *)kr, kid);
}

const ts_key *ts_keyring_active(const ts_keyring *kr) {
  return with_role((ts_keyring *)kr, TS_KEY_ACTIVE);
}

const ts_key *ts_keyring_next(const ts_keyring *kr) {
  return with_role((ts_keyring *)kr, TS_KEY_NEXT);
}

int ts_keyring_lookup(void *ctx, const char *kid, uint8_t pk[32]) {
  const ts_key *k = ts_keyring_find(ctx, kid);
  if (!k) return TS_ENOTFOUND;
  memcpy(pk, k->pk, sizeof(k->pk));
  return 0;
}

int ts_keyring_jwks(const ts_keyring *kr, json_t **out) {
  json_t *keys = json_array(), *jwk;
  *out = NULL;
  if (!keys) return TS_ENOMEM;
  for (size_t i = 0; i < kr->n; i++) {
    if (ts_keyring_jwk_public(&kr->keys[i], &jwk) != 0 || json_array_append_new(keys, jwk)) {
      json_decref(keys);
      return TS_ENOMEM;
    }
  }
  json_t *set = json_object();
  if (!set || json_object_set_new(set, "keys", keys) != 0) {
    json_decref(set);
    return TS_ENOMEM;
  }
  *out = set;
  return 0;
}
