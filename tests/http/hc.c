/* tests/http/hc.c: the HTTP test helpers (see hc.h). Owner: the HTTP edge's tests. */
#include "hc.h"

/* Truncated names in messages and keys are fine here: the parser refuses long lines first. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include "tt.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...) tt_fail(__FILE__, __LINE__, __VA_ARGS__)

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int hc_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
    FAIL("no free port: %s", strerror(errno));
  close(fd);
  return ntohs(sa.sin_port);
}

static int try_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) return fd;
  if (fd >= 0) close(fd);
  return -1;
}

bool hc_wait_port(int port, int deadline_ms) {
  long long end = now_ms() + deadline_ms;
  for (;;) {
    int fd = try_connect(port);
    if (fd >= 0) {
      close(fd);
      return true;
    }
    if (now_ms() > end) return false;
    poll(NULL, 0, 20); /* the next attempt; the condition is the port accepting */
  }
}

int hc_connect(int port) {
  int fd = try_connect(port);
  if (fd < 0) FAIL("cannot connect to port %d: %s", port, strerror(errno));
  return fd;
}

void hc_send(int fd, const char *data, size_t len) {
  while (len) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return; /* the peer closed: the caller's read tells */
    data += n;
    len -= (size_t)n;
  }
}

void hc_send_str(int fd, const char *s) { hc_send(fd, s, strlen(s)); }

/* Reads into buf[*len..cap) until more arrives, EOF (0) or the deadline (-1). */
static int read_more(int fd, char *buf, size_t *len, size_t cap, long long end) {
  for (;;) {
    long long left = end - now_ms();
    if (left <= 0) return -1;
    struct pollfd p = {fd, POLLIN, 0};
    int rc = poll(&p, 1, (int)left);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return -1;
    ssize_t n = recv(fd, buf + *len, cap - *len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    *len += (size_t)n;
    return 1;
  }
}

/* Bytes read past one response, kept per fd for the next hc_read (pipelining). */
static char spill[1 << 16];
static size_t spill_len;
static int spill_fd = -1;

int hc_read(int fd, hc_resp *r, int deadline_ms, bool head) {
  static char buf[sizeof(r->head) + sizeof(r->body)];
  size_t len = 0;
  if (spill_fd == fd && spill_len) {
    memcpy(buf, spill, spill_len);
    len = spill_len;
  }
  spill_len = 0;
  long long end = now_ms() + deadline_ms;
  memset(r, 0, offsetof(hc_resp, body));
  r->body_len = 0;
  char *hend;
  for (;;) {
    buf[len] = 0;
    if ((hend = strstr(buf, "\r\n\r\n"))) break;
    if (len >= sizeof(r->head) - 1 || read_more(fd, buf, &len, sizeof(buf) - 1, end) <= 0)
      return -1;
  }
  size_t hl = (size_t)(hend - buf) + 4;
  memcpy(r->head, buf, hl);
  r->head[hl] = 0;
  if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return -1;
  char v[64];
  size_t cl = 0;
  if (!head && r->status != 304 && r->status != 204 && hc_header(r, "Content-Length", v, sizeof(v)))
    cl = strtoul(v, NULL, 10);
  if (cl >= sizeof(r->body)) return -1;
  while (len - hl < cl)
    if (read_more(fd, buf, &len, sizeof(buf) - 1, end) <= 0) return -1;
  memcpy(r->body, buf + hl, cl);
  r->body[cl] = 0;
  r->body_len = cl;
  spill_len = len - hl - cl;
  if (spill_len > sizeof(spill)) spill_len = sizeof(spill);
  memcpy(spill, buf + hl + cl, spill_len);
  spill_fd = fd;
  return 0;
}

bool hc_wait_closed(int fd, int deadline_ms) {
  long long end = now_ms() + deadline_ms;
  char buf[4096];
  for (;;) {
    size_t len = 0;
    int rc = read_more(fd, buf, &len, sizeof(buf), end);
    if (rc == 0) return true;
    if (rc < 0) return false;
  }
}

void hc_request(int port, const char *raw, hc_resp *r) {
  int fd = hc_connect(port);
  hc_send_str(fd, raw);
  if (hc_read(fd, r, 10000, strncmp(raw, "HEAD ", 5) == 0) != 0)
    FAIL("no response from port %d", port);
  close(fd);
}

void hc_get(int port, const char *path, const char *headers, hc_resp *r) {
  char raw[16384];
  snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sConnection: close\r\n\r\n",
           path, port, headers ? headers : "");
  hc_request(port, raw, r);
}

const char *hc_header(const hc_resp *r, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ') v++;
      const char *e = strstr(v, "\r\n");
      size_t n = e ? (size_t)(e - v) : strlen(v);
      if (n >= cap) n = cap - 1;
      memcpy(out, v, n);
      out[n] = 0;
      return out;
    }
  }
  return NULL;
}

/* ---- the upstream ------------------------------------------------------------------- */

static void serve_one(int fd) {
  char buf[65536];
  size_t len = 0;
  for (;;) {
    buf[len] = 0;
    char *e = strstr(buf, "\r\n\r\n");
    if (e) {
      size_t hl = (size_t)(e - buf) + 4;
      char head[256];
      int n = snprintf(head, sizeof(head),
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                       hl);
      hc_send(fd, head, (size_t)n);
      hc_send(fd, buf, hl);
      memmove(buf, buf + hl, len - hl);
      len -= hl;
      continue;
    }
    if (len >= sizeof(buf) - 1) break;
    ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
    if (n <= 0) break;
    len += (size_t)n;
  }
  close(fd);
}

pid_t hc_upstream(int port) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(l, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(l, 64) != 0)
    FAIL("upstream cannot listen on %d: %s", port, strerror(errno));
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    signal(SIGCHLD, SIG_IGN); /* connection children reap themselves */
    for (;;) {
      int fd = accept(l, NULL, NULL);
      if (fd < 0) continue;
      if (fork() == 0) {
        close(l);
        serve_one(fd);
        _exit(0);
      }
      close(fd);
    }
  }
  close(l);
  return pid;
}

/* ---- proxies ------------------------------------------------------------------------ */

bool hc_have(const char *path) { return access(path, X_OK) == 0; }

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) FAIL("cannot write %s", path);
}

static pid_t spawn(const char *const *argv, const char *log) {
  pid_t pid = fork();
  if (pid < 0) FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  return pid;
}

static void await_port(pid_t pid, int port, const char *what, const char *log) {
  if (hc_wait_port(port, 15000)) return;
  kill(pid, SIGKILL);
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "tail -n 20 %s >&2", log);
  if (system(cmd) != 0) { /* the log is only for the reader */ }
  FAIL("%s did not listen on %d", what, port);
}

pid_t hc_start_nginx(const char *dir, int port, int tessera_port, int app_port) {
  char conf[8192], path[512], log[512];
  snprintf(conf, sizeof(conf),
           "# made by tests/http/hc.c: only the ports and paths; the auth part is deploy/nginx/\n"
           "daemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
           "events { worker_connections 512; }\n"
           "http {\n  access_log off;\n"
           "  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n"
           "  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n  scgi_temp_path %s/scgi;\n"
           "  upstream tessera { server 127.0.0.1:%d; keepalive 32; }\n"
           "  upstream app { server 127.0.0.1:%d; }\n"
           "  server {\n    listen 127.0.0.1:%d;\n"
           "    include %s/deploy/nginx/tessera-auth.conf;\n"
           "    location / {\n      include %s/deploy/nginx/tessera-protect.conf;\n"
           "      proxy_pass http://app;\n    }\n"
           "    location = /bench-return-200 { return 200; }\n"
           "  }\n}\n",
           dir, dir, dir, dir, dir, dir, dir, tessera_port, app_port, port, TT_SOURCE_DIR,
           TT_SOURCE_DIR);
  snprintf(path, sizeof(path), "%s/nginx.conf", dir);
  write_file(path, conf);
  snprintf(log, sizeof(log), "%s/nginx.out", dir);
  char elog[512];
  snprintf(elog, sizeof(elog), "%s/error.log", dir);
  const char *argv[] = {"/usr/sbin/nginx", "-e", elog, "-p", dir, "-c", path, NULL};
  pid_t pid = spawn(argv, log);
  await_port(pid, port, "nginx", elog);
  return pid;
}

pid_t hc_start_caddy(const char *dir, int port, int tessera_port, int app_port) {
  char v[512], log[512], conf[512];
  snprintf(v, sizeof(v), "%d", port);
  setenv("CADDY_PORT", v, 1);
  snprintf(v, sizeof(v), "127.0.0.1:%d", tessera_port);
  setenv("TESSERA_HTTP", v, 1);
  snprintf(v, sizeof(v), "127.0.0.1:%d", app_port);
  setenv("APP_UPSTREAM", v, 1);
  int admin; /* free now, and none of the ports chosen but not yet bound */
  do admin = hc_free_port();
  while (admin == port || admin == tessera_port || admin == app_port);
  snprintf(v, sizeof(v), "127.0.0.1:%d", admin);
  setenv("CADDY_ADMIN", v, 1);
  setenv("HOME", dir, 1);
  snprintf(v, sizeof(v), "%s/data", dir);
  setenv("XDG_DATA_HOME", v, 1);
  snprintf(v, sizeof(v), "%s/config", dir);
  setenv("XDG_CONFIG_HOME", v, 1);
  snprintf(log, sizeof(log), "%s/caddy.log", dir);
  snprintf(conf, sizeof(conf), "%s/deploy/caddy/Caddyfile", TT_SOURCE_DIR);
  const char *argv[] = {"/usr/bin/caddy", "run", "--config", conf, "--adapter", "caddyfile", NULL};
  pid_t pid = spawn(argv, log);
  await_port(pid, port, "caddy", log);
  return pid;
}

void hc_stop(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

/* ---- Prometheus text format 0.0.4, strictly ---------------------------------------------
 * Rules checked: every line is "# HELP name text", "# TYPE name type", another comment, or a
 * sample `name[{label="value",...}] value`; metric and label names are valid identifiers;
 * label values are quoted with only \\ \" \n escapes; a family's TYPE comes once and before
 * its samples, its samples are contiguous; counters are named *_total; histogram samples are
 * name_bucket (with le, cumulative, ending at le="+Inf"), name_sum and name_count, and
 * +Inf == count; no series twice; the text ends with a newline; values parse as floats. */

static char prom_err[256];

static bool is_name(const char *s, size_t n, bool metric) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = isalpha((unsigned char)c) || c == '_' || (metric && c == ':') ||
              (i > 0 && isdigit((unsigned char)c));
    if (!ok) return false;
  }
  return true;
}

#define PERR(...) (snprintf(prom_err, sizeof(prom_err), __VA_ARGS__), prom_err)

static bool ends_with(const char *s, size_t n, const char *suf) {
  size_t sl = strlen(suf);
  return n >= sl && memcmp(s + n - sl, suf, sl) == 0;
}

const char *hc_prom_check(const char *text) {
  size_t tl = strlen(text);
  if (tl == 0 || text[tl - 1] != '\n') return "text does not end with a newline";
  char fam[128] = "", type[16] = "";
  char done[512][128];
  size_t n_done = 0;
  static char seen[4096][256];
  size_t n_seen = 0;
  double last_bucket = -1, last_le = -INFINITY, inf_count = -1;
  char hist_key[256] = "";
  for (const char *line = text; *line;) {
    const char *eol = strchr(line, '\n');
    size_t ll = (size_t)(eol - line);
    char l[1024];
    if (ll >= sizeof(l)) return PERR("line too long");
    memcpy(l, line, ll);
    l[ll] = 0;
    line = eol + 1;
    if (ll == 0) return "empty line";
    if (l[0] == '#') {
      char kw[8], name[128];
      if (sscanf(l, "# %7s %127s", kw, name) == 2 && strcmp(kw, "TYPE") == 0) {
        char t[16] = "";
        if (sscanf(l, "# TYPE %*s %15s", t) != 1) return PERR("TYPE without a type: %s", l);
        if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
            strcmp(t, "summary") && strcmp(t, "untyped"))
          return PERR("unknown type: %s", l);
        if (!is_name(name, strlen(name), true)) return PERR("bad family name: %s", name);
        for (size_t i = 0; i < n_done; i++)
          if (strcmp(done[i], name) == 0) return PERR("TYPE twice for %s", name);
        if (n_done == 512) return "too many families";
        snprintf(done[n_done++], 128, "%s", name);
        if (strcmp(t, "counter") == 0 && !ends_with(name, strlen(name), "_total"))
          return PERR("counter %s is not named *_total", name);
        snprintf(fam, sizeof(fam), "%s", name);
        snprintf(type, sizeof(type), "%s", t);
        hist_key[0] = 0;
      } else if (sscanf(l, "# %7s %127s", kw, name) == 2 && strcmp(kw, "HELP") == 0) {
        if (!is_name(name, strlen(name), true)) return PERR("bad HELP name: %s", name);
      }
      continue;
    }
    /* a sample */
    const char *p = l;
    while (*p && *p != '{' && *p != ' ') p++;
    size_t nl = (size_t)(p - l);
    if (!is_name(l, nl, true)) return PERR("bad metric name: %s", l);
    char name[128];
    snprintf(name, sizeof(name), "%.*s", (int)nl, l);
    if (!fam[0]) return PERR("sample before any TYPE: %s", l);
    size_t fl = strlen(fam);
    const char *suffix = "";
    if (strcmp(type, "histogram") == 0) {
      if (nl < fl || memcmp(name, fam, fl) != 0) return PERR("%s outside its family %s", name, fam);
      suffix = name + fl;
      if (strcmp(suffix, "_bucket") && strcmp(suffix, "_sum") && strcmp(suffix, "_count"))
        return PERR("histogram sample %s", name);
    } else if (strcmp(name, fam) != 0) {
      return PERR("sample %s in family %s", name, fam);
    }
    char labels[512] = "", le[32] = "";
    size_t lbl = 0;
    if (*p == '{') {
      p++;
      while (*p != '}') {
        const char *ls = p;
        while (*p && *p != '=') p++;
        if (!*p || !is_name(ls, (size_t)(p - ls), false)) return PERR("bad label in %s", l);
        bool is_le = (size_t)(p - ls) == 2 && memcmp(ls, "le", 2) == 0;
        if (lbl + (size_t)(p - ls) + 2 < sizeof(labels) && !is_le) {
          memcpy(labels + lbl, ls, (size_t)(p - ls));
          lbl += (size_t)(p - ls);
          labels[lbl++] = '=';
        }
        p++;
        if (*p != '"') return PERR("unquoted label value in %s", l);
        p++;
        size_t vi = 0;
        char val[256];
        while (*p && *p != '"') {
          if (*p == '\\') {
            p++;
            if (*p != '\\' && *p != '"' && *p != 'n') return PERR("bad escape in %s", l);
          }
          if (vi < sizeof(val) - 1) val[vi++] = *p;
          p++;
        }
        val[vi] = 0;
        if (*p != '"') return PERR("unterminated label value in %s", l);
        p++;
        if (is_le) snprintf(le, sizeof(le), "%s", val);
        else if (lbl + vi + 2 < sizeof(labels)) {
          memcpy(labels + lbl, val, vi);
          lbl += vi;
          labels[lbl++] = ',';
        }
        if (*p == ',') p++;
        else if (*p != '}') return PERR("bad label list in %s", l);
      }
      p++;
    }
    labels[lbl] = 0;
    if (*p != ' ') return PERR("no value in %s", l);
    p++;
    char *end;
    double v = strtod(p, &end);
    if (end == p) return PERR("value not a float in %s", l);
    if (*end == ' ') { /* an optional timestamp */
      strtoll(end + 1, &end, 10);
    }
    if (*end) return PERR("junk after the value in %s", l);
    char key[256];
    snprintf(key, sizeof(key), "%s{%s le=%s}", name, labels, le);
    for (size_t i = 0; i < n_seen; i++)
      if (strcmp(seen[i], key) == 0) return PERR("series twice: %s", key);
    if (n_seen < 4096) snprintf(seen[n_seen++], 256, "%s", key);
    if (strcmp(type, "histogram") == 0) {
      if (strcmp(suffix, "_bucket") == 0) {
        if (!le[0]) return PERR("bucket without le: %s", l);
        double lev = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, NULL);
        if (strcmp(hist_key, labels) != 0) {
          snprintf(hist_key, sizeof(hist_key), "%s", labels);
          last_bucket = -1;
          last_le = -INFINITY;
        }
        if (lev <= last_le) return PERR("buckets out of order in %s", l);
        if (v < last_bucket) return PERR("buckets not cumulative in %s", l);
        last_le = lev;
        last_bucket = v;
        if (isinf(lev)) inf_count = v;
      } else if (strcmp(suffix, "_count") == 0) {
        if (v != inf_count) return PERR("_count != +Inf bucket in %s", l);
      }
    } else if (le[0]) {
      return PERR("le label outside a histogram: %s", l);
    }
    if (strcmp(type, "counter") == 0 && v < 0) return PERR("negative counter %s", l);
  }
  return NULL;
}

double hc_prom_value(const char *text, const char *series) {
  size_t sl = strlen(series);
  for (const char *line = text; line && *line;) {
    if (strncmp(line, series, sl) == 0 && line[sl] == ' ') return strtod(line + sl + 1, NULL);
    line = strchr(line, '\n');
    if (line) line++;
  }
  return -1;
}
