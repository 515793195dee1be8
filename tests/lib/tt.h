/* tests/lib/tt.h: the tiny test runner every C test program uses.
 *
 * A test program lists its cases in one table and ends with TT_MAIN(cases). Each case runs in a
 * forked child (a crash or a failed assertion fails that case only) with a time limit
 * (TT_TIMEOUT seconds, default 120), in its own process group, which is killed when the case
 * ends so that a failed case leaves no daemon running. Output, one line per case, read by tests/run:
 *   ok - name            not ok - name: file:line: what failed
 * then the TAP plan line "1..N" (meson test reads the output as TAP).
 * Running a program with a case name as argument runs just that case. */
#ifndef TT_H
#define TT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tt_case {
  const char *name;
  void (*fn)(void);
} tt_case;

int tt_main(int argc, char **argv, const tt_case *cases, size_t n);
void tt_fail(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));

/* Ends the case as skipped ("ok - name # SKIP"): it does not apply here (e.g. an LMDB file
 * check under TT_STORE=redis). why goes to stderr. */
void tt_skip(const char *why) __attribute__((noreturn));
#define TT_SKIP_EXIT 77

/* Runs argv[0] (searched in PATH) with input on its stdin (NULL: empty; written before any
 * output is read, so under a pipe's 64 KiB), its stdout into out
 * (NUL-terminated, truncated to cap; out NULL: discarded). Its stderr goes to err_fd when that
 * is >= 0, into out with stdout when TT_RUN_ERR_TO_OUT, else stays ours. Returns the exit
 * status, 128 + the signal if it was killed. */
#define TT_RUN_ERR_TO_OUT (-2)
int tt_run(const char *const *argv, const char *input, char *out, size_t cap, int err_fd);

#define TT_MAIN(cases) \
  int main(int argc, char **argv) { return tt_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0])); }
#define TT_CASE(fn) {#fn, fn}

#define TT_ASSERT(cond) \
  do { if (!(cond)) tt_fail(__FILE__, __LINE__, "assertion failed: %s", #cond); } while (0)
#define TT_ASSERT_MSG(cond, ...) \
  do { if (!(cond)) tt_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define TT_EQ_INT(a, b)                                                                          \
  do {                                                                                           \
    long long tt_a_ = (long long)(a), tt_b_ = (long long)(b);                                    \
    if (tt_a_ != tt_b_) tt_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, tt_a_, #b, tt_b_); \
  } while (0)
#define TT_EQ_STR(a, b)                                                                          \
  do {                                                                                           \
    const char *tt_a_ = (a), *tt_b_ = (b);                                                       \
    if (!tt_a_ || !tt_b_ || strcmp(tt_a_, tt_b_) != 0)                                           \
      tt_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a, tt_a_ ? tt_a_ : "(null)", tt_b_ ? tt_b_ : "(null)"); \
  } while (0)

#endif
