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
