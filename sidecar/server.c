/* sidecar/server.c: the listening socket, the door (peer credentials), signals, graceful stop.
 *
 * The door: every accepted connection's SO_PEERCRED is checked before a byte is read; a peer
 * whose uid is not in --allow-uid and whose gid is not in --allow-gid is closed at once, and so
 * is one whose credentials cannot be read (logged without any id: there is none to trust).
 *
 * Connection cap: when max_connections are open we do not call uv_accept; libuv then stops
 * polling the listener and further clients wait in the kernel's backlog. Each close accepts
 * the one libuv holds, if any.
 *
 * Graceful stop (SIGTERM/SIGINT): close the listener, stop reading, answer every request
 * already read (complete messages in a connection's buffer included), flush, close. When the
 * last connection is gone, on_drained runs (main stops the writer and the loop). After
 * --shutdown-timeout, connections whose peer does not read are closed anyway; requests of
 * theirs still in the writer finish (unanswered) before the loop ends (writer.c). */
#include "server.h"

#include "error.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

void ts_notify(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = strlen(path);
  if (n >= sizeof(sa.sun_path)) return;
  memcpy(sa.sun_path, path, n);
  if (path[0] == '@') sa.sun_path[0] = 0; /* abstract namespace */
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
  (void)w;
  close(fd);
}

/* Creates every missing directory of path's parent with mode 0750. */
static int make_parent_dirs(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = 0;
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(dir, 0750) != 0 && errno != EEXIST) return -errno;
  return 0;
}

/* A socket file left by a dead daemon is replaced; anything else at the path is refused, and so
 * is a socket some live daemon still answers on. */
static int clear_stale_socket(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : TS_ECONFIG;
  if (!S_ISSOCK(st.st_mode)) {
    ts_log(TS_LOG_ERROR, "socket path exists and is not a socket", "{s:s}", "socket", path);
    return TS_ECONFIG;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  int live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  if (fd >= 0) close(fd);
  if (live) {
    ts_log(TS_LOG_ERROR, "another tesserad is listening on this socket", "{s:s}", "socket", path);
    return TS_ECONFIG;
  }
  unlink(path);
  return 0;
}

static void accept_one(ts_server *s);

static void on_connection(uv_stream_t *listener, int status) {
  ts_server *s = listener->data;
  if (status < 0) {
    ts_log(TS_LOG_WARN, "accept failed", "{s:s}", "error", uv_strerror(status));
    return;
  }
  if (s->n_conns >= s->cfg->max_connections) {
    s->accept_pending = true; /* leave it in libuv: it stops polling the listener */
    return;
  }
  accept_one(s);
}

static bool peer_allowed(const ts_server *s, const struct ucred *cr) {
  return ts_idlist_has(&s->cfg->allow_uids, cr->uid) || ts_idlist_has(&s->cfg->allow_gids, cr->gid);
}

static void on_rejected_close(uv_handle_t *h) { free(h); }

static void accept_one(ts_server *s) {
  s->accept_pending = false;
  ts_conn *c = calloc(1, sizeof(*c));
  if (!c || uv_pipe_init(s->loop, &c->pipe, 0) != 0) {
    free(c);
    return;
  }
  if (uv_accept((uv_stream_t *)&s->listener, (uv_stream_t *)&c->pipe) != 0) {
    uv_close((uv_handle_t *)&c->pipe, on_rejected_close);
    return;
  }
  /* Credentials that cannot be read reject the peer; cr is only looked at once it was filled
   * (it is not initialised, so logging it then would print stack garbage). */
  uv_os_fd_t fd;
  struct ucred cr;
  socklen_t len = sizeof(cr);
  int err = 0;
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0) err = EBADF;
  else if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) err = errno;
  else if (len != sizeof(cr)) err = EPROTO;
  if (err) {
    s->stats.rejected_peers++;
    ts_log(TS_LOG_WARN, "cannot read the peer's credentials; connection closed", "{s:s}",
           "error", strerror(err));
    uv_close((uv_handle_t *)&c->pipe, on_rejected_close);
    return;
  }
  if (!peer_allowed(s, &cr)) {
    s->stats.rejected_peers++;
    ts_log(TS_LOG_WARN, "peer not allowed; connection closed", "{s:i, s:i, s:i}", "uid",
           (int)cr.uid, "gid", (int)cr.gid, "pid", (int)cr.pid);
    uv_close((uv_handle_t *)&c->pipe, on_rejected_close);
    return;
  }
  c->uid = cr.uid;
  c->gid = cr.gid;
  c->pid = cr.pid;
  c->admin = ts_idlist_has(&s->cfg->admin_uids, cr.uid);
  c->server = s;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->n_conns++;
  s->stats.accepted++;
  ts_conn_accepted(s, c);
}

/* Every connection is gone: the loop handles and pools go too. */
static void drained(ts_server *s) {
  ts_conn_loop_close(s);
  if (s->on_drained) s->on_drained(s);
}

void ts_server_conn_gone(ts_server *s, ts_conn *c) {
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->n_conns--;
  if (s->accept_pending && s->listening && !s->draining) accept_one(s);
  if (s->draining && s->n_conns == 0) {
    uv_timer_stop(&s->drain_timer);
    drained(s);
  }
}

static void on_drain_timeout(uv_timer_t *t) {
  ts_server *s = t->data;
  ts_log(TS_LOG_WARN, "shutdown timeout: closing connections that did not drain", "{s:i}",
         "connections", (int)s->n_conns);
  for (ts_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    ts_conn_close(c, "shutdown timeout");
  }
}

void ts_server_drain(ts_server *s) {
  if (s->draining) return;
  s->draining = true;
  ts_notify("STOPPING=1");
  ts_log(TS_LOG_INFO, "draining", "{s:i}", "connections", (int)s->n_conns);
  if (s->on_drain) s->on_drain(s);
  if (s->listening) {
    uv_close((uv_handle_t *)&s->listener, NULL);
    s->listening = false;
  }
  uv_close((uv_handle_t *)&s->sig_term, NULL);
  uv_close((uv_handle_t *)&s->sig_int, NULL);
  uv_close((uv_handle_t *)&s->sig_hup, NULL);
  if (s->n_conns == 0) {
    drained(s);
    return;
  }
  uv_timer_start(&s->drain_timer, on_drain_timeout, (uint64_t)s->cfg->shutdown_timeout_ms, 0);
  for (ts_conn *c = s->conns, *next; c; c = next) {
    next = c->next; /* ts_conn_start_drain may close c */
    ts_conn_start_drain(c);
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  ts_server *s = h->data;
  if (signum == SIGHUP) {
    ts_log(TS_LOG_INFO, "SIGHUP: reloading", NULL);
    if (s->on_reload) s->on_reload(s);
    return;
  }
  ts_log(TS_LOG_INFO, "signal received", "{s:s}", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  ts_server_drain(s);
}

static int listen_on_socket(ts_server *s) {
  const char *path = s->cfg->socket_path;
  int rc = make_parent_dirs(path);
  if (rc < 0) {
    ts_log(TS_LOG_ERROR, "cannot create the socket directory", "{s:s, s:s}", "socket", path,
           "error", strerror(-rc));
    return TS_ECONFIG;
  }
  if ((rc = clear_stale_socket(path)) != 0) return rc;
  if (uv_pipe_init(s->loop, &s->listener, 0) != 0) return TS_EINTERNAL;
  s->listener.data = s;
  mode_t old = umask(0117); /* the socket file is born 0660 */
  rc = uv_pipe_bind(&s->listener, path);
  umask(old);
  if (rc == 0) rc = chmod(path, 0660) == 0 ? 0 : -errno;
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
  if (rc != 0) {
    ts_log(TS_LOG_ERROR, "cannot listen on the socket", "{s:s, s:s}", "socket", path, "error",
           uv_strerror(rc));
    uv_close((uv_handle_t *)&s->listener, NULL);
    return TS_ECONFIG;
  }
  s->listening = true;
  return 0;
}

int ts_server_start(ts_server *s, uv_loop_t *loop, const ts_config *cfg, struct ts_domain *d) {
  s->loop = loop;
  s->cfg = cfg;
  s->domain = d;
  s->started_ms = uv_now(loop);
  int rc = listen_on_socket(s);
  if (rc != 0) return rc;
  uv_timer_init(loop, &s->drain_timer);
  s->drain_timer.data = s;
  uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_hup};
  int nums[] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(loop, sigs[i]);
    sigs[i]->data = s;
    uv_signal_start(sigs[i], on_signal, nums[i]);
  }
  ts_log(TS_LOG_INFO, "listening", "{s:s, s:i, s:i}", "socket", cfg->socket_path,
         "max_connections", (int)cfg->max_connections, "max_message", (int)cfg->max_message);
  return 0;
}
