/* tests/integration/test_pipeline.c: the request path under pipelining (issue 11, items 1 and
 * 3; sidecar/conn.c): replies of one read batch are coalesced into one write per loop turn,
 * asynchronous replies (the writer's commits) are flushed by the same mechanism, and a
 * connection's work per loop turn is bounded. Asserts on behaviour, never on timings:
 *   - every request of a large pipelined batch, mixing synchronous replies, errors and
 *     durable writes, is answered exactly once, intact, matched by msgid (PROTOCOL.md: replies
 *     may come in any order);
 *   - a connection flooding the daemon with a huge pipeline does not starve another: the other
 *     connection's call is served after at most a budget of the flood's backlog (the daemon
 *     is paused while both queue their requests, so the order is the daemon's alone). */
#include "calls.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include <tessera/tessera.h>

#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* [0, msgid, method, [{key: value}]] (key NULL: []) appended to sb. */
static void pack_request(msgpack_sbuffer *sb, uint32_t msgid, const char *method, const char *key,
                         const char *value) {
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 4);
  msgpack_pack_uint32(&pk, 0);
  msgpack_pack_uint32(&pk, msgid);
  msgpack_pack_str_with_body(&pk, method, strlen(method));
  if (!key) {
    msgpack_pack_array(&pk, 0);
    return;
  }
  msgpack_pack_array(&pk, 1);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, key, strlen(key));
  msgpack_pack_str_with_body(&pk, value, strlen(value));
}

/* One write of N requests: pings, session.creates (answered after the writer's commit) and
 * validations of a made-up sid (errors). Every msgid comes back once, with the right kind of
 * answer. */
static void pipelined_batch_is_answered_intact(void) {
  td_daemon d;
  td_start(&d, NULL);
  enum { N = 3000 };
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  for (uint32_t i = 0; i < N; i++) {
    switch (i % 3) {
      case 0: pack_request(&sb, i, "sys.ping", NULL, NULL); break;
      case 1: pack_request(&sb, i, "session.create", "sub", "pipeliner"); break;
      default:
        pack_request(&sb, i, "session.validate", "sid",
                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    }
  }
  int fd = tw_connect(d.socket);
  TT_ASSERT(tw_send(fd, sb.data, sb.size));
  msgpack_sbuffer_destroy(&sb);
  static unsigned char seen[N];
  memset(seen, 0, sizeof(seen));
  tw_reader rd;
  tw_reader_init(&rd, fd);
  for (int k = 0; k < N; k++) {
    uint32_t id;
    char code[32];
    TT_ASSERT_MSG(tw_read_response(&rd, 30000, &id, code, sizeof(code)), "reply %d of %d missing",
                  k, N);
    TT_ASSERT_MSG(id < N && !seen[id], "msgid %u unknown or answered twice", id);
    seen[id] = 1;
    if (id % 3 == 2) TT_EQ_STR(code, "unauthenticated");
    else TT_EQ_STR(code, "");
  }
  tw_reader_destroy(&rd);
  close(fd);
  tessera_client *c = tc_client(&d);
  TT_EQ_INT(tc_stat(c, "method.session.create"), N / 3);
  tessera_close(c);
  tc_stop_ok(&d);
  td_cleanup(&d);
}

/* The daemon is paused (SIGSTOP) while one connection queues as many signature checks as its
 * socket takes, and then another connection queues one sys.stats. Once the daemon runs again,
 * both sockets are readable, the flood's first. The stats call must be served after at most
 * one budget (TS_CONN_BUDGET, server.h) of the flood's checks, its token.verify count says
 * so, and not after the flood's whole backlog, which a pass without a budget would serve
 * first. Then every check of the flood is answered. No timing: the order is the daemon's. */
static void flood_does_not_starve_another_connection(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "flooder"));
  int fd = tw_connect(d.socket);
  int big = 1 << 20; /* capped at the system's maximum; raises how much the flood can queue */
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  tw_reader rd;
  tw_reader_init(&rd, fd);
  tc_raw other;
  tc_raw_open(&other, &d);
  /* Both connections accepted and read from before the pause. */
  uint32_t id;
  char code[32];
  TT_ASSERT(tw_send_request(fd, 0, "sys.ping"));
  TT_ASSERT(tw_read_response(&rd, 10000, &id, code, sizeof(code)) && code[0] == 0);
  tc_raw_send(&other, "sys.ping", NULL);
  json_decref(tc_raw_next(&other, 10000));
  long long verified_before = tc_stat(c, "method.token.verify");

  enum { MAX_FLOOD = 20000 };
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  static size_t ends[MAX_FLOOD]; /* ends[i]: the offset just past request i */
  for (uint32_t i = 0; i < MAX_FLOOD; i++) {
    pack_request(&sb, i + 1, "token.verify", "token", tc_str(t, "token"));
    ends[i] = sb.size;
  }
  td_pause(&d);
  TT_ASSERT(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
  size_t sent = 0;
  for (;;) {
    ssize_t n = write(fd, sb.data + sent, sb.size - sent);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += (size_t)n;
  }
  TT_ASSERT_MSG(errno == EAGAIN || errno == EWOULDBLOCK, "flood write: %s", strerror(errno));
  int queued = 0; /* requests wholly in the socket */
  while (queued < MAX_FLOOD && ends[queued] <= sent) queued++;
  TT_ASSERT_MSG(queued >= 8 * TS_CONN_BUDGET, "the socket took only %d requests", queued);
  uint32_t stats_id = tc_raw_send(&other, "sys.stats", NULL);
  td_resume(&d);

  json_t *m = tc_raw_next(&other, 30000);
  TT_ASSERT_MSG(m != NULL, "no reply to sys.stats while the flood was served");
  TT_EQ_INT(json_integer_value(json_array_get(m, 1)), stats_id);
  long long served = tc_int(json_array_get(m, 3), "method.token.verify") - verified_before;
  json_decref(m);
  TT_ASSERT_MSG(served <= 2 * TS_CONN_BUDGET,
                "the other connection waited for %lld of the %d checks queued before it", served,
                queued);

  /* The rest of the request the socket took in part, then every reply. */
  TT_ASSERT(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0);
  int total = queued < MAX_FLOOD && sent > (queued ? ends[queued - 1] : 0) ? queued + 1 : queued;
  TT_ASSERT(tw_send(fd, sb.data + sent, ends[total - 1] - sent));
  msgpack_sbuffer_destroy(&sb);
  static unsigned char seen[MAX_FLOOD + 1];
  memset(seen, 0, sizeof(seen));
  for (int k = 0; k < total; k++) {
    TT_ASSERT_MSG(tw_read_response(&rd, 30000, &id, code, sizeof(code)),
                  "flood reply %d of %d missing", k, total);
    TT_ASSERT_MSG(id >= 1 && (int)id <= total && !seen[id], "msgid %u unknown or twice", id);
    seen[id] = 1;
    TT_EQ_STR(code, "");
  }
  tw_reader_destroy(&rd);
  close(fd);
  tc_raw_close(&other);
  json_decref(t);
  tessera_close(c);
  tc_stop_ok(&d);
  td_cleanup(&d);
}

static const tt_case cases[] = {
    TT_CASE(pipelined_batch_is_answered_intact),
    TT_CASE(flood_does_not_starve_another_connection),
};
TT_MAIN(cases)
