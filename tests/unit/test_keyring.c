/* tests/unit/test_keyring.c: JWK files, thumbprints, the key directory, rotation
 * (sidecar/keyring/keyring.h). Each case works in its own temporary directory.
 *
 * Known answers: RFC 8037 A.1 (the key) and A.3 (its RFC 7638 thumbprint). */
#include "error.h"
#include "jws.h"
#include "keyring.h"
#include "tt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const A1_JWK =
    "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\n"
    " \"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\",\n"
    " \"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}\n";
static const char *const A1_PUB =
    "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}";
static const char *const A3_KID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
static const char *const A1_SEED_HEX =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

static char g_dir[64];
static char g_err[512];

/* ------------------------------------------------------------------ helpers */

static void setup(void) {
  TT_ASSERT(sodium_init() >= 0);
  snprintf(g_dir, sizeof(g_dir), "/tmp/tessera-keyring-XXXXXX");
  TT_ASSERT(mkdtemp(g_dir) != NULL);
  g_err[0] = '\0';
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static void teardown(void) { nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static char *path_of(const char *name) {
  static char p[512];
  snprintf(p, sizeof(p), "%s/%s", g_dir, name);
  return p;
}

static void write_file(const char *name, const char *text, mode_t mode) {
  int fd = open(path_of(name), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  TT_ASSERT(fd >= 0);
  TT_EQ_INT(write(fd, text, strlen(text)), (long long)strlen(text));
  TT_EQ_INT(fchmod(fd, mode), 0);
  close(fd);
}

static int exists(const char *name) {
  struct stat st;
  return stat(path_of(name), &st) == 0;
}

static mode_t mode_of(const char *name) {
  struct stat st;
  TT_EQ_INT(stat(path_of(name), &st), 0);
  return st.st_mode & 07777;
}

static int count_entries(void) {
  DIR *d = opendir(g_dir);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
  closedir(d);
  return n;
}

static char *jwk_name(const char *kid) {
  static char n[64];
  snprintf(n, sizeof(n), "%s.jwk", kid);
  return n;
}

static void set_mtime(const char *name, time_t t) {
  struct timespec ts[2] = {{t, 0}, {t, 0}};
  TT_EQ_INT(utimensat(AT_FDCWD, path_of(name), ts, 0), 0);
}

static ts_keyring *open_ok(int writable, int64_t now) {
  ts_keyring *kr = NULL;
  int rc = ts_keyring_load(&kr, g_dir, writable, now, g_err, sizeof(g_err));
  TT_ASSERT_MSG(rc == 0, "ts_keyring_load: %d %s", rc, g_err);
  return kr;
}

static int open_fails(int writable) {
  ts_keyring *kr = (ts_keyring *)1;
  int rc = ts_keyring_load(&kr, g_dir, writable, 0, g_err, sizeof(g_err));
  TT_ASSERT(rc != 0 && kr == NULL);
  return rc;
}

/* ------------------------------------------------------------------ single keys */

static void rfc8037_a3_thumbprint(void) {
  setup();
  ts_key k;
  const char *why = NULL;
  TT_EQ_INT(ts_keyring_jwk_import(A1_JWK, strlen(A1_JWK), &k, &why), 0);
  TT_EQ_STR(k.kid, A3_KID);
  TT_ASSERT(k.has_sk);
  uint8_t seed[32], pk[32], sk[64];
  TT_EQ_INT(sodium_hex2bin(seed, 32, A1_SEED_HEX, 64, NULL, NULL, NULL), 0);
  crypto_sign_seed_keypair(pk, sk, seed);
  TT_ASSERT(memcmp(k.sk, sk, 64) == 0 && memcmp(k.pk, pk, 32) == 0);
  char kid[TS_KID_LEN + 1];
  TT_EQ_INT(ts_keyring_thumbprint(pk, kid), 0);
  TT_EQ_STR(kid, A3_KID);
  TT_EQ_INT(ts_keyring_jwk_import(A1_PUB, strlen(A1_PUB), &k, &why), 0);
  TT_EQ_STR(k.kid, A3_KID);
  TT_ASSERT(!k.has_sk);
  teardown();
}

static void jwk_export_roundtrip(void) {
  setup();
  ts_key k, back;
  char text[TS_JWK_TEXT_MAX];
  TT_EQ_INT(ts_keyring_jwk_import(A1_JWK, strlen(A1_JWK), &k, NULL), 0);
  TT_EQ_INT(ts_keyring_jwk_export(&k, 1, text, sizeof(text)), 0);
  TT_ASSERT(strstr(text, "\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\"") != NULL);
  TT_EQ_INT(ts_keyring_jwk_import(text, strlen(text), &back, NULL), 0);
  TT_ASSERT(back.has_sk && memcmp(back.sk, k.sk, 64) == 0);
  TT_EQ_INT(ts_keyring_jwk_export(&k, 0, text, sizeof(text)), 0);
  TT_EQ_STR(text, "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\","
                  "\"kid\":\"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k\",\"use\":\"sig\",\"alg\":\"EdDSA\"}");
  TT_EQ_INT(ts_keyring_jwk_import(text, strlen(text), &back, NULL), 0);
  TT_ASSERT(!back.has_sk);
  TT_EQ_INT(ts_keyring_jwk_export(&back, 1, text, sizeof(text)), TS_EINTERNAL);
  TT_EQ_INT(ts_keyring_jwk_export(&k, 1, text, 100), TS_EINTERNAL);
  json_t *pub = NULL;
  TT_EQ_INT(ts_keyring_jwk_public(&k, &pub), 0);
  TT_EQ_STR(json_string_value(json_object_get(pub, "kid")), A3_KID);
  TT_ASSERT(json_object_get(pub, "d") == NULL);
  json_decref(pub);
  teardown();
}

static void jwk_import_rejects(void) {
  setup();
  static const char *const bad[] = {
      "", "[]", "{\"kty\":\"OKP\"", "{\"kty\":\"EC\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
      "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURp\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHUR\"}",
      /* small-order point (the identity) */
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2B\","
      "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\","
      "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":1,\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\","
      "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"use\":\"enc\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"alg\":\"ES256\"}",
      "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"kid\":\"mine\"}",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ts_key k;
    const char *why = NULL;
    memset(&k, 0x55, sizeof(k));
    TT_ASSERT_MSG(ts_keyring_jwk_import(bad[i], strlen(bad[i]), &k, &why) == TS_ECONFIG,
                  "accepted #%zu %s", i, bad[i]);
    TT_ASSERT(why != NULL && strstr(why, "nWGx") == NULL);
    TT_ASSERT(!k.has_sk && k.sk[0] == 0 && k.kid[0] == '\0'); /* wiped */
  }
  /* d with the x of another key */
  uint8_t pk[32], sk[64];
  char x[TS_KID_LEN + 1], text[256];
  crypto_sign_keypair(pk, sk);
  ts_jws_b64_encode_to(x, pk, 32);
  snprintf(text, sizeof(text), "{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
           "\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\",\"x\":\"%s\"}", x);
  ts_key k;
  const char *why = NULL;
  TT_EQ_INT(ts_keyring_jwk_import(text, strlen(text), &k, &why), TS_ECONFIG);
  TT_EQ_STR(why, "x is not the public key of d");
  teardown();
}

/* ------------------------------------------------------------------ directories */

static void a1_key_in_dir(void) {
  setup();
  write_file("a1.jwk", A1_JWK, 0600);
  ts_keyring *kr = open_ok(0, 0);
  TT_EQ_INT(kr->n, 1);
  TT_EQ_STR(ts_keyring_active(kr)->kid, A3_KID);
  TT_EQ_STR(ts_keyring_active(kr)->file, "a1.jwk");
  TT_ASSERT(ts_keyring_next(kr) == NULL);
  TT_ASSERT(!kr->managed);
  uint8_t pk[32];
  TT_EQ_INT(ts_keyring_lookup(kr, A3_KID, pk), 0);
  TT_EQ_INT(ts_keyring_lookup(kr, "nope", pk), TS_ENOTFOUND);
  json_t *jwks = NULL;
  TT_EQ_INT(ts_keyring_jwks(kr, &jwks), 0);
  char *s = json_dumps(jwks, JSON_COMPACT);
  TT_EQ_STR(s, "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\","
               "\"kid\":\"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k\",\"use\":\"sig\",\"alg\":\"EdDSA\"}]}");
  free(s);
  json_decref(jwks);
  TT_EQ_INT(ts_keyring_rotate(kr, 0, 60, g_err, sizeof(g_err)), TS_EUNAVAILABLE);
  ts_keyring_free(kr);
  /* writable, but keys without keys.json: taken as is, nothing written */
  kr = open_ok(1, 0);
  TT_EQ_INT(kr->n, 1);
  TT_ASSERT(!kr->managed && !exists(TS_KEYRING_STATE_FILE));
  TT_EQ_INT(ts_keyring_rotate(kr, 0, 60, g_err, sizeof(g_err)), TS_EUNAVAILABLE);
  ts_keyring_free(kr);
  teardown();
}

static void too_open_file_refused(void) {
  setup();
  static const mode_t modes[] = {0640, 0604, 0620, 0602, 0610, 0644, 0666};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    write_file("a1.jwk", A1_JWK, modes[i]);
    TT_EQ_INT(open_fails(0), TS_ECONFIG);
    TT_ASSERT_MSG(strstr(g_err, path_of("a1.jwk")) != NULL, "message: %s", g_err);
    TT_ASSERT(strstr(g_err, "nWGx") == NULL);
    TT_EQ_INT(open_fails(1), TS_ECONFIG);
  }
  write_file("a1.jwk", A1_PUB, 0644); /* public-only keys too: a writable key is as bad */
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  write_file("a1.jwk", A1_JWK, 0400);
  ts_keyring_free(open_ok(0, 0));
  teardown();
}

/* A key file owned by another uid (not root) is refused, whatever its mode; root's is taken.
 * Runs as root (like the suite): chown to nobody's uid. */
static void foreign_owner_refused(void) {
  setup();
  TT_ASSERT_MSG(geteuid() == 0, "this case needs root (chown)");
  write_file("a1.jwk", A1_JWK, 0600);
  TT_EQ_INT(chown(path_of("a1.jwk"), 65534, 65534), 0);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  TT_ASSERT_MSG(strstr(g_err, path_of("a1.jwk")) != NULL && strstr(g_err, "owned by uid 65534"),
                "message: %s", g_err);
  TT_ASSERT(strstr(g_err, "nWGx") == NULL);
  TT_EQ_INT(open_fails(1), TS_ECONFIG);
  write_file("a1.jwk", A1_PUB, 0600); /* a public-only key too: its owner could swap it */
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  /* Owned by the daemon's uid (root here) again: taken. Root's files are trusted too when the
   * daemon runs as another uid (the mode check still applies). */
  TT_EQ_INT(chown(path_of("a1.jwk"), 0, 0), 0);
  write_file("a1.jwk", A1_JWK, 0600);
  ts_keyring_free(open_ok(0, 0));
  /* A key directory of another uid: its owner could swap the keys. */
  TT_EQ_INT(chown(g_dir, 65534, 65534), 0);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  TT_ASSERT_MSG(strstr(g_err, g_dir) != NULL && strstr(g_err, "owned by uid 65534"), "message: %s",
                g_err);
  TT_EQ_INT(chown(g_dir, 0, 0), 0);
  ts_keyring_free(open_ok(0, 0));
  teardown();
}

/* The state file names the active key: one that group or others may write, or that another
 * uid owns, is refused (it is not secret, so 0644 is fine). */
static void state_file_trust(void) {
  setup();
  ts_keyring_state st;
  int found;
  write_file(TS_KEYRING_STATE_FILE, "{}", 0644);
  TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), 0);
  static const mode_t modes[] = {0664, 0646, 0666};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    TT_EQ_INT(chmod(path_of(TS_KEYRING_STATE_FILE), modes[i]), 0);
    TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), TS_ECONFIG);
    TT_ASSERT_MSG(strstr(g_err, TS_KEYRING_STATE_FILE) && strstr(g_err, "too open"),
                  "mode %04o: %s", (unsigned)modes[i], g_err);
  }
  TT_EQ_INT(chmod(path_of(TS_KEYRING_STATE_FILE), 0644), 0);
  TT_ASSERT_MSG(geteuid() == 0, "this case needs root (chown)");
  TT_EQ_INT(chown(path_of(TS_KEYRING_STATE_FILE), 65534, 65534), 0);
  TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), TS_ECONFIG);
  TT_ASSERT_MSG(strstr(g_err, "owned by uid 65534"), "message: %s", g_err);
  teardown();
}

/* A key directory group or others may write is refused (they could plant or swap keys). */
static void writable_dir_refused(void) {
  setup();
  write_file("a1.jwk", A1_JWK, 0600);
  static const mode_t modes[] = {0720, 0702, 0770, 0777, 01777};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    TT_EQ_INT(chmod(g_dir, modes[i]), 0);
    TT_EQ_INT(open_fails(0), TS_ECONFIG);
    TT_ASSERT_MSG(strstr(g_err, g_dir) != NULL && strstr(g_err, "key directory"), "mode %04o: %s",
                  (unsigned)modes[i], g_err);
    TT_ASSERT(strstr(g_err, "nWGx") == NULL);
    TT_EQ_INT(open_fails(1), TS_ECONFIG);
  }
  TT_EQ_INT(chmod(g_dir, 0755), 0); /* readable by others is fine: the files are 0600 */
  ts_keyring_free(open_ok(0, 0));
  TT_EQ_INT(chmod(g_dir, 0700), 0);
  teardown();
}

static void unusable_file_named(void) {
  setup();
  write_file("a1.jwk", A1_JWK, 0600);
  write_file("broken.jwk", "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A\","
                           "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURq\"}", 0600);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  TT_ASSERT_MSG(strstr(g_err, path_of("broken.jwk")) != NULL, "message: %s", g_err);
  TT_ASSERT(strstr(g_err, "nWGx") == NULL);
  write_file("broken.jwk", "not json", 0600);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  TT_ASSERT(strstr(g_err, "broken.jwk") != NULL);
  write_file("broken.jwk", A1_JWK, 0600); /* the same key twice */
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  TT_ASSERT(strstr(g_err, "a1.jwk") != NULL && strstr(g_err, "broken.jwk") != NULL);
  TT_EQ_INT(unlink(path_of("broken.jwk")), 0);
  char *big = malloc(TS_KEYRING_FILE_MAX + 10);
  memset(big, ' ', TS_KEYRING_FILE_MAX + 9);
  big[TS_KEYRING_FILE_MAX + 9] = '\0';
  write_file("big.jwk", big, 0600);
  free(big);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  TT_ASSERT(strstr(g_err, "big.jwk") != NULL);
  teardown();
}

static void odd_entries_skipped(void) {
  setup();
  write_file("a1.jwk", A1_JWK, 0600);
  write_file(".hidden.jwk", "garbage", 0644);
  write_file("notes.txt", "garbage", 0644);
  write_file("a1.jwk.bak", "garbage", 0644);
  TT_EQ_INT(mkdir(path_of("dir.jwk"), 0700), 0);
  TT_EQ_INT(mkfifo(path_of("fifo.jwk"), 0600), 0);
  TT_EQ_INT(symlink("/nonexistent/x.jwk", path_of("dangling.jwk")), 0);
  ts_keyring *kr = open_ok(0, 0);
  TT_EQ_INT(kr->n, 1);
  ts_keyring_free(kr);
  /* a symlink to a regular file is followed (Kubernetes Secret volumes are symlinks) */
  char other[80];
  snprintf(other, sizeof(other), "%s-other", g_dir);
  TT_EQ_INT(mkdir(other, 0700), 0);
  ts_key k;
  TT_EQ_INT(ts_keyring_keygen(other, &k, g_err, sizeof(g_err)), 0);
  char target[400];
  snprintf(target, sizeof(target), "%s/%s", other, k.file);
  TT_EQ_INT(symlink(target, path_of("link.jwk")), 0);
  kr = open_ok(0, 0);
  TT_EQ_INT(kr->n, 2);
  TT_ASSERT(ts_keyring_find(kr, k.kid) != NULL);
  ts_keyring_free(kr);
  TT_EQ_INT(unlink(target), 0);
  TT_EQ_INT(rmdir(other), 0);
  teardown();
}

static void no_private_key_refused(void) {
  setup();
  TT_EQ_INT(open_fails(0), TS_ECONFIG); /* empty, read-only */
  write_file("pub.jwk", A1_PUB, 0600);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  TT_EQ_INT(open_fails(1), TS_ECONFIG); /* writable but not empty: not generated */
  TT_ASSERT(strstr(g_err, g_dir) != NULL);
  teardown();
  snprintf(g_dir, sizeof(g_dir), "/tmp/tessera-keyring-does-not-exist");
  TT_EQ_INT(open_fails(1), TS_ECONFIG);
  TT_ASSERT(strstr(g_err, g_dir) != NULL);
}

/* Without keys.json: the newest private key by mtime signs; ties go to the smaller kid;
 * a public-only key never signs. */
static void newest_private_key_is_active(void) {
  setup();
  ts_key a, b;
  TT_EQ_INT(ts_keyring_keygen(g_dir, &a, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(ts_keyring_keygen(g_dir, &b, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(mode_of(a.file), 0600);
  write_file("pub.jwk", A1_PUB, 0600);
  set_mtime("pub.jwk", 3000);
  set_mtime(a.file, 2000);
  set_mtime(b.file, 1000);
  ts_keyring *kr = open_ok(0, 0);
  TT_EQ_STR(ts_keyring_active(kr)->kid, a.kid);
  TT_EQ_STR(kr->keys[0].kid, a.kid); /* publish order: active, then newest first */
  TT_EQ_STR(kr->keys[1].kid, A3_KID);
  TT_EQ_STR(kr->keys[2].kid, b.kid);
  ts_keyring_free(kr);
  set_mtime(b.file, 2000);
  kr = open_ok(0, 0);
  TT_EQ_STR(ts_keyring_active(kr)->kid, strcmp(a.kid, b.kid) < 0 ? a.kid : b.kid);
  ts_keyring_free(kr);
  teardown();
}

/* ------------------------------------------------------------------ managed directories */

static void empty_dir_generates_two(void) {
  setup();
  ts_keyring *kr = open_ok(1, 1000);
  TT_ASSERT(kr->managed);
  TT_EQ_INT(kr->n, 2);
  const ts_key *a = ts_keyring_active(kr), *x = ts_keyring_next(kr);
  TT_ASSERT(a && x && a->has_sk && x->has_sk && strcmp(a->kid, x->kid) != 0);
  TT_ASSERT(a == &kr->keys[0] && x == &kr->keys[1]);
  TT_EQ_INT(mode_of(jwk_name(a->kid)), 0600);
  TT_EQ_INT(mode_of(jwk_name(x->kid)), 0600);
  TT_EQ_INT(mode_of(TS_KEYRING_STATE_FILE), 0600);
  TT_EQ_INT(count_entries(), 3); /* no temp file left behind */
  ts_keyring_state st;
  int found;
  TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), 0);
  TT_ASSERT(found);
  TT_EQ_STR(st.active, a->kid);
  TT_EQ_STR(st.next, x->kid);
  TT_EQ_INT(st.n_retired, 0);
  /* the files are real keys: reopening (also read-only) gives the same roles */
  char akid[TS_KID_LEN + 1], xkid[TS_KID_LEN + 1];
  memcpy(akid, a->kid, sizeof(akid));
  memcpy(xkid, x->kid, sizeof(xkid));
  ts_keyring_free(kr);
  for (int w = 0; w < 2; w++) {
    kr = open_ok(w, 1000);
    TT_EQ_INT(kr->n, 2);
    TT_EQ_STR(ts_keyring_active(kr)->kid, akid);
    TT_EQ_STR(ts_keyring_next(kr)->kid, xkid);
    TT_EQ_INT(kr->managed, w);
    ts_keyring_free(kr);
  }
  TT_EQ_INT(count_entries(), 3);
  teardown();
}

/* Signs with the active key and verifies through the keyring, as the daemon will. */
static int sign_verify(const ts_keyring *kr, const ts_key *signer) {
  json_t *claims = json_pack("{s:s, s:I}", "sub", "alice", "exp", (json_int_t)2000000000), *got;
  char *t = NULL;
  TT_EQ_INT(ts_jws_sign(signer->sk, signer->kid, "at+jwt", claims, &t), 0);
  int rc = ts_jws_verify(t, strlen(t), ts_keyring_lookup, (void *)kr, "at+jwt", &got, NULL);
  json_decref(got);
  json_decref(claims);
  free(t);
  return rc;
}

static void rotate_moves_roles(void) {
  setup();
  ts_keyring *kr = open_ok(1, 1000);
  ts_key old = *ts_keyring_active(kr), nxt = *ts_keyring_next(kr);
  TT_EQ_INT(ts_keyring_rotate(kr, 2000, 3600, g_err, sizeof(g_err)), 0);
  const ts_key *a = ts_keyring_active(kr), *x = ts_keyring_next(kr);
  TT_EQ_STR(a->kid, nxt.kid);
  TT_ASSERT(strcmp(x->kid, old.kid) != 0 && strcmp(x->kid, nxt.kid) != 0 && x->has_sk);
  const ts_key *r = ts_keyring_find(kr, old.kid);
  TT_ASSERT(r && r->role == TS_KEY_RETIRED && r->until == 5600);
  TT_EQ_INT(kr->n, 3);
  TT_ASSERT(&kr->keys[0] == a && &kr->keys[1] == x && &kr->keys[2] == r);
  json_t *jwks = NULL;
  TT_EQ_INT(ts_keyring_jwks(kr, &jwks), 0);
  TT_EQ_INT(json_array_size(json_object_get(jwks, "keys")), 3);
  TT_EQ_STR(json_string_value(json_object_get(json_array_get(json_object_get(jwks, "keys"), 2), "kid")),
            old.kid); /* the old key stays published */
  json_decref(jwks);
  TT_EQ_INT(sign_verify(kr, &old), 0); /* tokens it signed still verify */
  TT_EQ_INT(sign_verify(kr, a), 0);
  TT_EQ_INT(mode_of(jwk_name(x->kid)), 0600);
  ts_keyring_state st;
  int found;
  TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), 0);
  TT_EQ_STR(st.active, nxt.kid);
  TT_EQ_STR(st.next, x->kid);
  TT_EQ_INT(st.n_retired, 1);
  TT_EQ_STR(st.retired[0].kid, old.kid);
  TT_EQ_INT(st.retired[0].until, 5600);
  ts_keyring_free(kr);
  TT_EQ_INT(count_entries(), 4);
  sodium_memzero(&old, sizeof(old));
  sodium_memzero(&nxt, sizeof(nxt));
  teardown();
}

/* A retired key lives until its until (inclusive), then open drops it and deletes its file. */
static void retired_key_expires(void) {
  setup();
  ts_keyring *kr = open_ok(1, 1000);
  char old[TS_KID_LEN + 1];
  memcpy(old, ts_keyring_active(kr)->kid, sizeof(old));
  TT_EQ_INT(ts_keyring_rotate(kr, 2000, 3600, g_err, sizeof(g_err)), 0);
  ts_keyring_free(kr);
  kr = open_ok(0, 5601); /* read-only: hidden, file kept */
  TT_ASSERT(ts_keyring_find(kr, old) == NULL && kr->n == 2);
  ts_keyring_free(kr);
  TT_ASSERT(exists(jwk_name(old)));
  kr = open_ok(1, 5600);
  TT_ASSERT(ts_keyring_find(kr, old) != NULL && kr->n == 3);
  ts_keyring_free(kr);
  kr = open_ok(1, 5601);
  TT_ASSERT(ts_keyring_find(kr, old) == NULL && kr->n == 2);
  ts_keyring_free(kr);
  TT_ASSERT(!exists(jwk_name(old)));
  ts_keyring_state st;
  int found;
  TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(st.n_retired, 0);
  /* rotate drops expired retired keys too */
  kr = open_ok(1, 6000);
  memcpy(old, ts_keyring_active(kr)->kid, sizeof(old));
  TT_EQ_INT(ts_keyring_rotate(kr, 6000, 100, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(ts_keyring_rotate(kr, 6101, 100, g_err, sizeof(g_err)), 0);
  TT_ASSERT(ts_keyring_find(kr, old) == NULL && kr->n == 3);
  TT_ASSERT(!exists(jwk_name(old)));
  TT_EQ_INT(count_entries(), 4);
  ts_keyring_free(kr);
  teardown();
}

/* keys.json cannot be replaced (a directory sits in its place): rotate fails, nothing
 * changes, the new key file is removed again. */
static void rotate_failure_changes_nothing(void) {
  setup();
  ts_keyring *kr = open_ok(1, 1000);
  char a[TS_KID_LEN + 1], x[TS_KID_LEN + 1];
  memcpy(a, ts_keyring_active(kr)->kid, sizeof(a));
  memcpy(x, ts_keyring_next(kr)->kid, sizeof(x));
  TT_EQ_INT(unlink(path_of(TS_KEYRING_STATE_FILE)), 0);
  TT_EQ_INT(mkdir(path_of(TS_KEYRING_STATE_FILE), 0700), 0);
  write_file(TS_KEYRING_STATE_FILE "/block", "x", 0600);
  TT_EQ_INT(ts_keyring_rotate(kr, 2000, 3600, g_err, sizeof(g_err)), TS_EIO);
  TT_ASSERT(strstr(g_err, TS_KEYRING_STATE_FILE) != NULL);
  TT_EQ_INT(kr->n, 2);
  TT_EQ_STR(ts_keyring_active(kr)->kid, a);
  TT_EQ_STR(ts_keyring_next(kr)->kid, x);
  TT_EQ_INT(count_entries(), 3); /* two keys and the blocking directory */
  ts_keyring_free(kr);
  teardown();
}

/* A read-only directory with keys.json (a Secret carrying the state): roles as named. */
static void readonly_dir_with_state(void) {
  setup();
  ts_key k1, k2, k3;
  TT_EQ_INT(ts_keyring_keygen(g_dir, &k1, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(ts_keyring_keygen(g_dir, &k2, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(ts_keyring_keygen(g_dir, &k3, g_err, sizeof(g_err)), 0);
  set_mtime(k3.file, 9000); /* newest, but keys.json decides */
  ts_keyring_state st;
  memset(&st, 0, sizeof(st));
  memcpy(st.active, k1.kid, sizeof(st.active));
  memcpy(st.next, k2.kid, sizeof(st.next));
  st.n_retired = 1;
  memcpy(st.retired[0].kid, k3.kid, sizeof(k3.kid));
  st.retired[0].until = 500;
  TT_EQ_INT(ts_keyring_state_save(g_dir, &st, g_err, sizeof(g_err)), 0);
  ts_keyring *kr = open_ok(0, 100);
  TT_EQ_STR(ts_keyring_active(kr)->kid, k1.kid);
  TT_EQ_STR(ts_keyring_next(kr)->kid, k2.kid);
  TT_ASSERT(ts_keyring_find(kr, k3.kid)->role == TS_KEY_RETIRED);
  TT_ASSERT(!kr->managed);
  TT_EQ_INT(ts_keyring_rotate(kr, 100, 60, g_err, sizeof(g_err)), TS_EUNAVAILABLE);
  ts_keyring_free(kr);
  /* keys.json naming a key without a file, or a public-only key to sign: refused */
  memcpy(st.active, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", TS_KID_LEN + 1);
  TT_EQ_INT(ts_keyring_state_save(g_dir, &st, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  TT_ASSERT(strstr(g_err, TS_KEYRING_STATE_FILE) != NULL);
  write_file("pub.jwk", A1_PUB, 0600);
  memcpy(st.active, A3_KID, TS_KID_LEN + 1);
  TT_EQ_INT(ts_keyring_state_save(g_dir, &st, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  memcpy(st.active, k2.kid, TS_KID_LEN + 1); /* the same kid twice */
  TT_EQ_INT(ts_keyring_state_save(g_dir, &st, g_err, sizeof(g_err)), 0);
  TT_EQ_INT(open_fails(0), TS_ECONFIG);
  teardown();
}

/* A writable directory whose keys.json lost its next key gets a new one. */
static void managed_dir_regains_next(void) {
  setup();
  ts_keyring *kr = open_ok(1, 1000);
  char x[TS_KID_LEN + 1];
  memcpy(x, ts_keyring_next(kr)->kid, sizeof(x));
  ts_keyring_free(kr);
  TT_EQ_INT(unlink(path_of(jwk_name(x))), 0);
  kr = open_ok(1, 1000);
  TT_EQ_INT(kr->n, 2);
  TT_ASSERT(ts_keyring_next(kr) && strcmp(ts_keyring_next(kr)->kid, x) != 0);
  ts_keyring_state st;
  int found;
  TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), 0);
  TT_EQ_STR(st.next, ts_keyring_next(kr)->kid);
  ts_keyring_free(kr);
  teardown();
}

static void state_file_rejects(void) {
  setup();
  static const char *const bad[] = {
      "", "[]", "{\"active\":1}", "{\"active\":\"short\"}",
      "{\"next\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/\"}",
      "{\"retired\":{}}", "{\"retired\":[{\"kid\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}]}",
      "{\"retired\":[{\"kid\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"until\":\"1\"}]}",
      "{\"active\":null,\"active\":null}",
  };
  ts_keyring_state st;
  int found;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    write_file(TS_KEYRING_STATE_FILE, bad[i], 0600);
    TT_ASSERT_MSG(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)) == TS_ECONFIG,
                  "accepted %s", bad[i]);
    TT_ASSERT(!found && strstr(g_err, TS_KEYRING_STATE_FILE) != NULL);
  }
  write_file(TS_KEYRING_STATE_FILE, "{}", 0600);
  TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), 0);
  TT_ASSERT(found && st.active[0] == '\0' && st.n_retired == 0);
  TT_EQ_INT(unlink(path_of(TS_KEYRING_STATE_FILE)), 0);
  TT_EQ_INT(ts_keyring_state_load(g_dir, &st, &found, g_err, sizeof(g_err)), 0);
  TT_ASSERT(!found);
  teardown();
}

static const tt_case cases[] = {
    TT_CASE(rfc8037_a3_thumbprint),
    TT_CASE(jwk_export_roundtrip),
    TT_CASE(jwk_import_rejects),
    TT_CASE(a1_key_in_dir),
    TT_CASE(too_open_file_refused),
    TT_CASE(foreign_owner_refused),
    TT_CASE(writable_dir_refused),
    TT_CASE(unusable_file_named),
    TT_CASE(odd_entries_skipped),
    TT_CASE(no_private_key_refused),
    TT_CASE(newest_private_key_is_active),
    TT_CASE(empty_dir_generates_two),
    TT_CASE(rotate_moves_roles),
    TT_CASE(retired_key_expires),
    TT_CASE(rotate_failure_changes_nothing),
    TT_CASE(readonly_dir_with_state),
    TT_CASE(managed_dir_regains_next),
    TT_CASE(state_file_rejects),
    TT_CASE(state_file_trust),
};

TT_MAIN(cases)
