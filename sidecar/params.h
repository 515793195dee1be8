/* sidecar/params.h: checking a request's params map against what a method accepts.
 *
 * A method describes its params once, as a table of ts_param rows (its row in methods/ points
 * at it); dispatch runs ts_params_parse, which checks the request against it: unknown keys
 * (named in the error), types, required keys, string lengths, UTF-8, positive durations, and
 * the msgpack size of nested maps (PROTOCOL.md "Limits").
 * The values it returns point into the request's msgpack object: valid during the handler's
 * synchronous part only; copy what an asynchronous completion needs. */
#ifndef TS_PARAMS_H
#define TS_PARAMS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ts_param_type {
  TS_P_STR,      /* str, min..max bytes of valid UTF-8, no NUL */
  TS_P_DURATION, /* integer seconds, >= 1 (callers check their maximum) */
  TS_P_INT,      /* any integer */
  TS_P_BOOL,
  TS_P_MAP,      /* map with str keys, at most max bytes as msgpack, strings UTF-8 without NUL */
  TS_P_ANY,      /* any value; the handler checks it */
  TS_P_CREDENTIAL, /* str of any length and bytes (a sid or a token as the cookie held it): the
                    * handler refuses a bad one as unauthenticated, never bad_request */
};

typedef struct ts_param {
  const char *name;
  enum ts_param_type type;
  bool required;
  uint32_t min, max; /* STR: byte length range (0,0: 1..8192); MAP: max msgpack bytes */
} ts_param;

typedef struct ts_param_value {
  bool present;
  const char *str; /* STR: not NUL-terminated */
  size_t len;
  int64_t i64;     /* DURATION, INT */
  bool b;          /* BOOL */
  const msgpack_object *obj; /* the raw value (any type) */
} ts_param_value;

/* The number of rows of a spec array, counted by the compiler. */
#define TS_PARAMS_N(spec) (sizeof(spec) / sizeof((spec)[0]))

/* Fills vals[i] for spec[i]. params may be NULL (no map given). Returns 0, or TS_EBAD_REQUEST
 * with a message in why (never echoing values, only key names). */
int ts_params_parse(const msgpack_object *params, const ts_param *spec, size_t n,
                    ts_param_value *vals, char *why, size_t why_cap);

/* Bytes o takes as (canonical) msgpack; stops counting once past limit (returns more than
 * limit). */
size_t ts_mp_packed_size(const msgpack_object *o, size_t limit);

/* True when the n bytes at s are valid UTF-8 without NUL. */
bool ts_utf8_valid(const char *s, size_t n);

/* True when o is a str of valid UTF-8 without NUL (what a STR param accepts, any length). */
bool ts_param_str_clean(const msgpack_object *o);

/* A NUL-terminated copy of a STR value into out (cap bytes). Returns false if it did not fit. */
bool ts_param_copy(const ts_param_value *v, char *out, size_t cap);

#endif
