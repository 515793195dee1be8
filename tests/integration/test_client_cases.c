/* test_client_cases.c: the shared request/response cases (tests/cases/clients.json, its
 * "about" says the format) through libtessera against the real tesserad; the Node and Python
 * clients run the same file (client/node/test/cases.test.js, client/python/tests/test_cases.py).
 * One connection per case, steps in order; prints "ok - name" / "not ok - name: why" per case
 * and the TAP plan. An optional argument runs only the cases whose name contains it. */
#include "daemon.h"
#include "tt.h"

#include <tessera/tessera.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* A new value: v with every string "$name.key" replaced by saved[name][key]. */
static json_t *substitute(const json_t *v, const json_t *saved) {
  if (json_is_string(v)) {
    const char *s = json_string_value(v), *dot = strchr(s, '.');
    if (s[0] == '$' && dot) {
      char name[64];
      snprintf(name, sizeof(name), "%.*s", (int)(dot - s - 1), s + 1);
      json_t *got = json_object_get(json_object_get(saved, name), dot + 1);
      return got ? json_incref(got) : json_null();
    }
  }
  if (json_is_object(v)) {
    json_t *out = json_object();
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x) json_object_set_new(out, k, substitute(x, saved));
    return out;
  }
  if (json_is_array(v)) {
    json_t *out = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) json_array_append_new(out, substitute(x, saved));
    return out;
  }
  return json_deep_copy(v);
}

/* Maps member by member (recursively), anything else exactly. */
static bool matches(const json_t *want, const json_t *got) {
  if (!json_is_object(want)) return json_equal(want, got);
  if (!json_is_object(got)) return false;
  const char *k;
  json_t *x;
  json_object_foreach((json_t *)want, k, x) if (!matches(x, json_object_get(got, k))) return false;
  return true;
}

/* Runs one case; NULL when it passed, else why (static buffer). */
static const char *run_case(const char *socket, const json_t *c) {
  static char why[512];
  tessera_client *cl = NULL;
  if (tessera_connect(socket, &cl) != 0) return "connect failed";
  json_t *saved = json_object();
  const char *fail = NULL;
  size_t i;
  json_t *step;
  json_array_foreach(json_object_get(c, "steps"), i, step) {
    const char *method = json_string_value(json_object_get(step, "call"));
    json_t *params = substitute(json_object_get(step, "params"), saved);
    json_t *expect = json_object_get(step, "expect") ? substitute(json_object_get(step, "expect"), saved)
                                                     : json_object();
    if (json_is_null(params)) {
      json_decref(params);
      params = json_object();
    }
    json_t *result = NULL;
    tessera_error err;
    int rc = tessera_call(cl, method, params, 5000, &result, &err);
    const char *want_err = json_string_value(json_object_get(expect, "error"));
    if (rc == TESSERA_EREMOTE) {
      if (!want_err || strcmp(want_err, err.code) != 0) {
        snprintf(why, sizeof(why), "step %zu (%s): error %s", i + 1, method, err.code);
        fail = why;
      }
    } else if (rc != 0) {
      snprintf(why, sizeof(why), "step %zu (%s): call failed (%d)", i + 1, method, rc);
      fail = why;
    } else if (want_err) {
      snprintf(why, sizeof(why), "step %zu (%s): succeeded, expected %s", i + 1, method, want_err);
      fail = why;
    } else {
      json_t *w = json_object_get(expect, "result");
      if (w && !matches(w, result)) {
        char *dump = json_dumps(result, JSON_COMPACT);
        snprintf(why, sizeof(why), "step %zu (%s): result %.300s", i + 1, method, dump ? dump : "?");
        free(dump);
        fail = why;
      }
      size_t j;
      json_t *k;
      json_array_foreach(json_object_get(expect, "keys"), j, k) {
        if (!fail && !json_object_get(result, json_string_value(k))) {
          snprintf(why, sizeof(why), "step %zu (%s): no %s", i + 1, method, json_string_value(k));
          fail = why;
        }
      }
      const char *key;
      json_t *n;
      json_object_foreach(json_object_get(expect, "lengths"), key, n) {
        json_t *v = json_object_get(result, key);
        long long len = json_is_string(v) ? (long long)json_string_length(v)
                        : json_is_array(v) ? (long long)json_array_size(v) : -1;
        if (!fail && len != json_integer_value(n)) {
          snprintf(why, sizeof(why), "step %zu (%s): length of %s is %lld", i + 1, method, key, len);
          fail = why;
        }
      }
      const char *save = json_string_value(json_object_get(step, "save"));
      if (save && result) json_object_set(saved, save, result);
    }
    json_decref(result);
    json_decref(params);
    json_decref(expect);
    if (fail) break;
  }
  json_decref(saved);
  tessera_close(cl);
  return fail;
}

int main(int argc, char **argv) {
  json_error_t jerr;
  json_t *doc = json_load_file(TT_SOURCE_DIR "/tests/cases/clients.json", JSON_REJECT_DUPLICATES, &jerr);
  if (!doc) {
    printf("not ok - load tests/cases/clients.json: %s (line %d)\n1..1\n", jerr.text, jerr.line);
    return 1;
  }
  td_daemon d;
  td_start(&d, NULL);
  int n = 0, failed = 0;
  size_t i;
  json_t *c;
  json_array_foreach(json_object_get(doc, "cases"), i, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    if (argc > 1 && !strstr(name, argv[1])) continue;
    const char *why = run_case(d.socket, c);
    n++;
    if (why) failed++;
    if (why) printf("not ok - %s: %s\n", name, why);
    else printf("ok - %s\n", name);
    fflush(stdout);
  }
  printf("1..%d\n", n);
  td_stop(&d);
  td_cleanup(&d);
  json_decref(doc);
  return failed ? 1 : 0;
}
