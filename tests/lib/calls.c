/* tests/lib/calls.c: see calls.h. */
#include "calls.h"

#include "tt.h"

#include <sys/wait.h>

tessera_client *tc_client(const td_daemon *d) {
  tessera_client *c = NULL;
  int rc = tessera_connect(d->socket, &c);
  TT_ASSERT_MSG(rc == 0, "connect %s: %s", d->socket, tessera_strerror(rc));
  return c;
}

json_t *tc_call_ok(tessera_client *c, const char *method, json_t *params) {
  json_t *result = NULL;
  tessera_error err = {0};
  int rc = tessera_call(c, method, params, TC_TIMEOUT_MS, &result, &err);
  json_decref(params);
  TT_ASSERT_MSG(rc == 0, "%s: %s (%s: %s)", method, tessera_strerror(rc), err.code, err.message);
  return result;
}

const char *tc_call_code(tessera_client *c, const char *method, json_t *params, json_t **result) {
  static tessera_error err;
  json_t *r = NULL;
  memset(&err, 0, sizeof(err));
  int rc = tessera_call(c, method, params, TC_TIMEOUT_MS, &r, &err);
  json_decref(params);
  TT_ASSERT_MSG(rc == 0 || rc == TESSERA_EREMOTE, "%s: %s", method, tessera_strerror(rc));
  if (result) *result = r;
  else json_decref(r);
  return err.code;
}

void tc_expect_code(tessera_client *c, const char *method, json_t *params, const char *code) {
  const char *got = tc_call_code(c, method, params, NULL);
  TT_ASSERT_MSG(strcmp(got, code) == 0, "%s: got '%s', expected '%s'", method, got, code);
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

void tc_stop_clean(td_daemon *d) {
  int st = td_stop(d);
  TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tesserad exit status %d", st);
  td_cleanup(d);
}
