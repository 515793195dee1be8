/* tests/integration/test_security.c: promises of SECURITY.md a user can check from outside:
 * admin methods answer only an --admin-uid (the door), a private key file readable by others
 * refuses the start, and no secret (sid, token, cookie, key) appears in any log line, at debug
 * level, across every method that handles one.
 *
 * Runs as root (setuid to nobody for the door), like the rest of the integration suite. */
#include "calls.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include <tessera/tessera.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the door --------------------------------------------------------------------------- */

static void admin_methods_need_an_admin_uid(void) {
  td_daemon d;
  const struct passwd *nobody = tc_start_for_nobody(&d);
  TT_EQ_STR(tc_call_as_nobody(&d, "sys.ping", "keys.rotate"), "forbidden");
  tessera_client *c = tc_client(&d);
  TT_EQ_INT(tc_stat(c, "error.forbidden"), 1);
  TT_EQ_INT(tc_stat(c, "method.keys.rotate"), 1);
  json_decref(tc_call_ok(c, "keys.rotate", NULL)); /* root is the default admin */
  tessera_close(c);
  tc_stop_ok(&d);
  char *log = td_read_log(&d);
  char want[96];
  snprintf(want, sizeof(want), "\"msg\":\"admin method refused\",\"method\":\"keys.rotate\",\"uid\":%u",
           (unsigned)nobody->pw_uid);
  TT_ASSERT_MSG(log && strstr(log, want), "no log line for the refusal");
  free(log);
  td_cleanup(&d);
}

/* The `d` members of every .jwk file in dir, base64url, into ds (at most max). */
static int private_keys(const char *dir, char ds[][128], int max, char names[][128]) {
  DIR *dh = opendir(dir);
  TT_ASSERT(dh != NULL);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(dh)) && n < max) {
    size_t len = strlen(de->d_name);
    if (len < 5 || strcmp(de->d_name + len - 4, ".jwk") != 0) continue;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    json_t *j = json_load_file(path, 0, NULL);
    TT_ASSERT_MSG(j != NULL, "%s is not JSON", path);
    const char *dv = json_string_value(json_object_get(j, "d"));
    if (dv) {
      snprintf(ds[n], 128, "%s", dv);
      if (names) snprintf(names[n], 128, "%s", de->d_name);
      n++;
    }
    json_decref(j);
  }
  closedir(dh);
  return n;
}

static void open_private_key_refuses_start(void) {
  td_daemon d;
  td_start(&d, NULL); /* makes its own managed keys */
  tessera_client *c = tc_client(&d);
  json_decref(tc_call_ok(c, "keys.rotate", NULL)); /* a retired key too */
  tessera_close(c);
  tc_stop_ok(&d);
  char ds[8][128], names[8][128];
  int n = private_keys(d.keys, ds, 8, names);
  TT_ASSERT_MSG(n >= 2, "%d private keys in the managed dir", n);
  static const mode_t modes[] = {0640, 0604};
  for (int m = 0; m < 2; m++) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%.127s", d.keys, names[m % n]);
    TT_ASSERT(chmod(path, modes[m]) == 0);
    TT_ASSERT(truncate(d.log, 0) == 0);
    int st = td_launch_refused(&d);
    TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) != 0, "mode %04o: exit status %d",
                  (unsigned)modes[m], st);
    char *log = td_read_log(&d);
    TT_ASSERT_MSG(log && strstr(log, names[m % n]), "mode %04o: the log does not name %s:\n%s",
                  (unsigned)modes[m], names[m % n], log ? log : "");
    for (int i = 0; i < n; i++)
      TT_ASSERT_MSG(strstr(log, ds[i]) == NULL, "the log holds the private key of %s", names[i]);
    free(log);
    TT_ASSERT(chmod(path, 0600) == 0);
  }
  td_launch(&d, NULL); /* 0600 again: it starts */
  tc_ping(&d);
  tc_stop_ok(&d);
  td_cleanup(&d);
}

/* ---- no secret in any log line ---------------------------------------------------------- */

typedef struct secrets {
  char *s[512];
  int n;
} secrets;

static void keep(secrets *k, const char *s) {
  TT_ASSERT(s != NULL && k->n < 512);
  k->s[k->n++] = strdup(s);
}

/* A token and its signature segment. */
static void keep_token(secrets *k, const char *t) {
  keep(k, t);
  const char *sig = strrchr(t, '.');
  TT_ASSERT(sig && strlen(sig + 1) >= 80);
  keep(k, sig + 1);
}

static const char *kept_str(secrets *k, const json_t *o, const char *key) {
  keep(k, tc_str(o, key));
  return k->s[k->n - 1];
}

/* A copy of t with its signature's first character changed (a valid-looking forgery). */
static char *forged(const char *t) {
  char *f = strdup(t);
  char *sig = strrchr(f, '.') + 1;
  sig[0] = sig[0] == 'A' ? 'B' : 'A';
  return f;
}

static void no_secret_in_any_log_line(void) {
  static const char *const args[] = {"--log-level", "debug", "--bind-policy", "enforce", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  secrets k = {{0}, 0};
  json_t *r;

  /* sessions */
  r = tc_call_ok(c, "session.create", json_pack("{s:s, s:{s:s, s:s}}", "sub", "sam", "client", "ip",
                                                "10.0.0.1", "ua", "A"));
  const char *sid1 = kept_str(&k, r, "sid");
  keep(&k, tc_str(r, "cookie"));
  json_decref(r);
  /* The same user agent: under --bind-policy enforce a missing one revokes the session. */
  json_decref(tc_call_ok(c, "session.validate",
                         json_pack("{s:s, s:{s:s}}", "sid", sid1, "client", "ua", "A")));
  r = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", sid1));
  const char *sid2 = kept_str(&k, r, "sid");
  json_decref(r);
  tc_expect_error(c, "session.validate", json_pack("{s:s}", "sid", sid1), "unauthenticated", NULL);
  tc_expect_error(c, "session.rotate", json_pack("{s:s}", "sid", sid1), "unauthenticated", NULL);
  json_decref(tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "sam")));
  json_decref(tc_call_ok(c, "session.revoke", json_pack("{s:s}", "sid", sid2)));
  r = tc_call_ok(c, "session.create", json_pack("{s:s, s:{s:s}}", "sub", "sam", "client", "ua", "A"));
  const char *sid3 = kept_str(&k, r, "sid");
  json_decref(r);
  /* bind-policy enforce: a changed user agent revokes it (a log line at info) */
  tc_expect_error(c, "session.validate", json_pack("{s:s, s:{s:s}}", "sid", sid3, "client", "ua", "B"),
                  "unauthenticated", NULL);
  r = tc_call_ok(c, "session.create", json_pack("{s:s}", "sub", "sam"));
  kept_str(&k, r, "sid");
  json_decref(r);
  json_decref(tc_call_ok(c, "session.revoke_all", json_pack("{s:s}", "sub", "sam")));
  /* bad sids: well-formed unknown, malformed, empty */
  unsigned char raw[32];
  char bad_sid[64];
  for (int i = 0; i < 32; i++) raw[i] = (unsigned char)(i * 37 + 11);
  sodium_bin2base64(bad_sid, sizeof(bad_sid), raw, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  keep(&k, bad_sid);
  tc_expect_error(c, "session.validate", json_pack("{s:s}", "sid", bad_sid), "unauthenticated", NULL);
  tc_expect_error(c, "session.revoke", json_pack("{s:s}", "sid", bad_sid), "", NULL);
  const char *malformed = "NotASidButSecretLooking_0123456789abcdefXYZ!!";
  keep(&k, malformed);
  tc_expect_error(c, "session.validate", json_pack("{s:s}", "sid", malformed), "unauthenticated", NULL);
  tc_expect_error(c, "session.rotate", json_pack("{s:s}", "sid", malformed), "unauthenticated", NULL);

  /* tokens */
  r = tc_call_ok(c, "token.issue", json_pack("{s:s, s:s}", "sub", "tia", "scope", "read"));
  const char *at = kept_str(&k, r, "token");
  keep_token(&k, at);
  json_decref(r);
  json_decref(tc_call_ok(c, "token.verify", json_pack("{s:s, s:b}", "token", at, "check_revoked", 1)));
  char *f = forged(at);
  keep(&k, f);
  tc_expect_error(c, "token.verify", json_pack("{s:s}", "token", f), "unauthenticated", NULL);
  free(f);
  const char *junk = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ0aWEifQ.c2VjcmV0LWxvb2tpbmctZ2FyYmFnZQ";
  keep(&k, junk);
  tc_expect_error(c, "token.verify", json_pack("{s:s}", "token", junk), "unauthenticated", NULL);
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", junk))); /* {revoked: 0} */
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", at)));
  tc_expect_error(c, "token.verify", json_pack("{s:s, s:b}", "token", at, "check_revoked", 1),
                  "revoked", NULL);
  /* purpose tokens: consume, exchange, and each a second time */
  r = tc_call_ok(c, "token.issue", json_pack("{s:s, s:s}", "sub", "tia", "purpose", "verify-email"));
  const char *pt = kept_str(&k, r, "token");
  keep_token(&k, pt);
  json_decref(r);
  json_decref(tc_call_ok(c, "token.consume", json_pack("{s:s, s:s}", "token", pt, "purpose",
                                                       "verify-email")));
  tc_expect_error(c, "token.consume", json_pack("{s:s, s:s}", "token", pt, "purpose", "verify-email"),
                  "revoked", NULL);
  r = tc_call_ok(c, "token.issue", json_pack("{s:s, s:s}", "sub", "tia", "purpose", "login-link"));
  const char *pt2 = kept_str(&k, r, "token");
  keep_token(&k, pt2);
  json_decref(r);
  r = tc_call_ok(c, "session.exchange", json_pack("{s:s, s:s}", "token", pt2, "purpose",
                                                  "login-link"));
  kept_str(&k, r, "sid");
  json_decref(r);
  tc_expect_error(c, "session.exchange", json_pack("{s:s, s:s}", "token", pt2, "purpose", "login-link"),
                  "revoked", NULL);
  /* refresh: pair, two rotations, a replay two generations old (reused: a warn log line) */
  r = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "tia"));
  keep_token(&k, tc_str(r, "access_token"));
  const char *rt0 = kept_str(&k, r, "refresh_token");
  keep_token(&k, rt0);
  json_decref(r);
  r = tc_call_ok(c, "token.refresh", json_pack("{s:s}", "refresh_token", rt0));
  keep_token(&k, tc_str(r, "access_token"));
  const char *rt1 = kept_str(&k, r, "refresh_token");
  keep_token(&k, rt1);
  json_decref(r);
  r = tc_call_ok(c, "token.refresh", json_pack("{s:s}", "refresh_token", rt1));
  keep_token(&k, tc_str(r, "access_token"));
  keep_token(&k, tc_str(r, "refresh_token"));
  json_decref(r);
  tc_expect_error(c, "token.refresh", json_pack("{s:s}", "refresh_token", rt0), "reused", NULL);
  f = forged(rt1);
  keep(&k, f);
  tc_expect_error(c, "token.refresh", json_pack("{s:s}", "refresh_token", f), "unauthenticated", NULL);
  free(f);
  r = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "tia"));
  keep_token(&k, tc_str(r, "access_token"));
  const char *rt2 = kept_str(&k, r, "refresh_token");
  keep_token(&k, rt2);
  json_decref(r);
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", rt2)));
  tc_expect_error(c, "token.refresh", json_pack("{s:s}", "refresh_token", rt2), "revoked", NULL);
  /* users and keys */
  r = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "uma"));
  keep_token(&k, tc_str(r, "refresh_token"));
  json_decref(r);
  r = tc_call_ok(c, "session.create", json_pack("{s:s}", "sub", "uma"));
  kept_str(&k, r, "sid");
  json_decref(r);
  json_decref(tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "uma")));
  json_decref(tc_call_ok(c, "keys.rotate", NULL));
  json_decref(tc_call_ok(c, "keys.jwks", NULL));
  r = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "tia"));
  keep_token(&k, tc_str(r, "token"));
  json_decref(r);
  tessera_close(c);
  tc_stop_ok(&d);

  char ds[16][128];
  int nk = private_keys(d.keys, ds, 16, NULL);
  TT_ASSERT_MSG(nk >= 3, "%d private keys after a rotation", nk);
  for (int i = 0; i < nk; i++) keep(&k, ds[i]);
  char *log = td_read_log(&d);
  TT_ASSERT(log != NULL);
  size_t lines = 0;
  for (const char *q = log; (q = strchr(q, '\n')); q++) lines++;
  TT_ASSERT_MSG(strstr(log, "\"level\":\"debug\"") && strstr(log, "refresh token reused") &&
                    strstr(log, "user revoked everywhere") && strstr(log, "keys rotated"),
                "the log misses lines the calls should have made");
  fprintf(stderr, "%d secrets searched in %zu log lines\n", k.n, lines);
  for (int i = 0; i < k.n; i++) {
    const char *hit = strstr(log, k.s[i]);
    if (hit) {
      const char *bol = hit;
      while (bol > log && bol[-1] != '\n') bol--;
      const char *eol = strchr(hit, '\n');
      tt_fail(__FILE__, __LINE__, "secret #%d in the log: %.*s", i,
              (int)(eol ? eol - bol : (long)strlen(bol)), bol);
    }
    free(k.s[i]);
  }
  free(log);
  td_cleanup(&d);
}

/* ---- no secret left in freed memory ------------------------------------------------------ */

/* Tells the shim (tests/lib/freed_secrets.c) which secret to look for: a length byte, then it. */
static void set_secret(const char *file, const char *secret) {
  unsigned char buf[256] = {0};
  size_t n = strlen(secret);
  TT_ASSERT(n < sizeof(buf));
  buf[0] = (unsigned char)n;
  memcpy(buf + 1, secret, n);
  int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  TT_ASSERT(fd >= 0);
  TT_EQ_INT(pwrite(fd, buf, sizeof(buf), 0), (int)sizeof(buf));
  close(fd);
}

/* Buffers that held a sid or a token are wiped before they are freed (SECURITY.md): with every
 * free of the daemon searched for the secret in use (an LD_PRELOAD shim), requests that carry
 * it over many connections, and the daemon's shutdown, leave no freed block holding it. */
static void freed_memory_holds_no_secret(void) {
  if (getenv("TT_SANITIZED") || getenv("TT_VALGRIND"))
    tt_skip("the shim needs glibc's allocator, which sanitizers and valgrind replace");
  td_daemon d;
  td_init(&d);
  char file[256], report[256];
  snprintf(file, sizeof(file), "%s/secret", d.dir);
  snprintf(report, sizeof(report), "%s/freed-secrets", d.dir);
  set_secret(file, ""); /* the shim maps the file when the daemon starts: none yet */
  TT_ASSERT(setenv("LD_PRELOAD", TT_FREED_SECRETS, 1) == 0); /* for the daemon only */
  TT_ASSERT(setenv("TT_SECRET_FILE", file, 1) == 0);
  TT_ASSERT(setenv("TT_SECRET_REPORT", report, 1) == 0);
  td_launch(&d, NULL);
  TT_ASSERT(unsetenv("LD_PRELOAD") == 0);
  tessera_client *c = tc_client(&d);
  json_t *s = tc_call_ok(c, "session.create", json_pack("{s:s}", "sub", "wendy"));
  const char *sid = tc_str(s, "sid");
  set_secret(file, sid);
  for (int i = 0; i < 50; i++) {
    tessera_client *x = tc_client(&d); /* a connection's buffers are freed when it closes */
    tc_expect_valid(x, sid);
    tessera_close(x);
  }
  json_t *r = tc_call_ok(c, "session.rotate", json_pack("{s:s}", "sid", sid));
  const char *sid2 = tc_str(r, "sid");
  set_secret(file, sid2);
  tc_expect_valid(c, sid2);
  TT_EQ_INT(tc_revoke_n(c, "sid", sid2), 1);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "wendy"));
  const char *sig = strrchr(tc_str(t, "token"), '.') + 1;
  set_secret(file, sig);
  for (int i = 0; i < 50; i++) {
    tessera_client *x = tc_client(&d);
    TT_EQ_STR(tc_verify_code(x, tc_str(t, "token"), NULL, true), "");
    tessera_close(x);
  }
  TT_EQ_INT(tc_revoke_token(c, tc_str(t, "token")), 1);
  json_decref(t), json_decref(r), json_decref(s);
  tessera_close(c);
  tc_stop_ok(&d); /* and what the daemon frees at exit */
  size_t len = 0;
  char *found = access(report, F_OK) == 0 ? td_read_file(report, &len) : NULL;
  TT_ASSERT_MSG(len == 0, "freed memory held a secret:\n%s", found ? found : "");
  free(found);
  td_cleanup(&d);
}

static const tt_case cases[] = {
    TT_CASE(admin_methods_need_an_admin_uid),
    TT_CASE(open_private_key_refuses_start),
    TT_CASE(no_secret_in_any_log_line),
    TT_CASE(freed_memory_holds_no_secret),
};
TT_MAIN(cases)
