/* tests/lib/tt.c: the test runner: forked cases, time limits, TAP output; and tt_run, the one
 * way a test runs a helper program (tt.h). */
#include "tt.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

void tt_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "TTFAIL %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  fflush(stderr);
  _exit(1);
}

int tt_run(const char *const *argv, const char *input, char *out, size_t cap, int err_fd) {
  int in[2], o[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(o, O_CLOEXEC) != 0)
    tt_fail(__FILE__, __LINE__, "pipe: %s", strerror(errno));
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) tt_fail(__FILE__, __LINE__, "fork: %s", strerror(errno));
  if (pid == 0) { /* dup2 clears O_CLOEXEC on the copies */
    dup2(in[0], 0);
    dup2(o[1], 1);
    if (err_fd >= 0) dup2(err_fd, 2);
    else if (err_fd == TT_RUN_ERR_TO_OUT) dup2(o[1], 2);
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(in[0]);
  close(o[1]);
  if (input) { /* a child that exits without reading: EPIPE, not a SIGPIPE that ends the test */
    void (*was)(int) = signal(SIGPIPE, SIG_IGN);
    size_t len = strlen(input), done = 0;
    while (done < len) {
      ssize_t w = write(in[1], input + done, len - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      done += (size_t)w;
    }
    signal(SIGPIPE, was);
  }
  close(in[1]);
  size_t got = 0;
  for (;;) {
    char tmp[65536];
    ssize_t k = read(o[0], tmp, sizeof(tmp));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    size_t take = out && cap > got + 1 ? cap - got - 1 : 0; /* 0 when out is NULL */
    if ((size_t)k < take) take = (size_t)k;
    if (take == 0) continue; /* the rest is read and dropped */
    memcpy(out + got, tmp, take);
    got += take;
  }
  if (out && cap) out[got] = 0;
  close(o[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

void tt_skip(const char *why) {
  fprintf(stderr, "TTSKIP %s\n", why);
  fflush(stdout);
  fflush(stderr);
  _exit(TT_SKIP_EXIT);
}

/* Copies what a case printed to stdout, counting its TAP result lines (a case may report
 * results of its own, as the crash harness does per cycle). */
static int relay(FILE *out) {
  int results = 0;
  char line[4096];
  rewind(out);
  while (fgets(line, sizeof(line), out)) {
    if (!strncmp(line, "ok ", 3) || !strncmp(line, "not ok ", 7)) results++;
    fputs(line, stdout);
  }
  fclose(out);
  return results;
}

/* Runs one case; returns 0 when it passed, and adds the TAP result lines printed to *results. */
static int run_case(const tt_case *c, unsigned timeout, int *results) {
  fflush(stdout);
  fflush(stderr);
  /* The case's stdout goes to a file, copied out once the case (and any daemon it left) is
   * gone: no pipe a leftover process could hold open. */
  FILE *out = tmpfile();
  if (!out) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(fileno(out), 1);
    setpgid(0, 0); /* the case and every daemon it starts: one group to clean up */
    alarm(timeout);
    c->fn();
    fflush(stdout);
    _exit(0);
  }
  setpgid(pid, pid);
  int st;
  while (waitpid(pid, &st, 0) < 0) {}
  kill(-pid, SIGKILL); /* a failed case leaves no daemon behind */
  *results += relay(out) + 1;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    printf("ok - %s\n", c->name);
    return 0;
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == TT_SKIP_EXIT) {
    printf("ok - %s # SKIP\n", c->name);
    return 0;
  }
  if (WIFSIGNALED(st))
    printf("not ok - %s: killed by signal %d%s\n", c->name, WTERMSIG(st),
           WTERMSIG(st) == SIGALRM ? " (time limit)" : "");
  else
    printf("not ok - %s: exit %d (see stderr)\n", c->name, WEXITSTATUS(st));
  return 1;
}

int tt_main(int argc, char **argv, const tt_case *cases, size_t n) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *t = getenv("TT_TIMEOUT");
  unsigned timeout = t ? (unsigned)atoi(t) : 120;
  int failed = 0, ran = 0, results = 0;
  for (size_t i = 0; i < n; i++) {
    if (argc > 1) {
      int wanted = 0;
      for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], cases[i].name) == 0;
      if (!wanted) continue;
    }
    ran++;
    failed += run_case(&cases[i], timeout, &results) != 0;
  }
  printf("# %d passed, %d failed\n", ran - failed, failed);
  printf("1..%d\n", results); /* TAP's plan, last: a case may print results of its own */
  return failed ? 1 : 0;
}
