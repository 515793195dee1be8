/* tests/lib/calls.c: see calls.h. */
#include "calls.h"

#include "tt.h"
#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
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

/* ---- tokens ---------------------------------------------------------------------------- */

/* token.issue with params (stolen); returns the token (malloc'd); the whole reply in *reply
 * when reply is not NULL. */
char *tc_issue(tessera_client *c, json_t *params, json_t **reply) {
  json_t *r = tc_call_ok(c, "token.issue", params);
  char *tok = strdup(tc_str(r, "token"));
  TT_ASSERT(tok != NULL);
  if (reply) *reply = r;
  else json_decref(r);
  return tok;
}

char *tc_issue_sub(tessera_client *c, const char *sub) {
  return tc_issue(c, json_pack("{s:s}", "sub", sub), NULL);
}

char *tc_issue_purpose(tessera_client *c, const char *sub, const char *purpose) {
  return tc_issue(c, json_pack("{s:s, s:s}", "sub", sub, "purpose", purpose), NULL);
}

/* token.verify params for tok with an optional aud and purpose. */
json_t *tc_verify_params(const char *tok, const char *aud, const char *purpose) {
  json_t *p = json_pack("{s:s}", "token", tok);
  if (aud) json_object_set_new(p, "aud", json_string(aud));
  if (purpose) json_object_set_new(p, "purpose", json_string(purpose));
  return p;
}

/* Verifies tok and expects code ("" for success); what names the case in a failure. Returns
 * the result on success (caller frees), else NULL. */
json_t *tc_expect_verify(tessera_client *c, const char *what, const char *tok, const char *aud,
                         const char *purpose, const char *code) {
  json_t *r = NULL;
  const char *got = tc_call_code(c, "token.verify", tc_verify_params(tok, aud, purpose), &r);
  TT_ASSERT_MSG(strcmp(got, code) == 0, "%s: token.verify answered '%s' (%s), expected '%s'",
                what, got[0] ? got : "success", tc_last_message(), code[0] ? code : "success");
  return r;
}

json_t *tc_verify_ok(tessera_client *c, const char *what, const char *tok, const char *aud,
                     const char *purpose) {
  json_t *r = tc_expect_verify(c, what, tok, aud, purpose, "");
  TT_ASSERT(json_is_object(json_object_get(r, "claims")));
  return r;
}

/* The kid a valid access token verifies with. */
char *tc_kid_of(tessera_client *c, const char *tok) {
  json_t *r = tc_verify_ok(c, "kid_of", tok, NULL, NULL);
  char *kid = strdup(tc_str(r, "kid"));
  json_decref(r);
  return kid;
}

json_t *tc_jwks(tessera_client *c) {
  json_t *r = tc_call_ok(c, "keys.jwks", NULL);
  TT_ASSERT(json_is_array(json_object_get(r, "keys")));
  return r;
}

size_t tc_jwks_count(const json_t *set) {
  return json_array_size(json_object_get(set, "keys"));
}

/* ---- sessions -------------------------------------------------------------------------- */

json_t *tc_create(tessera_client *c, json_t *params) {
  return tc_call_ok(c, "session.create", params);
}

json_t *tc_create_sub(tessera_client *c, const char *sub) {
  return tc_create(c, json_pack("{s:s}", "sub", sub));
}

/* Validates sid (client may be NULL, stolen); returns the error code, "" on success, and the
 * result in *out when out is not NULL. */
const char *tc_validate(tessera_client *c, const char *sid, json_t *client, json_t **out) {
  json_t *p = json_pack("{s:s}", "sid", sid);
  if (client) json_object_set_new(p, "client", client);
  return tc_call_code(c, "session.validate", p, out);
}

void tc_expect_valid(tessera_client *c, const char *sid) {
  const char *code = tc_validate(c, sid, NULL, NULL);
  TT_ASSERT_MSG(code[0] == 0, "validate %s: %s, expected success", sid, code);
}

void tc_expect_unauthenticated(tessera_client *c, const char *sid) {
  TT_EQ_STR(tc_validate(c, sid, NULL, NULL), "unauthenticated");
}

long long tc_revoke_n(tessera_client *c, const char *key, const char *value) {
  json_t *r = tc_call_ok(c, "session.revoke", json_pack("{s:s}", key, value));
  long long n = tc_int(r, "revoked");
  json_decref(r);
  return n;
}

int64_t tc_wall_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Returns once the wall clock reads at least `second` (the thing under test is the clock). The
 * reference is time(), the clock the daemon reads: on Linux it is the coarse clock, which
 * turns a few milliseconds after CLOCK_REALTIME does. */
void tc_wait_wall_until(int64_t second) {
  while ((int64_t)time(NULL) < second) {
    int64_t left = second * 1000000000 - tc_wall_ns();
    TT_ASSERT_MSG(left < 30 * 1000000000LL, "refusing to wait %lld s",
                  (long long)(left / 1000000000));
    if (left < 1000000) left = 1000000; /* past it on the fine clock: the coarse one follows */
    struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
    nanosleep(&ts, NULL);
  }
}

bool tc_before_second(int64_t second) { return tc_wall_ns() < second * 1000000000; }

/* Waits for the next wall-clock second to begin and returns it, so that a few requests fit
 * well inside one second. */
int64_t tc_start_of_next_second(void) {
  int64_t s = (int64_t)time(NULL) + 1;
  tc_wait_wall_until(s);
  return s;
}

/* Pipelined creates: n sessions of params (borrowed) on c; each result is handed to each(). */
void tc_create_many(tessera_client *c, const json_t *params, int n,
                    void (*each)(json_t *r, int i, void *arg), void *arg) {
  enum { BATCH = 1000 };
  uint32_t ids[BATCH];
  for (int base = 0; base < n; base += BATCH) {
    int k = n - base < BATCH ? n - base : BATCH;
    for (int i = 0; i < k; i++) TT_EQ_INT(tessera_send(c, "session.create", params, &ids[i]), 0);
    for (int i = 0; i < k; i++) {
      json_t *r = NULL;
      tessera_error err = {{0}, {0}};
      int rc = tessera_wait(c, ids[i], 60000, &r, &err);
      TT_ASSERT_MSG(rc == 0, "create %d: %s (%s: %s)", base + i, tessera_strerror(rc), err.code,
                    err.message);
      if (each) each(r, base + i, arg);
      json_decref(r);
    }
  }
}

/* How many sessions session.list shows for sub, walking every page (limit 1000). */
long long tc_count_listed(tessera_client *c, const char *sub) {
  long long n = 0;
  char *after = NULL;
  for (int pages = 0;; pages++) {
    TT_ASSERT(pages < 1000);
    json_t *p = json_pack("{s:s, s:i}", "sub", sub, "limit", 1000);
    if (after) json_object_set_new(p, "after", json_string(after));
    json_t *l = tc_call_ok(c, "session.list", p);
    n += (long long)json_array_size(json_object_get(l, "sessions"));
    free(after);
    json_t *next = json_object_get(l, "next");
    after = next ? strdup(json_string_value(next)) : NULL;
    json_decref(l);
    if (!after) return n;
  }
}

void tc_keep_ids(json_t *r, int i, void *arg) {
  tc_idset *s = arg;
  snprintf(s->sid[i], TC_SID_CHARS + 1, "%s", tc_str(r, "sid"));
  snprintf(s->handle[i], TC_HANDLE_CHARS + 1, "%s", tc_str(r, "handle"));
}

tc_idset tc_idset_new(int n) {
  tc_idset s = {calloc((size_t)n, TC_SID_CHARS + 1), calloc((size_t)n, TC_HANDLE_CHARS + 1)};
  TT_ASSERT(s.sid && s.handle);
  return s;
}

void tc_idset_free(tc_idset *s) {
  free(s->sid);
  free(s->handle);
}

int tc_cmp_str(const void *a, const void *b) { return strcmp(a, b); }

/* ---- refresh families and revocations --------------------------------------------------- */

json_t *tc_pair_for(tessera_client *c, const char *sub) {
  return tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", sub));
}

/* token.refresh: returns the error code ("" on success; then *out holds the pair). */
const char *tc_refresh(tessera_client *c, const char *rt, json_t **out) {
  return tc_call_code(c, "token.refresh", json_pack("{s:s}", "refresh_token", rt), out);
}

json_t *tc_refresh_ok(tessera_client *c, const char *rt) {
  json_t *p = NULL;
  const char *code = tc_refresh(c, rt, &p);
  TT_ASSERT_MSG(code[0] == 0, "token.refresh: %s", code);
  return p;
}

/* token.verify: "" when valid, else the error code. aud may be NULL. */
const char *tc_verify_code(tessera_client *c, const char *token, const char *aud, bool check_revoked) {
  json_t *p = json_pack("{s:s}", "token", token);
  if (aud) json_object_set_new(p, "aud", json_string(aud));
  if (check_revoked) json_object_set_new(p, "check_revoked", json_true());
  return tc_call_code(c, "token.verify", p, NULL);
}

long long tc_revoke_with(tessera_client *c, json_t *params) {
  json_t *r = tc_call_ok(c, "token.revoke", params);
  long long n = tc_int(r, "revoked");
  TT_ASSERT(json_object_size(r) == 1);
  json_decref(r);
  return n;
}

long long tc_revoke_token(tessera_client *c, const char *token) {
  return tc_revoke_with(c, json_pack("{s:s}", "token", token));
}

/* ---- notifications on a raw connection ------------------------------------------------- */

/* ---- tc_raw connections (notifications) ---------------------------------------------------- */

static void pack_json(msgpack_packer *pk, const json_t *j) {
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    msgpack_pack_map(pk, json_object_size(j));
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
      msgpack_pack_str_with_body(pk, k, strlen(k));
      pack_json(pk, v);
    }
    break;
  }
  case JSON_ARRAY:
    msgpack_pack_array(pk, json_array_size(j));
    for (size_t i = 0; i < json_array_size(j); i++) pack_json(pk, json_array_get(j, i));
    break;
  case JSON_STRING:
    msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
    break;
  case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(j)); break;
  case JSON_REAL: msgpack_pack_double(pk, json_real_value(j)); break;
  case JSON_TRUE: msgpack_pack_true(pk); break;
  case JSON_FALSE: msgpack_pack_false(pk); break;
  case JSON_NULL: msgpack_pack_nil(pk); break;
  }
}

static json_t *mp_to_json(const msgpack_object *o) {
  switch (o->type) {
  case MSGPACK_OBJECT_NIL: return json_null();
  case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
  case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)o->via.u64);
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
  case MSGPACK_OBJECT_FLOAT32:
  case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
  case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
  case MSGPACK_OBJECT_ARRAY: {
    json_t *a = json_array();
    for (uint32_t i = 0; i < o->via.array.size; i++)
      json_array_append_new(a, mp_to_json(&o->via.array.ptr[i]));
    return a;
  }
  case MSGPACK_OBJECT_MAP: {
    json_t *m = json_object();
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      const msgpack_object *k = &o->via.map.ptr[i].key;
      TT_ASSERT(k->type == MSGPACK_OBJECT_STR);
      char key[256];
      snprintf(key, sizeof(key), "%.*s", (int)k->via.str.size, k->via.str.ptr);
      json_object_set_new(m, key, mp_to_json(&o->via.map.ptr[i].val));
    }
    return m;
  }
  default: tt_fail(__FILE__, __LINE__, "unexpected msgpack type %d", (int)o->type);
  }
}

void tc_raw_open(tc_raw *r, const td_daemon *d) {
  r->fd = tw_connect(d->socket);
  tw_reader_init(&r->rd, r->fd);
  r->next_id = 1;
}

void tc_raw_close(tc_raw *r) {
  tw_reader_destroy(&r->rd);
  close(r->fd);
}

/* Sends [0, id, method, [params]] (params stolen; NULL: []). Returns the msgid. */
uint32_t tc_raw_send(tc_raw *r, const char *method, json_t *params) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  uint32_t id = r->next_id++;
  msgpack_pack_array(&pk, 4);
  msgpack_pack_uint8(&pk, 0);
  msgpack_pack_uint32(&pk, id);
  msgpack_pack_str_with_body(&pk, method, strlen(method));
  msgpack_pack_array(&pk, params ? 1 : 0);
  if (params) pack_json(&pk, params);
  TT_ASSERT(tw_send(r->fd, sb.data, sb.size));
  msgpack_sbuffer_destroy(&sb);
  json_decref(params);
  return id;
}

/* The next message as JSON ([1, id, err, result] or [2, method, args]); NULL on time out/EOF. */
json_t *tc_raw_next(tc_raw *r, int timeout_ms) {
  const msgpack_object *o = tw_next(&r->rd, timeout_ms);
  return o ? mp_to_json(o) : NULL;
}

/* Subscribes; returns the keys_version of the reply. */
long long tc_raw_subscribe(tc_raw *r) {
  uint32_t id = tc_raw_send(r, "events.subscribe", NULL);
  json_t *m = tc_raw_next(r, 10000);
  TT_ASSERT_MSG(m != NULL, "no reply to events.subscribe");
  TT_EQ_INT(json_integer_value(json_array_get(m, 0)), 1);
  TT_EQ_INT(json_integer_value(json_array_get(m, 1)), id);
  TT_ASSERT(json_is_null(json_array_get(m, 2)));
  json_t *res = json_array_get(m, 3);
  TT_ASSERT(json_is_true(json_object_get(res, "subscribed")));
  long long v = tc_int(res, "keys_version");
  json_decref(m);
  return v;
}

/* The next notification, which must be [2, method, args]; returns args (caller decrefs). */
json_t *tc_expect_note(tc_raw *r, const char *method) {
  json_t *m = tc_raw_next(r, 10000);
  TT_ASSERT_MSG(m != NULL, "no %s notification within 10 s", method);
  char *shown = json_dumps(m, JSON_COMPACT);
  TT_ASSERT_MSG(json_array_size(m) == 3 && json_integer_value(json_array_get(m, 0)) == 2,
                "expected a notification, got %.400s", shown);
  TT_ASSERT_MSG(strcmp(json_string_value(json_array_get(m, 1)), method) == 0,
                "expected a %s notification, got %.400s", method, shown);
  free(shown);
  json_t *args = json_incref(json_array_get(m, 2));
  TT_ASSERT(json_is_array(args) && json_array_size(args) >= 1);
  json_decref(m);
  return args;
}

/* The entry of kind and id in a "revoked" args array, or NULL. */
json_t *tc_entry_of(const json_t *args, const char *kind, const char *id) {
  for (size_t i = 0; i < json_array_size(args); i++) {
    json_t *e = json_array_get(args, i);
    if (strcmp(tc_str(e, "kind"), kind) == 0 && (!id || strcmp(tc_str(e, "id"), id) == 0)) return e;
  }
  return NULL;
}

/* A single-entry "revoked" notification of kind and id; returns its until. */
long long tc_expect_revoked_one(tc_raw *r, const char *kind, const char *id) {
  json_t *args = tc_expect_note(r, "revoked");
  char *shown = json_dumps(args, JSON_COMPACT);
  TT_ASSERT_MSG(json_array_size(args) == 1, "expected one entry, got %.400s", shown);
  json_t *e = json_array_get(args, 0);
  TT_ASSERT_MSG(strcmp(tc_str(e, "kind"), kind) == 0 && strcmp(tc_str(e, "id"), id) == 0,
                "expected {kind: %s, id: %s}, got %.400s", kind, id, shown);
  TT_EQ_INT(json_object_size(e), 4); /* kind, id, until, cursor: `before` only for kind sub */
  TT_ASSERT(strlen(tc_str(e, "cursor")) > 0 && strlen(tc_str(e, "cursor")) <= 48); /* TS_CURSOR_MAX */
  long long until = tc_int(e, "until");
  free(shown);
  json_decref(args);
  return until;
}

/* ---- the in-process verifier ----------------------------------------------------------- */

/* token.issue {sub} plus extra params (stolen, may be NULL); returns the token (free()). */
char *tc_issue_claims(tessera_client *c, const char *sub, json_t *extra) {
  json_t *p = extra ? extra : json_object();
  json_object_set_new(p, "sub", json_string(sub));
  json_t *r = tc_call_ok(c, "token.issue", p);
  char *tok = strdup(json_string_value(json_object_get(r, "token")));
  json_decref(r);
  return tok;
}

tessera_verifier *tc_verifier_new(const tessera_verifier_options *o) {
  tessera_verifier *v = NULL;
  tessera_error err;
  int rc = tessera_verifier_new(o, &v, &err);
  TT_ASSERT_MSG(rc == 0, "tessera_verifier_new: %s (%s: %s)", tessera_strerror(rc), err.code,
                err.message);
  return v;
}

tessera_verifier_stats tc_verifier_stats(tessera_verifier *v) {
  tessera_verifier_stats st;
  tessera_verifier_stats_get(v, &st);
  return st;
}

json_t *tc_expect_local_ok_(tessera_verifier *v, const char *tok, int line) {
  json_t *claims = NULL;
  tessera_error err;
  int rc = tessera_verifier_verify(v, tok, strlen(tok), &claims, &err);
  if (rc != 0)
    tt_fail(__FILE__, line, "verify: %s (%s: %s)", tessera_strerror(rc), err.code, err.message);
  if (!json_is_object(claims)) tt_fail(__FILE__, line, "verify gave no claims");
  return claims;
}

void tc_expect_local_refused_(tessera_verifier *v, const char *tok, size_t len, const char *code,
                              int line) {
  json_t *claims = json_object(); /* must come back NULL */
  json_t *sentinel = claims;
  tessera_error err;
  int rc = tessera_verifier_verify(v, tok, len, &claims, &err);
  json_decref(sentinel);
  int want = strcmp(code, "unavailable") == 0 ? TESSERA_EUNAVAILABLE : TESSERA_EREJECTED;
  if (rc != want)
    tt_fail(__FILE__, line, "verify: %s (%s), expected %s %s", tessera_err_name(rc), err.code,
            tessera_err_name(want), code);
  if (strcmp(err.code, code) != 0)
    tt_fail(__FILE__, line, "err.code \"%s\", expected \"%s\"", err.code, code);
  if (claims) tt_fail(__FILE__, line, "claims left set on error");
}

/* Waits (bounded, on the feed's own signal) until a feed counter reaches atleast. */
void tc_wait_feed_stat_(tessera_verifier *v, size_t off, uint64_t atleast, const char *name,
                        int line) {
  int64_t deadline = tc_mono_ms() + 15000;
  for (;;) {
    tessera_verifier_stats st = tc_verifier_stats(v);
    uint64_t val;
    memcpy(&val, (const char *)&st + off, sizeof(val));
    if (val >= atleast) return;
    int64_t left = deadline - tc_mono_ms();
    if (left <= 0)
      tt_fail(__FILE__, line, "stats.%s stayed at %llu, waited for %llu", name,
              (unsigned long long)val, (unsigned long long)atleast);
    tessera_verifier_wait_feed(v, st.feed_events, (int)left);
  }
}

typedef struct tc_hammer_arg {
  tessera_verifier *v;
  char **good;
  size_t ngood;
  char **bad;
  size_t nbad;
  unsigned seed;
  atomic_int *failures;
} tc_hammer_arg;

static void *hammer_main(void *arg) {
  tc_hammer_arg *h = arg;
  for (int i = 0; i < 1000; i++) {
    unsigned r = rand_r(&h->seed);
    tessera_error err;
    json_t *cl = NULL;
    if (r % 10 == 0) {
      const char *t = h->bad[(r / 10) % h->nbad];
      int rc = tessera_verifier_verify(h->v, t, strlen(t), &cl, &err);
      if (rc != TESSERA_EREJECTED || strcmp(err.code, "unauthenticated") != 0 || cl)
        atomic_fetch_add(h->failures, 1);
      continue;
    }
    size_t k = (r / 10) % h->ngood;
    const char *t = h->good[k];
    int rc = tessera_verifier_verify(h->v, t, strlen(t), (r & 1) ? &cl : NULL, &err);
    char sub[16];
    snprintf(sub, sizeof(sub), "user%zu", k);
    if (rc != 0 || ((r & 1) && strcmp(json_string_value(json_object_get(cl, "sub")), sub) != 0))
      atomic_fetch_add(h->failures, 1);
    json_decref(cl);
  }
  return NULL;
}

void tc_run_hammer(tessera_verifier *v, char **good, size_t ngood, char **bad, size_t nbad) {
  atomic_int failures = 0;
  pthread_t th[8];
  tc_hammer_arg h[8];
  for (int i = 0; i < 8; i++) {
    h[i] = (tc_hammer_arg){v, good, ngood, bad, nbad, (unsigned)(i + 1) * 7919u, &failures};
    TT_ASSERT(pthread_create(&th[i], NULL, hammer_main, &h[i]) == 0);
  }
  for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
  TT_EQ_INT(atomic_load(&failures), 0);
}
