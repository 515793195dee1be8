/* tests/lib/daemon.c: starting, stopping, pausing and reading the real tesserad (daemon.h). */
#include "daemon.h"

#include "tt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
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
  if (tr_env_redis()) {
    if (d->redis.pid <= 0) {
      char rdir[200];
      snprintf(rdir, sizeof(rdir), "%s/redis", d->dir);
      if (d->redis.dir[0]) tr_restart(&d->redis);
      else tr_start(&d->redis, rdir);
    }
    argv[n++] = "--store"; argv[n++] = d->redis.url;
  }
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

/* The daemon promises to exit within --shutdown-timeout (10 s unless a test sets more, and
 * then it stops it itself) once SIGTERM arrives; with nothing owed it exits at once. A stop
 * past 30 s (120 s under valgrind) fails the test: a daemon slow to exit holds up every
 * restart and every systemd stop. */
int td_stop(td_daemon *d) {
  int st = -1;
  if (d->pid <= 0) return st;
  kill(d->pid, SIGTERM);
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  double limit = getenv("TT_VALGRIND") ? 120.0 : 30.0;
  for (;;) {
    pid_t w = waitpid(d->pid, &st, WNOHANG);
    if (w == d->pid || (w < 0 && errno != EINTR)) break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double waited = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
    if (waited > limit) {
      kill(d->pid, SIGKILL);
      while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR) {}
      d->pid = 0;
      char *log = td_read_log(d);
      fprintf(stderr, "tesserad log:\n%s\n", log ? log : "");
      free(log);
      tt_fail(__FILE__, __LINE__, "tesserad still running %.0f s after SIGTERM", limit);
    }
    poll(NULL, 0, 5);
  }
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

void td_pause(td_daemon *d) {
  TT_ASSERT(d->pid > 0 && kill(d->pid, SIGSTOP) == 0);
  int st;
  pid_t got;
  while ((got = waitpid(d->pid, &st, WUNTRACED)) < 0 && errno == EINTR) {}
  TT_ASSERT_MSG(got == d->pid && WIFSTOPPED(st), "the daemon did not stop (status %d)", st);
}

void td_resume(td_daemon *d) { TT_ASSERT(d->pid > 0 && kill(d->pid, SIGCONT) == 0); }

void td_cleanup(td_daemon *d) {
  tr_stop(&d->redis);
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

int td_launch_refused(td_daemon *d) {
  char npath[256];
  snprintf(npath, sizeof(npath), "%s/notify.refuse", d->dir);
  int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  TT_ASSERT(nfd >= 0 && strlen(npath) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, npath, strlen(npath) + 1);
  TT_ASSERT(bind(nfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  int ep[2];
  TT_ASSERT(pipe2(ep, O_CLOEXEC) == 0);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  TT_ASSERT(pid >= 0);
  if (pid == 0) {
    dup2(ep[1], 2);
    setenv("NOTIFY_SOCKET", npath, 1);
    execl(TESSERAD_PATH, TESSERAD_PATH, "--socket", d->socket, "--data", d->data, "--keys",
          d->keys, "--log-level", "debug", (char *)NULL);
    _exit(127);
  }
  close(ep[1]);
  FILE *log = fopen(d->log, "a");
  TT_ASSERT(log != NULL);
  bool ready = false, eof = false;
  while (!ready && !eof) {
    struct pollfd p[2] = {{.fd = ep[0], .events = POLLIN}, {.fd = nfd, .events = POLLIN}};
    int r = poll(p, 2, 30000);
    TT_ASSERT_MSG(r > 0, "tesserad neither exited nor became ready within 30 s");
    if (p[1].revents & POLLIN) {
      char buf[256];
      ssize_t k = recv(nfd, buf, sizeof(buf) - 1, 0);
      if (k > 0) buf[k] = 0, ready = strstr(buf, "READY=1") != NULL;
    }
    if (p[0].revents & (POLLIN | POLLHUP)) {
      char buf[4096];
      ssize_t k = read(ep[0], buf, sizeof(buf));
      if (k > 0) fwrite(buf, 1, (size_t)k, log);
      else if (k == 0 || errno != EINTR) eof = true;
    }
  }
  fclose(log);
  close(ep[0]);
  close(nfd);
  unlink(npath);
  if (ready) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    tt_fail(__FILE__, __LINE__, "tesserad started although it should have refused");
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return st;
}

int td_cli(const td_daemon *d, const char *input, char *out, size_t cap, char *err, size_t errcap,
           const char *const *args) {
  const char *argv[32];
  int n = 0;
  argv[n++] = TESSERA_CLI_PATH;
  argv[n++] = "--socket";
  argv[n++] = d->socket;
  for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
  argv[n] = NULL;
  char errpath[256];
  snprintf(errpath, sizeof(errpath), "%s/cli.stderr", d->dir);
  int efd = -1;
  if (err) TT_ASSERT((efd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) >= 0);
  int st = tt_run(argv, input, out, cap, efd);
  if (efd >= 0) close(efd);
  if (err && errcap) {
    FILE *f = fopen(errpath, "r");
    size_t k = f ? fread(err, 1, errcap - 1, f) : 0;
    err[k] = 0;
    if (f) fclose(f);
  }
  return st;
}

char *td_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  TT_ASSERT_MSG(f != NULL, "open %s: %s", path, strerror(errno));
  size_t cap = 4096, n = 0, k; /* read to EOF: /proc files have no size */
  char *s = malloc(cap);
  TT_ASSERT(s != NULL);
  while ((k = fread(s + n, 1, cap - n - 1, f)) > 0) {
    n += k;
    if (n + 1 == cap) TT_ASSERT((s = realloc(s, cap *= 2)) != NULL);
  }
  s[n] = 0;
  if (len) *len = n;
  fclose(f);
  return s;
}

void td_await_log(const td_daemon *d, const char *text) {
  for (int i = 0; i < 1000; i++) {
    char *log = td_read_log(d);
    bool found = log && strstr(log, text);
    free(log);
    if (found) return;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  tt_fail(__FILE__, __LINE__, "'%s' not in the log within 10 s", text);
}

char *td_read_log(const td_daemon *d) {
  if (access(d->log, R_OK) != 0) return NULL;
  return td_read_file(d->log, NULL);
}
