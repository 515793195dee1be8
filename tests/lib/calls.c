/* tests/lib/calls.c: see calls.h. */
#include "calls.h"

#include "tt.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static tessera_error last_err;

tessera_client *tc_client(const td_daemon *d) {
  tessera_client *c = NULL;
  int rc = tessera_connect(d->socket, &c);
  TT_ASSERT_MSG(rc == 0, "connect %s: %s", d->socket, tessera_strerror(rc));
  return c;
}

json_t *tc_call_ok(tessera_client *c, const char *method, json_t *params) {
  json_t *result = NULL;
  tessera_error err = {{0}, {0}};
  int rc = tessera_call(c, method, params, TC_TIMEOUT_MS, &result, &err);
  json_decref(params);
  TT_ASSERT_MSG(rc == 0, "%s: %s (%s: %s)", method, tessera_strerror(rc), err.code, err.message);
  return result;
}

const char *tc_call_code(tessera_client *c, const char *method, json_t *params, json_t **result) {
  json_t *r = NULL;
  memset(&last_err, 0, sizeof(last_err));
  int rc = tessera_call(c, method, params, TC_TIMEOUT_MS, &r, &last_err);
  json_decref(params);
  TT_ASSERT_MSG(rc == 0 || rc == TESSERA_EREMOTE, "%s: %s", method, tessera_strerror(rc));
  if (rc == 0) memset(&last_err, 0, sizeof(last_err));
  if (result) *result = r;
  else json_decref(r);
  return last_err.code;
}

const char *tc_last_message(void) { return last_err.message; }

void tc_expect_error(tessera_client *c, const char *method, json_t *params, const char *code,
                     const char *message_has) {
  char *shown = json_dumps(params, JSON_COMPACT);
  const char *got = tc_call_code(c, method, params, NULL);
  TT_ASSERT_MSG(strcmp(got, code) == 0, "%s %.300s: got '%s' (%s), expected '%s'", method,
                shown ? shown : "null", got, last_err.message, code);
  if (message_has)
    TT_ASSERT_MSG(strstr(last_err.message, message_has) != NULL,
                  "%s %.300s: message '%s' does not name '%s'", method, shown ? shown : "null",
                  last_err.message, message_has);
  free(shown);
}

const char *tc_str(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  TT_ASSERT_MSG(json_is_string(v), "no string member %s", key);
  return json_string_value(v);
}

long long tc_int(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  TT_ASSERT_MSG(json_is_integer(v), "no integer member %s", key);
  return (long long)json_integer_value(v);
}

long long tc_stat(tessera_client *c, const char *name) {
  json_t *s = tc_call_ok(c, "sys.stats", NULL);
  long long v = tc_int(s, name);
  json_decref(s);
  return v;
}

long long tc_wait_stat(tessera_client *c, const char *name, bool rising, long long want,
                       int timeout_ms) {
  struct timespec nap = {0, 20 * 1000000};
  long long t0 = tc_mono_ms();
  for (;;) {
    long long v = tc_stat(c, name);
    if (rising ? v >= want : v <= want) return v;
    if (tc_mono_ms() - t0 > timeout_ms) return v;
    nanosleep(&nap, NULL);
  }
}

void tc_ping(const td_daemon *d) {
  tessera_client *c = tc_client(d);
  json_decref(tc_call_ok(c, "sys.ping", NULL));
  tessera_close(c);
}

void tc_stop_ok(td_daemon *d) {
  int st = td_stop(d);
  TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tesserad exit status %d", st);
}

void tc_stop_clean(td_daemon *d) {
  tc_stop_ok(d);
  td_cleanup(d);
}

const struct passwd *tc_open_to_nobody(const td_daemon *d) {
  struct passwd *nobody = getpwnam("nobody");
  TT_ASSERT(nobody != NULL && geteuid() == 0); /* the suite runs as root (CI does) */
  char dir[256];
  snprintf(dir, sizeof(dir), "%s/run", d->dir);
  TT_ASSERT(chmod(d->dir, 0755) == 0 && chmod(dir, 0755) == 0 && chmod(d->socket, 0666) == 0);
  return nobody;
}

const struct passwd *tc_start_for_nobody(td_daemon *d) {
  struct passwd *pw = getpwnam("nobody");
  TT_ASSERT(pw != NULL);
  char allow[64];
  snprintf(allow, sizeof(allow), "0,%u", (unsigned)pw->pw_uid);
  const char *args[] = {"--allow-uid", allow, NULL};
  td_start(d, args);
  return tc_open_to_nobody(d);
}

const char *tc_call_as_nobody(const td_daemon *d, const char *first, const char *method) {
  static char code[64];
  const struct passwd *nobody = getpwnam("nobody");
  TT_ASSERT(nobody != NULL);
  int pfd[2];
  TT_ASSERT(pipe(pfd) == 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  TT_ASSERT(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    if (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0) _exit(3);
    tessera_client *nc = NULL;
    if (tessera_connect(d->socket, &nc) != 0) _exit(4);
    json_t *res = NULL;
    tessera_error err = {{0}, {0}};
    if (tessera_call(nc, first, NULL, 10000, &res, &err) != 0) _exit(5);
    json_decref(res);
    int rc = tessera_call(nc, method, NULL, 10000, &res, &err);
    if (rc != 0 && rc != TESSERA_EREMOTE) _exit(6);
    json_decref(res);
    const char *got = rc == 0 ? "" : err.code;
    if (write(pfd[1], got, strlen(got)) < 0) _exit(7);
    if (tessera_call(nc, "sys.ping", NULL, 10000, &res, &err) != 0) _exit(8);
    json_decref(res);
    tessera_close(nc);
    _exit(0);
  }
  close(pfd[1]);
  ssize_t n = read(pfd[0], code, sizeof(code) - 1);
  code[n > 0 ? n : 0] = 0;
  close(pfd[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                "nobody: child status %d (4: no connection, 5: %s refused, 6: %s failed, 8: the "
                "connection was dropped after it)", st, first, method);
  return code;
}

int tc_scaled(int n) {
  int div = getenv("TT_VALGRIND") ? 200 : getenv("TT_SANITIZED") ? 25 : 1;
  return n / div > 0 ? n / div : 1;
}

bool tc_is_b64url(const char *s, size_t n) {
  if (strlen(s) != n) return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
      return false;
  return true;
}

long long tc_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *tc_cli_json(const td_daemon *d, const char *const *args) {
  static char out[65536], err[4096];
  int st = td_cli(d, NULL, out, sizeof(out), err, sizeof(err), args);
  TT_ASSERT_MSG(st == 0, "tessera %s %s: exit %d: %s", args[0], args[1] ? args[1] : "", st, err);
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  TT_ASSERT_MSG(j != NULL, "tessera %s %s printed no JSON: %s", args[0], args[1] ? args[1] : "",
                out);
  return j;
}
