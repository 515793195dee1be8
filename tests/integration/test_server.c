/* tests/integration/test_server.c: the foundation, against the real daemon: the wire limits,
 * the door, backpressure, the connection cap, graceful stop, the client library and the CLI. */
#include "calls.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include <tessera/tessera.h>

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void ping_answers(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *r = tc_call_ok(c, "sys.ping", NULL);
  TT_ASSERT(json_is_string(json_object_get(r, "version")));
  long long now = json_integer_value(json_object_get(r, "now"));
  TT_ASSERT(now > 1700000000 && llabs(now - (long long)time(NULL)) < 5);
  json_decref(r);
  r = tc_call_ok(c, "sys.ping", json_object());
  json_decref(r);
  TT_EQ_INT(tc_stat(c, "method.sys.ping"), 2);
  TT_EQ_INT(tc_stat(c, "connections"), 1);
  tessera_close(c);
  TT_ASSERT(WIFEXITED(td_stop(&d)));
  td_cleanup(&d);
}

static void errors_are_named(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *r = NULL;
  tessera_error err;
  TT_EQ_INT(tessera_call(c, "no.such", NULL, 5000, &r, &err), TESSERA_EREMOTE);
  TT_EQ_STR(err.code, "unknown_method");
  json_t *p = json_pack("{s:i}", "bogus", 1);
  TT_EQ_INT(tessera_call(c, "sys.ping", p, 5000, &r, &err), TESSERA_EREMOTE);
  TT_EQ_STR(err.code, "bad_request");
  TT_ASSERT(strstr(err.message, "bogus") != NULL);
  TT_ASSERT(r == NULL);
  json_decref(p);
  TT_EQ_INT(tc_stat(c, "error.bad_request"), 1);
  TT_EQ_INT(tc_stat(c, "error.unknown_method"), 1);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

/* {key: value (n raw bytes)} plus, when extra_key is set, {extra_key: extra_val}; packed. */
static void pack_params(msgpack_sbuffer *sb, const char *key, const char *value, size_t n,
                        const char *extra_key, const char *extra_val) {
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, extra_key ? 2 : 1);
  msgpack_pack_str_with_body(&pk, key, strlen(key));
  msgpack_pack_str_with_body(&pk, value, n);
  if (extra_key) {
    msgpack_pack_str_with_body(&pk, extra_key, strlen(extra_key));
    msgpack_pack_str_with_body(&pk, extra_val, strlen(extra_val));
  }
}

/* Apps pass whatever the cookie or header held: an empty or garbage sid/token (too long, not
 * UTF-8, a NUL inside) is unauthenticated, or {revoked: 0} for the revoke methods, never
 * bad_request, so that every such answer maps to a 401. A wrong type stays bad_request. A
 * method name that is not valid UTF-8 is bad_request. */
static void bad_credentials_are_unauthenticated(void) {
  td_daemon d;
  td_start(&d, NULL);
  static const struct {
    const char *method, *key, *extra_key, *extra_val, *code;
  } methods[] = {
      {"session.validate", "sid", NULL, NULL, "unauthenticated"},
      {"session.rotate", "sid", NULL, NULL, "unauthenticated"},
      {"session.revoke", "sid", NULL, NULL, ""},
      {"session.exchange", "token", "purpose", "login", "unauthenticated"},
      {"token.verify", "token", NULL, NULL, "unauthenticated"},
      {"token.consume", "token", "purpose", "login", "unauthenticated"},
      {"token.refresh", "refresh_token", NULL, NULL, "unauthenticated"},
      {"token.revoke", "token", NULL, NULL, ""},
  };
  static char big[20000];
  memset(big, 'A', sizeof(big));
  static const struct {
    const char *bytes;
    size_t n;
  } values[] = {{"", 0},       {"garbage", 7},  {"\xff\xfe", 2}, {"a\0b", 3},
                {"a.b.c", 5},  {"\xc3", 1},     {big, 9000},    {big, sizeof(big)}};
  for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
      msgpack_sbuffer sb;
      msgpack_sbuffer_init(&sb);
      pack_params(&sb, methods[m].key, values[i].bytes, values[i].n, methods[m].extra_key,
                  methods[m].extra_val);
      char code[32];
      tw_call_raw(d.socket, methods[m].method, strlen(methods[m].method), sb.data, sb.size, code,
                  sizeof(code));
      TT_ASSERT_MSG(strcmp(code, methods[m].code) == 0, "%s value %zu: got '%s', expected '%s'",
                    methods[m].method, i, code, methods[m].code);
      msgpack_sbuffer_destroy(&sb);
    }
  }
  /* The revoke methods answer {revoked: 0}, and a wrong type is still bad_request. */
  tessera_client *c = tc_client(&d);
  json_t *r = tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", ""));
  TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), 0);
  json_decref(r);
  r = tc_call_ok(c, "session.revoke", json_pack("{s:s}", "sid", ""));
  TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), 0);
  json_decref(r);
  json_t *p = json_pack("{s:i}", "sid", 42);
  tessera_error err;
  TT_EQ_INT(tessera_call(c, "session.validate", p, 10000, &r, &err), TESSERA_EREMOTE);
  TT_EQ_STR(err.code, "bad_request");
  json_decref(p);
  tessera_close(c);
  /* Method names: not UTF-8 is bad_request; valid but unknown is unknown_method. */
  char code[32];
  tw_call_raw(d.socket, "sys.ping\xff", 9, NULL, 0, code, sizeof(code));
  TT_EQ_STR(code, "bad_request");
  tw_call_raw(d.socket, "\xc0\xae", 2, NULL, 0, code, sizeof(code));
  TT_EQ_STR(code, "bad_request");
  tw_call_raw(d.socket, "sys.p\xc3\xafng", 7, NULL, 0, code, sizeof(code));
  TT_EQ_STR(code, "unknown_method");
  TT_ASSERT(WIFEXITED(td_stop(&d)));
  td_cleanup(&d);
}

/* Bad shapes with a good msgid answer bad_request on a connection that stays open. */
static void bad_shapes_get_bad_request(void) {
  td_daemon d;
  td_start(&d, NULL);
  static const uint8_t method_int[] = {0x94, 0x00, 0x07, 0x05, 0x90};        /* method 5 */
  static const uint8_t params_map[] = {0x94, 0x00, 0x08, 0xa1, 'x', 0x80};   /* params {} */
  static const uint8_t params_two[] = {0x94, 0x00, 0x09, 0xa1, 'x', 0x92, 0x80, 0x80};
  static const uint8_t key_int[] = {0x94, 0x00, 0x0a, 0xa8, 's', 'y', 's', '.', 'p', 'i', 'n', 'g',
                                    0x91, 0x81, 0x01, 0x02};
  const uint8_t *msgs[] = {method_int, params_map, params_two, key_int};
  size_t lens[] = {sizeof(method_int), sizeof(params_map), sizeof(params_two), sizeof(key_int)};
  int fd = tw_connect(d.socket);
  tw_reader rd;
  tw_reader_init(&rd, fd);
  for (int i = 0; i < 4; i++) {
    TT_ASSERT(tw_send(fd, msgs[i], lens[i]));
    uint32_t id;
    char code[32];
    TT_ASSERT(tw_read_response(&rd, 5000, &id, code, sizeof(code)));
    TT_EQ_INT(id, 7 + i);
    TT_EQ_STR(code, "bad_request");
  }
  /* A client notification is ignored; the next request is answered (pynvim sends one first). */
  static const uint8_t note[] = {0x93, 0x02, 0xa1, 'x', 0x90};
  TT_ASSERT(tw_send(fd, note, sizeof(note)));
  TT_ASSERT(tw_send_request(fd, 42, "sys.ping"));
  uint32_t id;
  char code[32];
  TT_ASSERT(tw_read_response(&rd, 5000, &id, code, sizeof(code)));
  TT_EQ_INT(id, 42);
  TT_EQ_STR(code, "");
  tw_reader_destroy(&rd);
  close(fd);
  td_stop(&d);
  td_cleanup(&d);
}

/* Every hostile input of PROTOCOL.md's limits table. */
typedef struct hostile {
  const char *name;
  uint8_t bytes[80];
  size_t len;
} hostile;

static size_t deep_nesting(uint8_t *b) {
  size_t n = 0;
  b[n++] = 0x94; b[n++] = 0x00; b[n++] = 0x01; b[n++] = 0xa1; b[n++] = 'x';
  b[n++] = 0x91; /* params array */
  for (int i = 0; i < 9; i++) b[n++] = 0x91; /* nine levels inside params: one too many */
  b[n++] = 0x01;
  return n;
}

static void hostile_inputs(hostile *h, size_t *count) {
  size_t n = 0;
#define H(nm, ...) do { static const uint8_t b_[] = {__VA_ARGS__}; h[n].name = nm; \
    memcpy(h[n].bytes, b_, sizeof(b_)); h[n].len = sizeof(b_); n++; } while (0)
  H("array32 of 4G", 0xdd, 0xff, 0xff, 0xff, 0xff);
  H("map32 of 4G", 0xdf, 0xff, 0xff, 0xff, 0xff);
  H("str32 of 4G", 0xdb, 0xff, 0xff, 0xff, 0xff);
  H("bin32 of 4G", 0xc6, 0xff, 0xff, 0xff, 0xff);
  H("str32 in params", 0x94, 0x00, 0x01, 0xa1, 'x', 0x91, 0x81, 0xa1, 'k', 0xdb, 0x7f, 0xff, 0xff, 0xff);
  H("ext type", 0x94, 0x00, 0x01, 0xa1, 'x', 0x91, 0x81, 0xa1, 'k', 0xd4, 0x01, 0x02);
  H("msgid over 32 bits", 0x94, 0x00, 0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xa1, 'x', 0x90);
  H("negative msgid", 0x94, 0x00, 0xff, 0xa1, 'x', 0x90);
  H("response from client", 0x94, 0x01, 0x01, 0xc0, 0xc0);
  H("not an array", 0xa3, 'a', 'b', 'c');
  H("byte 0xc1", 0xc1);
#undef H
  h[n].name = "nesting 9 deep";
  h[n].len = deep_nesting(h[n].bytes);
  n++;
  *count = n;
}

static void hostile_input_closes_only_that_connection(void) {
  td_daemon d;
  td_start(&d, NULL);
  hostile h[16];
  size_t n;
  hostile_inputs(h, &n);
  tessera_client *bystander = tc_client(&d);
  for (size_t i = 0; i < n; i++) {
    int fd = tw_connect(d.socket);
    TT_ASSERT(tw_send(fd, h[i].bytes, h[i].len));
    TT_ASSERT_MSG(tw_closed_within(fd, 5000), "%s: connection not closed", h[i].name);
    close(fd);
    json_decref(tc_call_ok(bystander, "sys.ping", NULL)); /* the open connection keeps working */
  }
  TT_EQ_INT(tc_stat(bystander, "connections_closed_protocol"), (long long)n);
  tessera_close(bystander);
  td_stop(&d);
  td_cleanup(&d);
}

static void message_over_limit_closes(void) {
  td_daemon d;
  td_start(&d, NULL);
  /* 70,000 bytes of small items in params: over the 64 KiB limit long before it ends. */
  int fd = tw_connect(d.socket);
  uint8_t head[] = {0x94, 0x00, 0x01, 0xa1, 'x', 0x91, 0xdd, 0x00, 0x00, 0xff, 0xff};
  TT_ASSERT(tw_send(fd, head, sizeof(head)));
  uint8_t zeros[4096] = {0};
  for (int i = 0; i < 17; i++)
    if (!tw_send(fd, zeros, sizeof(zeros))) break; /* the daemon may close while we write */
  TT_ASSERT(tw_closed_within(fd, 5000));
  close(fd);
  tc_ping(&d);
  td_stop(&d);
  td_cleanup(&d);
}

static void hostile_connections_keep_memory_flat(void) {
  td_daemon d;
  td_start(&d, NULL);
  hostile h[16];
  size_t n;
  hostile_inputs(h, &n);
  for (int i = 0; i < 50; i++) { /* warm up the allocator */
    int fd = tw_connect(d.socket);
    tw_send(fd, h[i % n].bytes, h[i % n].len);
    TT_ASSERT(tw_closed_within(fd, 5000));
    close(fd);
  }
  long before = td_rss_kib(&d);
  for (int i = 0; i < 1000; i++) {
    int fd = tw_connect(d.socket);
    tw_send(fd, h[i % n].bytes, h[i % n].len);
    TT_ASSERT_MSG(tw_closed_within(fd, 5000), "%s: not closed", h[i % n].name);
    close(fd);
  }
  long after = td_rss_kib(&d);
  fprintf(stderr, "rss before %ld KiB, after 1000 hostile connections %ld KiB\n", before, after);
  /* ASan keeps freed memory in quarantine: RSS says nothing there (tests/run sets this). */
  if (!getenv("TT_SANITIZED"))
    TT_ASSERT_MSG(after - before < 10 * 1024, "RSS grew by %ld KiB", after - before);
  tc_ping(&d);
  td_stop(&d);
  td_cleanup(&d);
}

static void dripping_client_is_cut_off(void) {
  static const char *const args[] = {"--message-timeout", "300ms", NULL};
  td_daemon d;
  td_start(&d, args);
  int fd = tw_connect(d.socket);
  /* A 40-byte request, one byte every 50 ms: 2 s in all, far past the 300 ms limit. Each byte
   * arrives well within 300 ms of the last, so only a clock that does not restart fires. */
  uint8_t msg[40] = {0x94, 0x00, 0x01, 0xa8, 's', 'y', 's', '.', 'p', 'i', 'n', 'g', 0x91, 0x81,
                     0xb9};
  memset(msg + 15, 'a', 25);
  bool closed = false;
  for (size_t i = 0; i < sizeof(msg) && !closed; i++) {
    if (!tw_send(fd, msg + i, 1)) closed = true;
    else closed = tw_closed_within(fd, 50);
  }
  TT_ASSERT_MSG(closed || tw_closed_within(fd, 2000), "dripping connection was not closed");
  close(fd);
  tessera_client *c = tc_client(&d);
  TT_EQ_INT(tc_stat(c, "connections_closed_timeout"), 1);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void socket_is_not_world_accessible(void) {
  td_daemon d;
  td_start(&d, NULL);
  struct stat st;
  TT_ASSERT(stat(d.socket, &st) == 0);
  TT_ASSERT(S_ISSOCK(st.st_mode));
  TT_EQ_INT(st.st_mode & 0777, 0660);
  char dir[256];
  snprintf(dir, sizeof(dir), "%s/run", d.dir);
  TT_ASSERT(stat(dir, &st) == 0);
  TT_EQ_INT(st.st_mode & 0777, 0750);
  td_stop(&d);
  td_cleanup(&d);
}

static void disallowed_peer_is_cut_off_before_parsing(void) {
  td_daemon d;
  td_start(&d, NULL);
  /* Let nobody reach the socket file; the daemon's own check must still refuse it. */
  const struct passwd *nobody = tc_open_to_nobody(&d);
  pid_t pid = fork();
  TT_ASSERT(pid >= 0);
  if (pid == 0) {
    if (setgid(nobody->pw_gid) != 0 || setuid(nobody->pw_uid) != 0) _exit(3);
    int fd = tw_connect(d.socket);
    if (!tw_send_request(fd, 1, "sys.ping")) _exit(0); /* closed already: fine */
    tw_reader rd;
    tw_reader_init(&rd, fd);
    const msgpack_object *o = tw_next(&rd, 5000);
    _exit(o == NULL ? 0 : 4); /* EOF without any reply */
  }
  int st;
  waitpid(pid, &st, 0);
  TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "nobody got a reply (status %d)", st);
  tessera_client *c = tc_client(&d);
  TT_EQ_INT(tc_stat(c, "connections_rejected_peer"), 1);
  /* nobody's ping was never parsed: the only requests are these two sys.stats calls. */
  TT_EQ_INT(tc_stat(c, "requests"), 2);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

/* Issue 9, item 2: when SO_PEERCRED cannot be read (forced here by an LD_PRELOAD shim), the
 * peer is rejected before a byte is read and the log line carries the reason, not ids the
 * daemon never learned (it used to log its uninitialised struct as uid/gid/pid). */
static void unreadable_peer_credentials_reject(void) {
  td_daemon d;
  TT_ASSERT(setenv("LD_PRELOAD", TT_PEERCRED_FAIL, 1) == 0); /* for the daemon only */
  td_start(&d, NULL);
  TT_ASSERT(unsetenv("LD_PRELOAD") == 0);
  int fd = tw_connect(d.socket);
  tw_send_request(fd, 1, "sys.ping"); /* may fail: closed already */
  TT_ASSERT_MSG(tw_closed_within(fd, 5000), "a peer without credentials was served");
  close(fd);
  int st = td_stop(&d);
  TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tesserad exit status %d", st);
  char *log = td_read_log(&d);
  TT_ASSERT(log != NULL);
  const char *line =
      strstr(log, "\"msg\":\"cannot read the peer's credentials; connection closed\"");
  TT_ASSERT_MSG(line != NULL, "no log line for the refused peer:\n%s", log);
  const char *eol = strchr(line, '\n');
  size_t n = eol ? (size_t)(eol - line) : strlen(line);
  char one[512];
  snprintf(one, sizeof(one), "%.*s", (int)(n < sizeof(one) - 1 ? n : sizeof(one) - 1), line);
  TT_ASSERT_MSG(strstr(one, "\"error\":") && !strstr(one, "\"uid\"") && !strstr(one, "\"pid\""),
                "the refusal logs ids it never read: %s", one);
  TT_ASSERT_MSG(!strstr(log, "peer not allowed"), "logged as a disallowed peer with ids");
  TT_ASSERT_MSG(!strstr(log, "\"msg\":\"connection accepted\""), "the peer was accepted");
  free(log);
  td_cleanup(&d);
}

static void many_connections_pipelining(void) {
  td_daemon d;
  td_start(&d, NULL);
  enum { CONNS = 500, PER = 100 };
  static tessera_client *cs[CONNS];
  static uint32_t ids[CONNS][PER];
  for (int i = 0; i < CONNS; i++) cs[i] = tc_client(&d);
  for (int i = 0; i < CONNS; i++)
    for (int k = 0; k < PER; k++) TT_EQ_INT(tessera_send(cs[i], "sys.ping", NULL, &ids[i][k]), 0);
  long good = 0;
  for (int i = 0; i < CONNS; i++) {
    for (int k = PER - 1; k >= 0; k--) { /* in reverse: replies are matched by msgid */
      json_t *r = NULL;
      tessera_error err;
      int rc = tessera_wait(cs[i], ids[i][k], 30000, &r, &err);
      TT_ASSERT_MSG(rc == 0, "conn %d req %d: %s", i, k, tessera_strerror(rc));
      good += json_is_string(json_object_get(r, "version"));
      json_decref(r);
    }
    tessera_close(cs[i]);
  }
  TT_EQ_INT(good, CONNS * PER);
  td_stop(&d);
  td_cleanup(&d);
}

/* A client that pipelines and never reads: reading pauses, memory stays bounded, and every
 * reply is still there when it finally reads. */
static void non_reading_client_is_paused(void) {
  td_daemon d;
  td_start(&d, NULL);
  enum { N = 20000 };
  int fd = tw_connect(d.socket);
  int sz = 64 * 1024;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
  struct timeval tv = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  uint32_t sent = 0;
  while (sent < N && tw_send_request(fd, sent + 1, "sys.ping")) sent++;
  /* The writes stopped (SO_SNDTIMEO) because the daemon stopped reading. */
  TT_ASSERT_MSG(sent < N, "daemon kept reading %u requests nobody read replies to", sent);
  tessera_client *c = tc_client(&d);
  TT_ASSERT(tc_stat(c, "read_pauses") >= 1);
  long rss = td_rss_kib(&d);
  if (!getenv("TT_SANITIZED")) TT_ASSERT_MSG(rss < 64 * 1024, "daemon RSS %ld KiB", rss);
  tessera_close(c);
  tw_reader rd;
  tw_reader_init(&rd, fd);
  /* Read everything; send the rest as room appears. */
  uint32_t got = 0, expect = 1;
  tv.tv_sec = 0;
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  while (got < sent) {
    uint32_t id;
    char code[32];
    TT_ASSERT(tw_read_response(&rd, 10000, &id, code, sizeof(code)));
    TT_EQ_INT(id, expect);
    TT_EQ_STR(code, "");
    expect++;
    got++;
  }
  tw_reader_destroy(&rd);
  close(fd);
  td_stop(&d);
  td_cleanup(&d);
}

static void connection_cap_sheds_new_connections(void) {
  static const char *const args[] = {"--max-connections", "4", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *cs[4];
  for (int i = 0; i < 4; i++) {
    cs[i] = tc_client(&d);
    json_decref(tc_call_ok(cs[i], "sys.ping", NULL));
  }
  tessera_client *waiting = tc_client(&d); /* connects: the kernel's backlog holds it */
  uint32_t id;
  TT_EQ_INT(tessera_send(waiting, "sys.ping", NULL, &id), 0);
  for (int i = 0; i < 4; i++) json_decref(tc_call_ok(cs[i], "sys.ping", NULL)); /* still served */
  TT_EQ_INT(tc_stat(cs[0], "connections"), 4);
  tessera_close(cs[3]);
  json_t *r = NULL;
  TT_EQ_INT(tessera_wait(waiting, id, 10000, &r, NULL), 0); /* admitted once a slot freed */
  json_decref(r);
  for (int i = 0; i < 3; i++) tessera_close(cs[i]);
  tessera_close(waiting);
  td_stop(&d);
  td_cleanup(&d);
}

/* SIGTERM under load: every request the daemon read is answered, in order, then EOF; exit 0. */
static void sigterm_under_load_answers_what_was_read(void) {
  td_daemon d;
  td_start(&d, NULL);
  enum { CONNS = 10, PER = 2000 };
  int fds[CONNS];
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  for (uint32_t k = 1; k <= PER; k++) {
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint32(&pk, k);
    msgpack_pack_str_with_body(&pk, "sys.ping", 8);
    msgpack_pack_array(&pk, 0);
  }
  tw_reader rds[CONNS];
  for (int i = 0; i < CONNS; i++) {
    fds[i] = tw_connect(d.socket);
    TT_ASSERT(tw_send(fds[i], sb.data, sb.size));
    tw_reader_init(&rds[i], fds[i]);
  }
  uint32_t id;
  char code[32];
  TT_ASSERT(tw_read_response(&rds[0], 5000, &id, code, sizeof(code))); /* it is busy */
  kill(d.pid, SIGTERM);
  long total = 1;
  for (int i = 0; i < CONNS; i++) {
    uint32_t expect = i == 0 ? 2 : 1;
    while (tw_read_response(&rds[i], 10000, &id, code, sizeof(code))) {
      TT_EQ_INT(id, expect); /* no reply lost in the middle */
      TT_EQ_STR(code, "");
      expect++;
      total++;
    }
    tw_reader_destroy(&rds[i]);
    close(fds[i]);
  }
  int st;
  waitpid(d.pid, &st, 0);
  d.pid = 0;
  TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  char *log = td_read_log(&d);
  char want[64];
  snprintf(want, sizeof(want), "\"msg\":\"drained\",\"requests\":%ld}", total);
  TT_ASSERT_MSG(strstr(log, want) != NULL, "replies %ld do not match the requests read", total);
  free(log);
  msgpack_sbuffer_destroy(&sb);
  td_cleanup(&d);
}

static void stale_socket_is_replaced_but_not_a_file(void) {
  td_daemon d;
  td_start(&d, NULL);
  td_kill9(&d); /* leaves the socket file behind */
  td_launch(&d, NULL);
  tc_ping(&d);
  td_stop(&d);
  /* A regular file where the socket should be: refused, and left alone. */
  FILE *f = fopen(d.socket, "w");
  TT_ASSERT(f != NULL);
  fclose(f);
  char cmd[768];
  snprintf(cmd, sizeof(cmd), "%s --socket %s --data %s --keys %s 2>/dev/null", TESSERAD_PATH, d.socket,
           d.data, d.keys);
  int st = system(cmd);
  TT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0);
  struct stat sb;
  TT_ASSERT(stat(d.socket, &sb) == 0 && S_ISREG(sb.st_mode));
  td_cleanup(&d);
}

static void cli_ping_stats_and_call(void) {
  td_daemon d;
  td_start(&d, NULL);
  char out[8192];
  static const char *const ping[] = {"ping", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), NULL, 0, ping), 0);
  json_t *j = json_loads(out, 0, NULL);
  TT_ASSERT_MSG(j && json_is_string(json_object_get(j, "version")), "ping printed: %s", out);
  json_decref(j);
  static const char *const stats[] = {"stats", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), NULL, 0, stats), 0);
  j = json_loads(out, 0, NULL);
  TT_ASSERT_MSG(j && json_integer_value(json_object_get(j, "method.sys.ping")) == 1, "%s", out);
  json_decref(j);
  static const char *const call[] = {"call", "sys.ping", "{}", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), NULL, 0, call), 0);
  TT_ASSERT(strstr(out, "\"version\"") != NULL);
  static const char *const bad[] = {"call", "sys.ping", "{\"bogus\": true}", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), NULL, 0, bad), 1);
  static const char *const unknown[] = {"call", "nope", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), NULL, 0, unknown), 1);
  td_stop(&d);
  td_cleanup(&d);
}

/* ---- the client library: bounded waits ---------------------------------------------- */

/* A Unix socket that listens and never accepts, its backlog filled (listen(0) queues one). */
static int stuck_listener(const char *path, int *filler) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  TT_ASSERT(fd >= 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  TT_ASSERT(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path) + 1);
  unlink(path);
  TT_ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  TT_ASSERT(listen(fd, 0) == 0);
  /* Fill the backlog: non-blocking connects until the kernel refuses one (EAGAIN). */
  int n = 0;
  for (;; n++) {
    TT_ASSERT_MSG(n < 16, "the backlog never filled");
    filler[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    TT_ASSERT(filler[n] >= 0);
    if (connect(filler[n], (struct sockaddr *)&sa, sizeof(sa)) != 0) {
      TT_ASSERT_MSG(errno == EAGAIN, "filler connect: %s", strerror(errno));
      close(filler[n]);
      break;
    }
  }
  filler[n] = -1;
  return fd;
}

/* Issue 9, item 3: tessera_connect used to block for as long as the daemon's backlog stayed
 * full (the local verifier connects under a mutex). Connect honours a limit, and a call on a
 * connection nobody serves honours its timeout. Deadlines are generous (10x): not a speed test. */
static void client_waits_are_bounded(void) {
  char dir[] = "/tmp/tessera-stuck.XXXXXX", path[128];
  TT_ASSERT(mkdtemp(dir) != NULL);
  snprintf(path, sizeof(path), "%s/stuck.sock", dir);
  int filler[17];
  int lfd = stuck_listener(path, filler);
  tessera_client *c = (tessera_client *)1;
  long long t0 = tc_mono_ms();
  int rc = tessera_connect_timeout(path, 200, &c);
  int saved = errno;
  long long took = tc_mono_ms() - t0;
  TT_EQ_INT(rc, TESSERA_ECONNECT);
  TT_ASSERT(c == NULL);
  TT_ASSERT_MSG(saved == ETIMEDOUT, "errno %s, expected ETIMEDOUT", strerror(saved));
  TT_ASSERT_MSG(took >= 150 && took < 2000, "connect with a 200 ms limit took %lld ms", took);
  t0 = tc_mono_ms(); /* the default limit, as the local verifier uses */
  rc = tessera_connect(path, &c);
  saved = errno;
  took = tc_mono_ms() - t0;
  TT_EQ_INT(rc, TESSERA_ECONNECT);
  TT_ASSERT_MSG(saved == ETIMEDOUT, "errno %s, expected ETIMEDOUT", strerror(saved));
  TT_ASSERT_MSG(took < 10LL * TESSERA_CONNECT_TIMEOUT_MS, "tessera_connect took %lld ms", took);
  /* Room in the backlog: the connection is made, but nobody ever reads it; the call times out. */
  for (int i = 0; filler[i] >= 0; i++) close(filler[i]);
  close(lfd);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, path, strlen(path) + 1);
  unlink(path);
  TT_ASSERT(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 8) == 0);
  TT_EQ_INT(tessera_connect_timeout(path, 200, &c), 0);
  tessera_error err;
  json_t *res = NULL;
  t0 = tc_mono_ms();
  rc = tessera_call(c, "sys.ping", NULL, 200, &res, &err);
  took = tc_mono_ms() - t0;
  TT_EQ_INT(rc, TESSERA_ETIMEDOUT);
  TT_ASSERT(res == NULL);
  TT_ASSERT_MSG(took < 2000, "a call with a 200 ms timeout took %lld ms", took);
  tessera_close(c);
  close(fd);
  unlink(path);
  rmdir(dir);
}

/* One daemon per data directory: a second one on the same --data (another socket) refuses to
 * start and says why; once the first is killed (-9: the kernel drops its lock), the data
 * directory serves again with what was written. */
static void second_daemon_on_one_data_dir_refused(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s = tc_create_sub(c, "lock");
  tessera_close(c);
  td_daemon other;
  td_init(&other);
  snprintf(other.data, sizeof(other.data), "%s", d.data);
  int st = td_launch_refused(&other);
  TT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) != 0);
  char *log = td_read_log(&other);
  TT_ASSERT_MSG(strstr(log, "another tesserad uses this data directory") != NULL, "log: %s", log);
  free(log);
  td_kill9(&d);
  td_launch(&other, NULL);
  c = tc_client(&other);
  tc_expect_valid(c, tc_str(s, "sid"));
  tessera_close(c);
  json_decref(s);
  tc_stop_clean(&other);
  td_cleanup(&d);
}

static const tt_case cases[] = {
    TT_CASE(ping_answers),
    TT_CASE(errors_are_named),
    TT_CASE(bad_shapes_get_bad_request),
    TT_CASE(bad_credentials_are_unauthenticated),
    TT_CASE(hostile_input_closes_only_that_connection),
    TT_CASE(message_over_limit_closes),
    TT_CASE(hostile_connections_keep_memory_flat),
    TT_CASE(dripping_client_is_cut_off),
    TT_CASE(socket_is_not_world_accessible),
    TT_CASE(disallowed_peer_is_cut_off_before_parsing),
    TT_CASE(unreadable_peer_credentials_reject),
    TT_CASE(many_connections_pipelining),
    TT_CASE(non_reading_client_is_paused),
    TT_CASE(connection_cap_sheds_new_connections),
    TT_CASE(sigterm_under_load_answers_what_was_read),
    TT_CASE(stale_socket_is_replaced_but_not_a_file),
    TT_CASE(second_daemon_on_one_data_dir_refused),
    TT_CASE(cli_ping_stats_and_call),
    TT_CASE(client_waits_are_bounded),
};
TT_MAIN(cases)
