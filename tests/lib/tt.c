#include "tt.h"

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

static int run_case(const tt_case *c, unsigned timeout) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
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
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    printf("ok - %s\n", c->name);
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
  int failed = 0, ran = 0;
  for (size_t i = 0; i < n; i++) {
    if (argc > 1) {
      int wanted = 0;
      for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], cases[i].name) == 0;
      if (!wanted) continue;
    }
    ran++;
    failed += run_case(&cases[i], timeout) != 0;
  }
  printf("# %d passed, %d failed\n", ran - failed, failed);
  return failed ? 1 : 0;
}
