/* tests/fuzz/fuzz.h: what every fuzz target defines, and the two ways it is built.
 *
 * Each fuzz_<target>.c defines LLVMFuzzerInitialize (run once) and LLVMFuzzerTestOneInput (run
 * per input; it must neither leak nor keep pointers into data). Built two ways (meson.build):
 *   test_fuzz_<target>  with replay.c: runs every file of tests/fuzz/corpus/<target>/ once, as
 *                       an ordinary test program of tests/run (every crash found stays there);
 *   fuzz_<target>       with -Dfuzzing=true (clang): linked against libFuzzer; tests/fuzz/run.
 * A target finds a bug by crashing: a sanitizer report, or FUZZ_CHECK failing on a property
 * the code documents (scanner and msgpack-c agree on a message's length, a round trip gives
 * back what went in, ...). */
#ifndef TS_FUZZ_H
#define TS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken property: say which, then abort (libFuzzer saves the input as crash-*). */
#define FUZZ_CHECK(cond)                                                                      \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
      abort();                                                                                \
    }                                                                                         \
  } while (0)

#endif
