/* tests/lib/freed_secrets.c: an LD_PRELOAD shim for one test (test_security
 * freed_memory_holds_no_secret): every block the daemon frees, or that realloc moves, is
 * searched for a secret the test chose, and each find is appended to a report file.
 *
 * The secret lives in a file the test writes while the daemon runs (TT_SECRET_FILE: a length
 * byte, then the secret; mapped shared, so the daemon sees each new one at once); finds go to
 * TT_SECRET_REPORT. glibc's own entry points (__libc_free, __libc_realloc) do the work, so the
 * shim never recurses through dlsym. Only meaningful with glibc's allocator: sanitizer and
 * valgrind builds replace it (the test skips there). */
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void __libc_free(void *p);
extern void *__libc_realloc(void *p, size_t n);

#define SECRET_MAX 255

static const unsigned char *secret_map; /* [0]: length, then the secret */
static int report_fd = -1;

__attribute__((constructor)) static void shim_init(void) {
  const char *file = getenv("TT_SECRET_FILE"), *report = getenv("TT_SECRET_REPORT");
  if (!file || !report) return;
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  void *m = mmap(NULL, SECRET_MAX + 1, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return;
  report_fd = open(report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  secret_map = m;
}

/* Appends a line to the report when p's usable bytes hold the secret. */
static void check(void *p, const char *how) {
  if (!p || !secret_map || report_fd < 0) return;
  size_t n = secret_map[0];
  if (n < 8) return; /* no secret yet */
  size_t size = malloc_usable_size(p);
  if (size >= n && memmem(p, size, secret_map + 1, n)) {
    char line[96];
    int k = snprintf(line, sizeof(line), "%s of a %zu-byte block holding the secret\n", how, size);
    if (write(report_fd, line, (size_t)k) < 0) {}
  }
}

void free(void *p) {
  check(p, "free");
  __libc_free(p);
}

void *realloc(void *p, size_t n) {
  if (!p) return __libc_realloc(p, n);
  size_t size = malloc_usable_size(p);
  int held = 0;
  if (secret_map && secret_map[0] >= 8 && size >= secret_map[0])
    held = memmem(p, size, secret_map + 1, secret_map[0]) != NULL;
  void *q = __libc_realloc(p, n);
  if (held && q != p && report_fd >= 0) {
    static const char line[] = "realloc moved a block holding the secret\n";
    if (write(report_fd, line, sizeof(line) - 1) < 0) {}
  }
  return q;
}
