#include "daemon.h"

#include "tt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TESSERAD_PATH
#error "TESSERAD_PATH must be defined by the build"
#endif

void td_init(td_daemon *d) {
  memset(d, 0, sizeof(*d));
  snprintf(d->dir, sizeof(d->dir), "/tmp/tessera-test.XXXXXX");
  TT_ASSERT(mkdtemp(d->dir) != NULL);
  snprintf(d->socket, sizeof(d->socket), "%s/run/tesserad.sock", d->dir);
  snprintf(d->data, sizeof(d->data), "%s/data", d->dir);
  snprintf(d->keys, sizeof(d->keys), "%s/keys", d->dir);
  snprintf(d->log, sizeof(d->log), "%s/tesserad.log", d->dir);
}

static int notify_socket(char *path, size_t cap, const char *dir) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  TT_ASSERT(fd >= 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(path, cap, "%s/notify.%d", dir, (int)getpid());
  unlink(path);
  TT_ASSERT(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path) + 1);
  TT_ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  return fd;
}

void td_launch(td_daemon *d, const char *const *extra) {
  char npath[256];
  int nfd = notify_socket(npath, sizeof(npath), d->dir);
  const char *argv[80];
  int n = 0;
  char vlog[256];
  if (getenv("TT_VALGRIND")) { /* the whole suite under memcheck: tests/run --valgrind */
    snprintf(vlog, sizeof(vlog), "--log-file=%s/valgrind.%%p.log", d->dir);
    argv[n++] = "/usr/bin/valgrind";
    argv[n++] = "--quiet";
    argv[n++] = "--error-exitcode=99";
    argv[n++] = "--leak-check=full";
    argv[n++] = "--errors-for-leak-kinds=definite";
    argv[n++] = "--show-leak-kinds=definite";
    argv[n++] = "--suppressions=" TT_SOURCE_DIR "/tests/valgrind.supp";
    argv[n++] = vlog;
  }
  argv[n++] = TESSERAD_PATH;
  argv[n++] = "--socket"; argv[n++] = d->socket;
  argv[n++] = "--data"; argv[n++] = d->data;
  argv[n++] = "--keys"; argv[n++] = d->keys;
  argv[n++] = "--log-level"; argv[n++] = getenv("TT_LOG_LEVEL") ? getenv("TT_LOG_LEVEL") : "debug";
  for (int i = 0; extra && extra[i]; i++) {
    TT_ASSERT(n < 78);
    argv[n++] = extra[i];
  }
  argv[n] = NULL;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  TT_ASSERT(pid >= 0);
  if (pid == 0) {
    int lfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (lfd < 0) _exit(127);
    dup2(lfd, 2);
    setenv("NOTIFY_SOCKET", npath, 1);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  d->pid = pid;
  /* Wait for READY=1, or for the daemon to die. */
  for (;;) {
    struct pollfd p = {.fd = nfd, .events = POLLIN};
    int r = poll(&p, 1, 200);
    if (r > 0) {
      char buf[256];
      ssize_t k = recv(nfd, buf, sizeof(buf) - 1, 0);
      if (k > 0) {
        buf[k] = 0;
        if (strstr(buf, "READY=1")) break;
      }
      continue;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      char *log = td_read_log(d);
      fprintf(stderr, "tesserad log:\n%s\n", log ? log : "");
      free(log);
      tt_fail(__FILE__, __LINE__, "tesserad exited before it was ready (status %d)", st);
    }
  }
  close(nfd);
  unlink(npath);
}

void td_start(td_daemon *d, const char *const *extra) {
  td_init(d);
  td_launch(d, extra);
}

/* Under valgrind: fail the test on any memcheck error the daemon's report names. */
static void check_valgrind(const td_daemon *d) {
  if (!getenv("TT_VALGRIND")) return;
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "cat %s/valgrind.*.log 2>/dev/null | grep -q .", d->dir);
  if (system(cmd) == 0) {
    snprintf(cmd, sizeof(cmd), "cat %s/valgrind.*.log >&2", d->dir);
    if (system(cmd) != 0) {}
    tt_fail(__FILE__, __LINE__, "valgrind reported errors in tesserad (see above)");
  }
}

int td_stop(td_daemon *d) {
  int st = -1;
  if (d->pid <= 0) return st;
  kill(d->pid, SIGTERM);
  while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR) {}
  d->pid = 0;
  check_valgrind(d);
  return st;
}

void td_kill9(td_daemon *d) {
  if (d->pid <= 0) return;
  kill(d->pid, SIGKILL);
  int st;
  while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR) {}
  d->pid = 0;
}

void td_cleanup(td_daemon *d) {
  if (!d->dir[0] || getenv("TT_KEEP")) return;
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", d->dir);
}

long td_rss_kib(const td_daemon *d) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
  FILE *f = fopen(path, "r");
  TT_ASSERT(f != NULL);
  long kib = -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

int td_cli(const td_daemon *d, char *out, size_t cap, const char *const *args) {
  int pfd[2];
  TT_ASSERT(pipe(pfd) == 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  TT_ASSERT(pid >= 0);
  if (pid == 0) {
    const char *argv[32];
    int n = 0;
    argv[n++] = TESSERA_CLI_PATH;
    argv[n++] = "--socket";
    argv[n++] = d->socket;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    dup2(pfd[1], 1);
    close(pfd[0]);
    close(pfd[1]);
    execv(TESSERA_CLI_PATH, (char *const *)argv);
    _exit(127);
  }
  close(pfd[1]);
  size_t got = 0;
  for (;;) {
    char tmp[4096];
    ssize_t k = read(pfd[0], tmp, sizeof(tmp));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    size_t room = cap > got + 1 ? cap - got - 1 : 0;
    size_t take = (size_t)k < room ? (size_t)k : room;
    memcpy(out + got, tmp, take);
    got += take;
  }
  if (cap) out[got] = 0;
  close(pfd[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

char *td_read_log(const td_daemon *d) {
  FILE *f = fopen(d->log, "r");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s) {
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
  }
  fclose(f);
  return s;
}
