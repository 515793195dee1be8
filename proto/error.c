/* proto/error.c: the rows of the one error table (error.h) as data.
 *
 * TS_ERROR_MAP is expanded twice: into the enum in error.h (TS_E* = -999, -998, ... in table
 * order) and here into a static array of {wire code, message} in the same order, so a code's
 * row is found by subtraction, with no search and no switch to keep in step. Anything outside
 * the table (a stray errno, a libuv code that was not converted where it entered) is answered
 * as "internal" rather than indexed: the range check comes first. */
#include "error.h"

#include <stddef.h>

struct ts_error_row {
  const char *code;
  const char *message;
};

static const struct ts_error_row rows[] = {
#define TS_ERROR_ROW_(name, wire, msg) {wire, msg},
    TS_ERROR_MAP(TS_ERROR_ROW_)
#undef TS_ERROR_ROW_
};

static const struct ts_error_row *row_of(int err) {
  /* Range-check before subtracting: err - (TS_ERROR_FIRST_ + 1) overflows for err near INT_MAX. */
  if (err <= TS_ERROR_FIRST_ || err >= TS_ERROR_END_) return NULL;
  return &rows[err - (TS_ERROR_FIRST_ + 1)];
}

const char *ts_err_code(int err) {
  const struct ts_error_row *r = row_of(err);
  return r ? r->code : "internal";
}

const char *ts_strerror(int err) {
  if (err == 0) return "ok";
  const struct ts_error_row *r = row_of(err);
  return r ? r->message : "internal error";
}
