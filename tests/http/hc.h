/* tests/http/hc.h: what the HTTP edge's tests share: a raw HTTP/1.1 client with deadlines,
 * free loopback ports, a tiny upstream that echoes the headers it got, starting nginx and
 * Caddy on the example configs of deploy/, and a strict Prometheus text-format parser.
 *
 * Owner: the HTTP edge's tests (issue 13). Every wait is for a condition (a reply, a port
 * accepting, EOF) with a deadline; failures end the test case (tt_fail). */
#ifndef HC_H
#define HC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct hc_resp {
  int status;
  char head[16384]; /* status line and headers, NUL-terminated */
  char body[65536 * 4];
  size_t body_len;
} hc_resp;

/* A loopback TCP port nothing listens on right now. */
int hc_free_port(void);
/* Waits (deadline ms) until 127.0.0.1:port accepts; false if it never did. */
bool hc_wait_port(int port, int deadline_ms);
/* A blocking connection to 127.0.0.1:port (fails the test if refused). */
int hc_connect(int port);
void hc_send(int fd, const char *data, size_t len);
void hc_send_str(int fd, const char *s);
/* Reads one response (Content-Length framed; HEAD: headers only). Returns 0, or -1 when the
 * peer closed or the deadline passed before a whole response arrived. */
int hc_read(int fd, hc_resp *r, int deadline_ms, bool head);
/* Waits for EOF (true) or the deadline (false); bytes before EOF are discarded. */
bool hc_wait_closed(int fd, int deadline_ms);
/* Connects, sends raw, reads one response, closes. Fails the test if no response. */
void hc_request(int port, const char *raw, hc_resp *r);
/* A GET of path with extra header lines (each ending in \r\n; may be NULL). */
void hc_get(int port, const char *path, const char *headers, hc_resp *r);
/* The value of header name in r (case-insensitive), copied into out; NULL if absent. */
const char *hc_header(const hc_resp *r, const char *name, char *out, size_t cap);

/* Forks an upstream on port: answers every request 200 with the request's header block as
 * its body. Killed with its test case (the runner kills the process group). */
pid_t hc_upstream(int port);

/* nginx with deploy/nginx/ (tessera-auth.conf, tessera-protect.conf) in front of app_port, auth by tessera_port; returns its
 * pid (waited for its port). dir: a temp dir for its config, pid file, logs. */
pid_t hc_start_nginx(const char *dir, int port, int tessera_port, int app_port);
/* Caddy with deploy/caddy/Caddyfile, likewise. */
pid_t hc_start_caddy(const char *dir, int port, int tessera_port, int app_port);
void hc_stop(pid_t pid);
/* Whether the program exists (the proxy tests skip without it, saying so). */
bool hc_have(const char *path);

/* Strict Prometheus text format 0.0.4 check (see hc.c for the rules); returns NULL, or
 * what is wrong (static storage). */
const char *hc_prom_check(const char *text);
/* The value of the sample written exactly as series (e.g. `a_total{k="v"}`), or -1. */
double hc_prom_value(const char *text, const char *series);

#endif
