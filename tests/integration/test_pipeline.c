/* tests/integration/test_pipeline.c: the request path under pipelining (issue 11, items 1 and
 * 3; sidecar/conn.c): replies of one read batch are coalesced into one write per loop turn,
 * asynchronous replies (the writer's commits) are flushed by the same mechanism, and a
 * connection's work per loop turn is bounded. Asserts on behaviour, never on timings:
 *   - every request of a large pipelined batch, mixing synchronous replies, errors and
 *     durable writes, is answered exactly once, intact, matched by msgid (PROTOCOL.md: replies
 *     may come in any order);
 *   - a connection flooding the daemon with a huge pipeline does not starve another: the other
 *     connection's call completes while the flood is still being served. */
#include "calls.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include <tessera/tessera.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
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

typedef struct flood {
  int fd;
  int n;
  const char *token;
  atomic_int answered;
  int failed;
} flood;

static void *flood_writer(void *arg) {
  flood *f = arg;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  for (int i = 0; i < f->n; i++) {
    pack_request(&sb, (uint32_t)i, "token.verify", "token", f->token);
    if (sb.size > 64 * 1024 || i == f->n - 1) {
      if (!tw_send(f->fd, sb.data, sb.size)) f->failed = 1;
      msgpack_sbuffer_clear(&sb);
    }
  }
  msgpack_sbuffer_destroy(&sb);
  return NULL;
}

static void *flood_reader(void *arg) {
  flood *f = arg;
  tw_reader rd;
  tw_reader_init(&rd, f->fd);
  for (int k = 0; k < f->n; k++) {
    uint32_t id;
    char code[32];
    if (!tw_read_response(&rd, 60000, &id, code, sizeof(code)) || code[0]) {
      f->failed = 1;
      break;
    }
    atomic_fetch_add(&f->answered, 1);
  }
  tw_reader_destroy(&rd);
  return NULL;
}

/* One connection pipelines many signature checks as fast as it can; another connection's ping
 * is answered while the flood is still being served. */
static void flood_does_not_starve_another_connection(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "flooder"));
  flood f = {.fd = tw_connect(d.socket), .n = tc_scaled(20000), .token = tc_str(t, "token")};
  pthread_t w, r;
  pthread_create(&w, NULL, flood_writer, &f);
  pthread_create(&r, NULL, flood_reader, &f);
  while (atomic_load(&f.answered) < f.n / 10 && !f.failed) usleep(1000);
  /* One call, made with 90% of the flood still to serve: answered before the flood is. (Only
   * the first is checked: a sanitized client's own round trips are slow enough that later
   * calls may fairly see the flood finish.) */
  json_decref(tc_call_ok(c, "sys.ping", NULL));
  TT_ASSERT_MSG(atomic_load(&f.answered) < f.n,
                "the other connection's call waited for the whole flood");
  pthread_join(w, NULL);
  pthread_join(r, NULL);
  TT_ASSERT(!f.failed);
  TT_EQ_INT(atomic_load(&f.answered), f.n);
  close(f.fd);
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
