/* tests/fuzz/replay.c: the main of test_fuzz_<target> (a build without libFuzzer).
 *
 * Runs LLVMFuzzerTestOneInput once on every regular file of the target's corpus directory
 * (CORPUS_DIR, compiled in; or the files and directories given as arguments), in name order,
 * all in this one process, as the fuzzer would. Output follows tests/lib/tt.h, so tests/run
 * counts it:
 *   # <file>                          before each input (the last one names a crash)
 *   ok - replay <target> (N inputs)   or   not ok - replay <target>: why
 *   # 1 passed, 0 failed
 * A crashing input kills the process (a sanitizer report or abort): tests/run counts the
 * nonzero exit as a failure and keeps the output in the program's log. */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CORPUS_DIR
#error "CORPUS_DIR must name the corpus directory"
#endif
#ifndef FUZZ_TARGET
#error "FUZZ_TARGET must name the target"
#endif

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads path whole. Returns 0 with *out (malloc'd; at least one byte allocated) and *len. */
static int read_file(const char *path, uint8_t **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  while (buf) {
    if (n == cap) {
      uint8_t *nb = realloc(buf, cap * 2);
      if (!nb) break;
      buf = nb;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  int err = ferror(f) || !buf;
  fclose(f);
  if (err) {
    free(buf);
    return -1;
  }
  /* An exact-size copy: ASan then catches a read one byte past the input, as libFuzzer's
   * own copy would. */
  uint8_t *exact = malloc(n ? n : 1);
  if (!exact) {
    free(buf);
    return -1;
  }
  if (n) memcpy(exact, buf, n);
  free(buf);
  *out = exact;
  *len = n;
  return 0;
}

static int run_file(const char *path) {
  uint8_t *data;
  size_t len;
  if (read_file(path, &data, &len) != 0) {
    printf("not ok - replay %s: cannot read %s: %s\n", FUZZ_TARGET, path, strerror(errno));
    return -1;
  }
  printf("# %s\n", path);
  fflush(stdout);
  LLVMFuzzerTestOneInput(data, len);
  free(data);
  return 0;
}

/* Runs every regular, non-hidden file of dir in name order. Returns the count, or -1. */
static long run_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    printf("not ok - replay %s: cannot open %s: %s\n", FUZZ_TARGET, dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof(*nn));
      if (!nn) abort();
      names = nn;
    }
    names[n] = strdup(e->d_name);
    if (!names[n]) abort();
    n++;
  }
  closedir(d);
  if (n) qsort(names, n, sizeof(*names), by_name);
  long count = 0;
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      if (run_file(path) != 0) count = -1;
      else if (count >= 0) count++;
    }
    free(names[i]);
  }
  free(names);
  return count;
}

int main(int argc, char **argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  long total = 0;
  if (argc < 2) {
    total = run_dir(CORPUS_DIR);
  } else {
    for (int i = 1; i < argc && total >= 0; i++) {
      struct stat st;
      if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
        long n = run_dir(argv[i]);
        total = n < 0 ? -1 : total + n;
      } else {
        total = run_file(argv[i]) == 0 ? total + 1 : -1;
      }
    }
  }
  if (total < 0) {
    printf("# 0 passed, 1 failed\n1..1\n");
    return 1;
  }
  if (total == 0) {
    printf("not ok - replay %s: no inputs (an empty corpus tests nothing)\n", FUZZ_TARGET);
    printf("# 0 passed, 1 failed\n1..1\n");
    return 1;
  }
  printf("ok - replay %s (%ld inputs)\n", FUZZ_TARGET, total);
  printf("# 1 passed, 0 failed\n1..1\n");
  return 0;
}
