/* tests/lib/daemon.h: start the real tesserad for an integration test.
 *
 * Each daemon gets a fresh temporary directory holding its socket (run/tesserad.sock), data
 * dir, keys dir and log file (tesserad.log: its stderr). Readiness is the daemon's own signal:
 * it sends READY=1 on $NOTIFY_SOCKET (the systemd protocol) once it listens, so no test sleeps
 * or polls for the socket. Failures end the test (tt_fail). */
#ifndef TT_DAEMON_H
#define TT_DAEMON_H

#include "redis.h"

#include <sys/types.h>

typedef struct td_daemon {
  pid_t pid;
  char dir[128];
  char socket[192];
  char data[192];
  char keys[192];
  char log[192];
  tr_redis redis; /* TT_STORE=redis: the daemon's own redis-server (<dir>/redis) */
} td_daemon;

/* Makes the temp dir and fills the paths; does not start anything. */
void td_init(td_daemon *d);
/* Starts tesserad on d's paths with extra flags (NULL-terminated list, may be NULL) and waits
 * until it is ready. With TT_STORE=redis, first starts d's Redis (once: it outlives daemon
 * restarts and kill -9, until td_cleanup) and adds --store redis+unix://... */
void td_launch(td_daemon *d, const char *const *extra);
/* td_init + td_launch. */
void td_start(td_daemon *d, const char *const *extra);
/* SIGTERM and wait (failing the test if it has not exited within 30 s, 120 s under valgrind);
 * returns the wait status. */
int td_stop(td_daemon *d);
/* SIGKILL and wait. */
void td_kill9(td_daemon *d);
/* SIGSTOP, returning once the daemon is stopped; td_resume continues it (SIGCONT). */
void td_pause(td_daemon *d);
void td_resume(td_daemon *d);
/* Removes the temp dir (the daemon must be stopped). */
void td_cleanup(td_daemon *d);
/* Resident set size of the daemon, in KiB. */
long td_rss_kib(const td_daemon *d);
/* Starts tesserad on d's paths (no extra flags) expecting it to refuse to start: waits for it
 * to exit (its stderr, appended to d's log, closing is the signal) or to send READY=1 (then the
 * test fails). Returns the wait status. */
int td_launch_refused(td_daemon *d);
/* Runs the tessera CLI against d's socket with args (NULL-terminated), input on its stdin (may
 * be NULL: empty), stdout into out and stderr into err (each NUL-terminated, truncated to its
 * cap; err may be NULL, the CLI's stderr then is ours). Returns the exit status. */
int td_cli(const td_daemon *d, const char *input, char *out, size_t cap, char *err, size_t errcap,
           const char *const *args);
/* Whole log file as a malloc'd string (caller frees). */
char *td_read_log(const td_daemon *d);
/* Whole file (read to EOF, /proc files too) as a malloc'd NUL-terminated string, its length
 * in *len when len is not NULL;
 * fails the test when it cannot be read. */
char *td_read_file(const char *path, size_t *len);
/* Waits (bounded, 10 s) until the daemon's log holds text. */
void td_await_log(const td_daemon *d, const char *text);

#endif
