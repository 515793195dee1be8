/* tests/lib/redis.c: a real redis-server for a test (see redis.h). */
#include "redis.h"

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
#include <time.h>
#include <unistd.h>

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One PING on a fresh connection: true when +PONG came back (not -LOADING: Redis still loading
 * its AOF). */
static bool pong(const char *sock) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t len = strlen(sock);
  TT_ASSERT(len < sizeof(sa.sun_path));
  memcpy(sa.sun_path, sock, len + 1);
  bool ok = false;
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      write(fd, "PING\r\n", 6) == 6) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char buf[64];
    ssize_t n;
    if (poll(&p, 1, 1000) > 0 && (n = read(fd, buf, sizeof(buf) - 1)) > 0) {
      buf[n] = 0;
      ok = strncmp(buf, "+PONG", 5) == 0;
    }
  }
  if (fd >= 0) close(fd);
  return ok;
}

static void launch(tr_redis *r) {
  char log[220];
  snprintf(log, sizeof(log), "%s/redis.log", r->dir);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  TT_ASSERT(pid >= 0);
  if (pid == 0) {
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) dup2(nul, 0), dup2(nul, 1);
    execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", r->sock,
           "--unixsocketperm", "700", "--dir", r->dir, "--appendonly", "yes", "--appendfsync",
           "always", "--save", "", "--logfile", log, "--maxmemory-policy", "noeviction",
           "--aof-load-truncated", "no", (char *)NULL);
    _exit(127);
  }
  r->pid = pid;
  long long deadline = mono_ms() + 10000;
  while (!pong(r->sock)) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      r->pid = 0;
      tt_fail(__FILE__, __LINE__, "redis-server exited before answering PING (see %s)", log);
    }
    TT_ASSERT_MSG(mono_ms() < deadline, "redis-server did not answer PING within 10 s");
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL); /* polling a condition, bounded by the deadline */
  }
}

void tr_start(tr_redis *r, const char *dir) {
  memset(r, 0, sizeof(*r));
  if (dir) {
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    mkdir(r->dir, 0700);
  } else {
    snprintf(r->dir, sizeof(r->dir), "/tmp/tessera-redis.XXXXXX");
    TT_ASSERT(mkdtemp(r->dir) != NULL);
  }
  snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
  snprintf(r->url, sizeof(r->url), "redis+unix://%s", r->sock);
  launch(r);
}

static void reap(tr_redis *r, int sig) {
  if (r->pid <= 0) return;
  kill(r->pid, SIGCONT);
  kill(r->pid, sig);
  int st;
  while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR) {}
  r->pid = 0;
}

void tr_stop(tr_redis *r) { reap(r, SIGTERM); }
void tr_kill9(tr_redis *r) { reap(r, SIGKILL); }
void tr_pause(tr_redis *r) { TT_ASSERT(r->pid > 0 && kill(r->pid, SIGSTOP) == 0); }
void tr_resume(tr_redis *r) { TT_ASSERT(r->pid > 0 && kill(r->pid, SIGCONT) == 0); }

int tr_cli(const tr_redis *r, char *out, size_t cap, const char *const *words) {
  const char *argv[40];
  int n = 0;
  argv[n++] = "redis-cli";
  argv[n++] = "-s";
  argv[n++] = r->sock;
  for (int i = 0; words[i] && n < 39; i++) argv[n++] = words[i];
  argv[n] = NULL;
  return tt_run(argv, NULL, out, cap, -1);
}

/* A torn AOF tail (Redis killed inside a write) is cut by redis-check-aof --fix, which cuts a
 * torn MULTI/EXEC block before its MULTI (redis.h: why not Redis's own truncation). */
static void fix_aof(tr_redis *r) {
  char manifest[220], out[8192];
  snprintf(manifest, sizeof(manifest), "%s/appendonlydir/appendonly.aof.manifest", r->dir);
  if (access(manifest, R_OK) != 0) return;
  const char *check[] = {"redis-check-aof", manifest, NULL};
  if (tt_run(check, NULL, out, sizeof(out), TT_RUN_ERR_TO_OUT) == 0) return;
  const char *fix[] = {"redis-check-aof", "--fix", manifest, NULL};
  int st = tt_run(fix, "y\n", out, sizeof(out), TT_RUN_ERR_TO_OUT);
  TT_ASSERT_MSG(st == 0 && strstr(out, "Successfully truncated"),
                "redis-check-aof --fix %s: status %d:\n%s", manifest, st, out);
  r->aof_fixed++;
}

void tr_restart(tr_redis *r) {
  TT_ASSERT(r->pid == 0);
  fix_aof(r);
  launch(r);
}

int tr_clients(const tr_redis *r) {
  char out[4096];
  const char *words[] = {"INFO", "clients", NULL};
  if (tr_cli(r, out, sizeof(out), words) != 0) return -1;
  const char *p = strstr(out, "connected_clients:");
  int n;
  if (!p || sscanf(p, "connected_clients:%d", &n) != 1 || n < 1) return -1;
  return n - 1; /* redis-cli's own connection */
}

void tr_await_clients(const tr_redis *r, int n, int timeout_ms) {
  long long deadline = mono_ms() + timeout_ms;
  int now;
  while ((now = tr_clients(r)) != n) {
    TT_ASSERT_MSG(mono_ms() < deadline, "redis has %d clients, not %d, after %d ms", now, n,
                  timeout_ms);
    struct timespec ts = {0, 10 * 1000000};
    nanosleep(&ts, NULL); /* polling a condition, bounded by the deadline */
  }
}

void tr_cleanup(tr_redis *r) {
  if (!r->dir[0] || getenv("TT_KEEP") || strncmp(r->dir, "/tmp/tessera-redis.", 19) != 0) return;
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", r->dir);
}

bool tr_env_redis(void) {
  const char *s = getenv("TT_STORE");
  return s && strcmp(s, "redis") == 0;
}
