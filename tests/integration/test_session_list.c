/* tests/integration/test_session_list.c: a user's sessions in bulk and the store's limits,
 * against the real daemon (PROTOCOL.md "sessions", "Limits"): session.list (live sessions,
 * never sids; paged), session.revoke_all (with and without except; thousands of sessions), the
 * sweeper (100k expired sessions), reads that never wait for the writer during bulk creates,
 * and the store cap (unavailable, nothing half-written; healed by sweeping). Single sessions:
 * test_sessions.c.
 *
 * Waiting: replies are the signal. The sweeper signals nothing to clients: those cases poll
 * sys.stats in a bounded loop. Bulk sizes shrink under the sanitizers and valgrind
 * (tc_scaled). */
#include "calls.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include <tessera/tessera.h>

#include <lmdb.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- list ------------------------------------------------------------------------------- */

static void list_shows_live_sessions_never_sids(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  int64_t before = (int64_t)time(NULL);
  json_t *s[4];
  s[0] = tc_create(c, json_pack("{s:s, s:{s:s}, s:{s:s, s:s}}", "sub", "kim", "data", "device",
                                "laptop", "client", "ip", "192.0.2.10", "ua", "Firefox"));
  s[1] = tc_create(
      c, json_pack("{s:s, s:i, s:{s:s}}", "sub", "kim", "ttl", 600, "client", "ip", "192.0.2.11"));
  s[2] = tc_create(c, json_pack("{s:s, s:i}", "sub", "kim", "idle_ttl", 10)); /* touched every 1 s */
  s[3] = tc_create(c, json_pack("{s:s, s:{s:i}}", "sub", "kim", "data", "n", 7));
  json_t *foreign = tc_create_sub(c, "kimberly");
  int64_t after = (int64_t)time(NULL);
  TT_EQ_INT(tc_revoke_n(c, "handle", tc_str(s[3], "handle")), 1);
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "kim"));
  TT_EQ_INT(json_object_size(l), 1);
  json_t *arr = json_object_get(l, "sessions");
  TT_EQ_INT(json_array_size(arr), 3);
  char *text = json_dumps(l, JSON_COMPACT);
  for (int i = 0; i < 4; i++)
    TT_ASSERT_MSG(strstr(text, tc_str(s[i], "sid")) == NULL, "a sid is listed");
  TT_ASSERT(strstr(text, tc_str(foreign, "handle")) == NULL);
  TT_ASSERT(strstr(text, "\"sid\"") == NULL);
  free(text);
  bool seen[3] = {false, false, false};
  for (size_t k = 0; k < json_array_size(arr); k++) {
    json_t *e = json_array_get(arr, k);
    TT_EQ_INT(json_object_size(e), 7);
    TT_ASSERT(json_object_get(e, "sid") == NULL);
    int i = -1;
    for (int j = 0; j < 3; j++)
      if (strcmp(tc_str(e, "handle"), tc_str(s[j], "handle")) == 0) i = j;
    TT_ASSERT_MSG(i >= 0 && !seen[i], "unexpected handle %s", tc_str(e, "handle"));
    seen[i] = true;
    long long created = tc_int(e, "created_at");
    TT_ASSERT(created >= before && created <= after);
    TT_EQ_INT(tc_int(e, "last_seen_at"), created);
    TT_EQ_INT(tc_int(e, "expires_at"), tc_int(s[i], "expires_at"));
    TT_EQ_INT(tc_int(e, "idle_expires_at"), tc_int(s[i], "idle_expires_at"));
    json_t *data = json_object_get(e, "data"), *cl = json_object_get(e, "client");
    TT_ASSERT(json_is_object(data) && json_is_object(cl));
    json_t *want_data = i == 0 ? json_pack("{s:s}", "device", "laptop") : json_object();
    json_t *want_client = i == 0   ? json_pack("{s:s, s:s}", "ip", "192.0.2.10", "ua", "Firefox")
                          : i == 1 ? json_pack("{s:s}", "ip", "192.0.2.11")
                                   : json_object();
    TT_ASSERT_MSG(json_equal(data, want_data), "session %d: data differs", i);
    TT_ASSERT_MSG(json_equal(cl, want_client), "session %d: client differs", i);
    json_decref(want_data);
    json_decref(want_client);
  }
  json_decref(l);
  /* Validation shows up as last_seen_at once a tenth of the idle timeout has passed (after its
   * touch is committed: the next write's reply on this connection says so). */
  tc_wait_wall_until(after + 1);
  tc_expect_valid(c, tc_str(s[2], "sid"));
  json_decref(tc_create_sub(c, "flush"));
  l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "kim"));
  arr = json_object_get(l, "sessions");
  for (size_t k = 0; k < json_array_size(arr); k++) {
    json_t *e = json_array_get(arr, k);
    if (strcmp(tc_str(e, "handle"), tc_str(s[2], "handle")) == 0)
      TT_ASSERT(tc_int(e, "last_seen_at") > tc_int(e, "created_at"));
  }
  json_decref(l);
  l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "nobody-at-all"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 0);
  json_decref(l);
  tc_expect_error(c, "session.list", json_pack("{}"), "bad_request", "sub");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:i}", "sub", "kim", "limit", 0), "bad_request",
                  "limit");
  for (int i = 0; i < 4; i++) json_decref(s[i]);
  json_decref(foreign);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Reads that cannot start (every LMDB reader slot taken, here by this process holding read
 * transactions on the daemon's data dir) answer unavailable: session.list used to abort a
 * transaction it never got. Once the slots are free again, everything works. */
/* A handle names its session in one spelling only: the 4 unused low bits of its last char
 * are zero. Another spelling of the same 16 bytes revokes nothing and is no page cursor. */
static void non_canonical_handles_name_nothing(void) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s = tc_create_sub(c, "nina");
  char nc[TC_HANDLE_CHARS + 1];
  snprintf(nc, sizeof(nc), "%s", tc_str(s, "handle"));
  const char *p = strchr(alphabet, nc[TC_HANDLE_CHARS - 1]);
  TT_ASSERT(p != NULL && ((p - alphabet) & 15) == 0);
  nc[TC_HANDLE_CHARS - 1] = alphabet[(p - alphabet) + 1]; /* same bytes, another spelling */
  TT_EQ_INT(tc_revoke_n(c, "handle", nc), 0);
  tc_expect_error(c, "session.list", json_pack("{s:s, s:s}", "sub", "nina", "after", nc),
                  "bad_request", NULL);
  TT_EQ_STR(tc_validate(c, tc_str(s, "sid"), NULL, NULL), ""); /* still alive */
  TT_EQ_INT(tc_revoke_n(c, "handle", tc_str(s, "handle")), 1);
  json_decref(s);
  tessera_close(c);
  tc_stop_ok(&d);
}

static void list_when_reads_fail_is_unavailable(void) {
  if (tr_env_redis()) tt_skip("LMDB's reader table (Redis faults: test_redis_faults)");
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s = tc_create_sub(c, "lena");
  MDB_env *env;
  TT_ASSERT(mdb_env_create(&env) == 0);
  TT_ASSERT(mdb_env_set_maxdbs(env, 16) == 0);
  TT_ASSERT_MSG(mdb_env_open(env, d.data, MDB_NOTLS | MDB_RDONLY, 0600) == 0, "open %s", d.data);
  MDB_txn *held[512];
  int n = 0, rc = 0;
  while (n < 512 && (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &held[n])) == 0) n++;
  TT_ASSERT_MSG(rc == MDB_READERS_FULL, "%d readers, then %s", n, mdb_strerror(rc));
  tc_expect_error(c, "session.list", json_pack("{s:s}", "sub", "lena"), "unavailable", NULL);
  tc_expect_error(c, "session.validate", json_pack("{s:s}", "sid", tc_str(s, "sid")), "unavailable",
                  NULL);
  while (n > 0) mdb_txn_abort(held[--n]);
  mdb_env_close(env);
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "lena"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 1);
  json_decref(l);
  tc_expect_valid(c, tc_str(s, "sid"));
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* One page of session.list; returns the handles (appended to seen, counted in *n_seen) and the
 * `next` cursor (malloc'd, or NULL on the last page). */
static char *list_page(tessera_client *c, const char *sub, int limit, const char *after,
                       char (*seen)[TC_HANDLE_CHARS + 1], int *n_seen, int cap, size_t *page_size) {
  json_t *p = json_pack("{s:s}", "sub", sub);
  if (limit) json_object_set_new(p, "limit", json_integer(limit));
  if (after) json_object_set_new(p, "after", json_string(after));
  json_t *l = tc_call_ok(c, "session.list", p);
  json_t *arr = json_object_get(l, "sessions");
  *page_size = json_array_size(arr);
  for (size_t k = 0; k < json_array_size(arr); k++) {
    TT_ASSERT(*n_seen < cap);
    snprintf(seen[(*n_seen)++], TC_HANDLE_CHARS + 1, "%s", tc_str(json_array_get(arr, k), "handle"));
  }
  json_t *next = json_object_get(l, "next");
  char *ret = next ? strdup(json_string_value(next)) : NULL;
  TT_ASSERT(!next || (ret && strlen(ret) > 0));
  json_decref(l);
  return ret;
}

/* session.list was unbounded: it is paged now (limit, default 100, at most 1000; an opaque
 * `after` cursor; `next` while more remain). Walking the pages lists every live session once. */
static void list_is_paged(void) {
  static const char *const args[] = {"--durability", "relaxed", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  enum { N = 107 };
  tc_idset ids = tc_idset_new(N);
  json_t *params = json_pack("{s:s}", "sub", "pam");
  tc_create_many(c, params, N, tc_keep_ids, &ids);
  json_decref(params);
  TT_EQ_INT(tc_revoke_n(c, "handle", ids.handle[5]), 1); /* a dead one is never listed */
  json_t *foreign = tc_create_sub(c, "pamela");
  static char seen[2 * N][TC_HANDLE_CHARS + 1];
  int n_seen = 0;
  size_t size;
  /* The default page is 100. */
  char *next = list_page(c, "pam", 0, NULL, seen, &n_seen, 2 * N, &size);
  TT_EQ_INT(size, 100);
  TT_ASSERT(next != NULL);
  char *last = list_page(c, "pam", 0, next, seen, &n_seen, 2 * N, &size);
  TT_EQ_INT(size, N - 1 - 100);
  TT_ASSERT(last == NULL);
  free(next);
  /* Pages of 10 see the same sessions, each once. */
  int n_small = 0, pages = 0;
  static char small[2 * N][TC_HANDLE_CHARS + 1];
  char *cur = NULL;
  do {
    char *nx = list_page(c, "pam", 10, cur, small, &n_small, 2 * N, &size);
    TT_ASSERT(size <= 10);
    TT_ASSERT_MSG(size == 10 || nx == NULL, "a short page (%zu) with a next", size);
    free(cur);
    cur = nx;
    TT_ASSERT(++pages <= 20);
  } while (cur);
  TT_EQ_INT(n_small, N - 1);
  TT_EQ_INT(pages, (N - 1 + 9) / 10);
  qsort(seen, (size_t)n_seen, TC_HANDLE_CHARS + 1, tc_cmp_str);
  qsort(small, (size_t)n_small, TC_HANDLE_CHARS + 1, tc_cmp_str);
  TT_EQ_INT(n_seen, N - 1);
  for (int i = 0; i < n_seen; i++) {
    TT_EQ_STR(seen[i], small[i]);
    if (i) TT_ASSERT_MSG(strcmp(seen[i - 1], seen[i]) != 0, "%s listed twice", seen[i]);
    TT_ASSERT(strcmp(seen[i], ids.handle[5]) != 0);
    TT_ASSERT(strcmp(seen[i], tc_str(foreign, "handle")) != 0);
  }
  /* limit 1000 is fine, anything else out of range or not a cursor is bad_request. */
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s, s:i}", "sub", "pam", "limit", 1000));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), N - 1);
  TT_ASSERT(json_object_get(l, "next") == NULL);
  json_decref(l);
  tc_expect_error(c, "session.list", json_pack("{s:s, s:i}", "sub", "pam", "limit", 1001),
                  "bad_request", "limit");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:i}", "sub", "pam", "limit", -1),
                  "bad_request", "limit");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:s}", "sub", "pam", "limit", "5"),
                  "bad_request", "limit");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:s}", "sub", "pam", "after", "garbage"),
                  "bad_request", "after");
  tc_expect_error(c, "session.list", json_pack("{s:s, s:i}", "sub", "pam", "after", 3),
                  "bad_request", "after");
  /* The CLI pages too. */
  json_t *p1 = tc_cli_json(&d, (const char *const[]){"session", "list", "pam", "--limit", "2", NULL});
  TT_EQ_INT(json_array_size(json_object_get(p1, "sessions")), 2);
  const char *cursor = tc_str(p1, "next");
  json_t *p2 = tc_cli_json(&d, (const char *const[]){"session", "list", "--limit", "2", "--after",
                                                  cursor, "--", "pam", NULL});
  TT_EQ_INT(json_array_size(json_object_get(p2, "sessions")), 2);
  for (size_t i = 0; i < 2; i++) /* the second page goes on where the first stopped */
    for (size_t j = 0; j < 2; j++)
      TT_ASSERT(strcmp(tc_str(json_array_get(json_object_get(p1, "sessions"), i), "handle"),
                       tc_str(json_array_get(json_object_get(p2, "sessions"), j), "handle")) != 0);
  json_decref(p2);
  json_decref(p1);
  json_decref(foreign);
  tc_idset_free(&ids);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Handle order is creation order: each session here is created in a later millisecond than the
 * reply to the one before (waited for on the wall clock), and the list gives them back oldest
 * first, on one page and across pages of one. */
static void list_is_oldest_first(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 5 };
  char handles[N][TC_HANDLE_CHARS + 1];
  for (int i = 0; i < N; i++) {
    json_t *s = tc_create_sub(c, "olive");
    snprintf(handles[i], sizeof(handles[i]), "%s", tc_str(s, "handle"));
    json_decref(s);
    int64_t replied_ms = tc_wall_ns() / 1000000;
    while (tc_wall_ns() / 1000000 <= replied_ms) {} /* the next millisecond, on the clock */
  }
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "olive"));
  json_t *arr = json_object_get(l, "sessions");
  TT_EQ_INT(json_array_size(arr), N);
  for (int i = 0; i < N; i++)
    TT_EQ_STR(tc_str(json_array_get(arr, (size_t)i), "handle"), handles[i]);
  json_decref(l);
  char *after = NULL;
  for (int i = 0; i < N; i++) {
    json_t *page = tc_call_ok(c, "session.list", after ? json_pack("{s:s, s:i, s:s}", "sub",
                              "olive", "limit", 1, "after", after) : json_pack("{s:s, s:i}",
                              "sub", "olive", "limit", 1));
    TT_EQ_INT(json_array_size(json_object_get(page, "sessions")), 1);
    TT_EQ_STR(tc_str(json_array_get(json_object_get(page, "sessions"), 0), "handle"), handles[i]);
    free(after);
    json_t *nx = json_object_get(page, "next");
    after = nx ? strdup(json_string_value(nx)) : NULL;
    json_decref(page);
  }
  free(after);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- revoke_all ------------------------------------------------------------------------- */

static void revoke_all_with_and_without_except(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *other = tc_client(&d);
  json_t *s[5];
  for (int i = 0; i < 5; i++) s[i] = tc_create_sub(c, "leo");
  json_t *bystander = tc_create_sub(c, "leon");
  TT_EQ_INT(tc_revoke_n(c, "sid", tc_str(s[4], "sid")), 1); /* already dead: not counted */
  json_t *r = tc_call_ok(c, "session.revoke_all",
                         json_pack("{s:s, s:s}", "sub", "leo", "except", tc_str(s[1], "handle")));
  TT_EQ_INT(tc_int(r, "revoked"), 3);
  json_decref(r);
  tc_expect_valid(other, tc_str(s[1], "sid"));
  for (int i = 0; i < 5; i++)
    if (i != 1) tc_expect_unauthenticated(other, tc_str(s[i], "sid"));
  tc_expect_valid(other, tc_str(bystander, "sid"));
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "leo"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 1);
  json_decref(l);
  r = tc_call_ok(c, "session.revoke_all", json_pack("{s:s}", "sub", "leo"));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  tc_expect_unauthenticated(other, tc_str(s[1], "sid"));
  r = tc_call_ok(c, "session.revoke_all", json_pack("{s:s}", "sub", "leo"));
  TT_EQ_INT(tc_int(r, "revoked"), 0);
  json_decref(r);
  r = tc_call_ok(c, "session.revoke_all", json_pack("{s:s}", "sub", "never-seen"));
  TT_EQ_INT(tc_int(r, "revoked"), 0);
  json_decref(r);
  /* An except that names another sub's session keeps nothing of ours. */
  json_t *t1 = tc_create_sub(c, "leo");
  r = tc_call_ok(c, "session.revoke_all",
                 json_pack("{s:s, s:s}", "sub", "leo", "except", tc_str(bystander, "handle")));
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  tc_expect_unauthenticated(c, tc_str(t1, "sid"));
  tc_expect_valid(c, tc_str(bystander, "sid"));
  tc_expect_error(c, "session.revoke_all", json_pack("{s:s, s:s}", "sub", "leo", "except", "nope"),
                  "bad_request", "except");
  tc_expect_error(c, "session.revoke_all", json_pack("{}"), "bad_request", "sub");
  tc_expect_error(c, "session.revoke_all", json_pack("{s:s, s:b}", "sub", "leo", "force", 1),
                  "bad_request", "force");
  TT_EQ_INT(tc_stat(c, "sessions"), 1);
  if (!tr_env_redis()) TT_EQ_INT(tc_stat(c, "expiry_index"), 1); /* LMDB's own index */
  for (int i = 0; i < 5; i++) json_decref(s[i]);
  json_decref(t1);
  json_decref(bystander);
  tessera_close(other);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Logging a user out everywhere leaves none of their sessions alive, however many there are. */
static void revoke_all_of_a_sub_with_many_sessions(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  enum { N = 5000 };
  tc_idset ids = tc_idset_new(N);
  json_t *p = json_pack("{s:s}", "sub", "quinn");
  tc_create_many(c, p, N, tc_keep_ids, &ids);
  json_decref(p);
  json_t *keep = tc_create_sub(c, "quinn");
  json_t *r = tc_call_ok(c, "session.revoke_all",
                         json_pack("{s:s, s:s}", "sub", "quinn", "except", tc_str(keep, "handle")));
  long long revoked = tc_int(r, "revoked");
  json_decref(r);
  json_t *l = tc_call_ok(c, "session.list", json_pack("{s:s}", "sub", "quinn"));
  size_t left = json_array_size(json_object_get(l, "sessions"));
  json_decref(l);
  TT_ASSERT_MSG(revoked == N && left == 1,
                "revoke_all of %d sessions: revoked %lld, %zu still listed", N, revoked, left);
  for (int i = 0; i < N; i += 97) tc_expect_unauthenticated(c, ids.sid[i]);
  tc_expect_unauthenticated(c, ids.sid[N - 1]);
  tc_expect_valid(c, tc_str(keep, "sid"));
  TT_EQ_INT(tc_stat(c, "sessions"), 1);
  json_decref(keep);
  tc_idset_free(&ids);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- sweeper ---------------------------------------------------------------------------- */

static void sweeper_deletes_100k_expired(void) {
  if (tr_env_redis()) tt_skip("LMDB's sweeper (Redis expires records itself)");
  static const char *const args[] = {"--sweep-interval", "200ms", "--log-level", "info", NULL};
  td_daemon d;
  td_start(&d, args);
  enum { CONNS = 4, LIVE = 10 };
  const uint32_t PER = (uint32_t)tc_scaled(25000), BATCH = PER < 1000 ? PER : 1000;
  tessera_client *cs[CONNS];
  for (int i = 0; i < CONNS; i++) cs[i] = tc_client(&d);
  json_t *live[LIVE];
  for (int i = 0; i < LIVE; i++)
    live[i] = tc_create(cs[0], json_pack("{s:s, s:i}", "sub", "live", "ttl", 86400));
  /* The bulk goes over raw sockets: one buffer of BATCH requests per connection, then the
   * replies (only their error element is looked at), so the client costs little CPU. */
  int fds[CONNS];
  tw_reader rds[CONNS];
  for (int i = 0; i < CONNS; i++) {
    fds[i] = tw_connect(d.socket);
    tw_reader_init(&rds[i], fds[i]);
  }
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long long peak = 0;
  for (uint32_t base = 0; base < PER; base += BATCH) {
    uint32_t batch = PER - base < BATCH ? PER - base : BATCH;
    for (int i = 0; i < CONNS; i++) {
      msgpack_sbuffer_clear(&sb);
      for (uint32_t k = 0; k < batch; k++) {
        msgpack_pack_array(&pk, 4);
        msgpack_pack_uint8(&pk, 0);
        msgpack_pack_uint32(&pk, base + k);
        msgpack_pack_str_with_body(&pk, "session.create", 14);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "sub", 3);
        char sub[16];
        int n = snprintf(sub, sizeof(sub), "bulk%u", (unsigned)(base + k) % 1000);
        msgpack_pack_str_with_body(&pk, sub, (size_t)n);
        msgpack_pack_str_with_body(&pk, "ttl", 3);
        msgpack_pack_uint8(&pk, 1);
        msgpack_pack_str_with_body(&pk, "data", 4);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "pad", 3);
        msgpack_pack_str_with_body(&pk, "0123456789abcdef0123456789abcdef", 32);
      }
      TT_ASSERT(tw_send(fds[i], sb.data, sb.size));
    }
    for (int i = 0; i < CONNS; i++)
      for (uint32_t k = 0; k < batch; k++) {
        uint32_t id;
        char code[32];
        TT_ASSERT_MSG(tw_read_response(&rds[i], 60000, &id, code, sizeof(code)), "no reply");
        TT_ASSERT_MSG(code[0] == 0, "create %u: %s", (unsigned)id, code);
      }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  msgpack_sbuffer_destroy(&sb);
  for (int i = 0; i < CONNS; i++) {
    tw_reader_destroy(&rds[i]);
    close(fds[i]);
  }
  peak = tc_stat(cs[0], "store_bytes");
  fprintf(stderr, "%u creates in %.2f s; store_bytes %lld, swept so far %lld\n",
          (unsigned)(CONNS * PER),
          (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, peak,
          tc_stat(cs[0], "swept"));
  long long swept = 0;
  for (int i = 0; i < 1200 && swept < CONNS * PER; i++) { /* up to 120 s */
    swept = tc_stat(cs[0], "swept");
    if (swept < CONNS * PER) nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
  clock_gettime(CLOCK_MONOTONIC, &t0);
  fprintf(stderr, "swept %lld, %.2f s after the last create\n", swept,
          (double)(t0.tv_sec - t1.tv_sec) + (double)(t0.tv_nsec - t1.tv_nsec) / 1e9);
  TT_ASSERT_MSG(swept >= CONNS * PER, "only %lld swept", swept);
  TT_EQ_INT(tc_stat(cs[0], "sessions"), LIVE);
  TT_EQ_INT(tc_stat(cs[0], "expiry_index"), LIVE);
  for (int i = 0; i < LIVE; i++) tc_expect_valid(cs[i % CONNS], tc_str(live[i], "sid"));
  json_t *l = tc_call_ok(cs[1], "session.list", json_pack("{s:s}", "sub", "bulk0"));
  TT_EQ_INT(json_array_size(json_object_get(l, "sessions")), 0);
  json_decref(l);
  long long now_bytes = tc_stat(cs[0], "store_bytes");
  fprintf(stderr, "store_bytes at the peak %lld, after the sweep %lld\n", peak, now_bytes);
  /* Scaled down (slow builds), the sweeper keeps pace with the creates and there is no peak
   * to speak of; the full size shows the room coming back. */
  if (PER == 25000)
    TT_ASSERT_MSG(now_bytes * 4 < peak, "store_bytes %lld after the sweep, %lld at the peak",
                  now_bytes, peak);
  for (int i = 0; i < LIVE; i++) json_decref(live[i]);
  for (int i = 0; i < CONNS; i++) tessera_close(cs[i]);
  tc_stop_clean(&d);
}

/* ---- reads never wait for the writer ---------------------------------------------------- */

static atomic_uint completion_seq;

typedef struct bulk_arg {
  const td_daemon *d;
  sem_t *started;
  int n;                    /* creates to pipeline */
  unsigned last_create_seq; /* the completion number of the last create's reply */
  atomic_bool done;
  int failures;
} bulk_arg;

static void *bulk_creator(void *p) {
  bulk_arg *a = p;
  const int n = a->n, signal_after = n / 50;
  tessera_client *c = NULL;
  if (tessera_connect(a->d->socket, &c) != 0) {
    a->failures++;
    atomic_store(&a->done, true);
    sem_post(a->started);
    return NULL;
  }
  uint32_t *ids = calloc((size_t)n, sizeof(uint32_t));
  json_t *params = json_pack("{s:s}", "sub", "bulk");
  for (int i = 0; i < n; i++) {
    if (tessera_send(c, "session.create", params, &ids[i]) != 0) a->failures++;
    if (i == signal_after) sem_post(a->started); /* the rest are sent while validates run */
  }
  for (int i = 0; i < n; i++) {
    if (tessera_wait(c, ids[i], 60000, NULL, NULL) != 0) a->failures++;
    unsigned seq = atomic_fetch_add(&completion_seq, 1);
    if (i == n - 1) a->last_create_seq = seq;
  }
  free(ids);
  json_decref(params);
  tessera_close(c);
  atomic_store(&a->done, true);
  return NULL;
}

static void validate_answers_during_bulk_creates(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *s = tc_create_sub(c, "nora");
  const char *sid = tc_str(s, "sid");
  sem_t started;
  sem_init(&started, 0, 0);
  bulk_arg a = {.d = &d, .started = &started, .n = tc_scaled(10000)};
  atomic_init(&a.done, false);
  pthread_t th;
  TT_ASSERT(pthread_create(&th, NULL, bulk_creator, &a) == 0);
  while (sem_wait(&started) != 0) {}
  /* Validates until the creates are done (at most MAXV: enough to overlap them, without
   * starving a slow build's writer of CPU). */
  enum { MAXV = 2000 };
  unsigned *seqs = malloc(MAXV * sizeof(unsigned));
  size_t nv = 0;
  while (!atomic_load(&a.done) && nv < MAXV) {
    tc_expect_valid(c, sid);
    seqs[nv++] = atomic_fetch_add(&completion_seq, 1);
  }
  pthread_join(th, NULL);
  TT_EQ_INT(a.failures, 0);
  size_t before_last = 0;
  for (size_t i = 0; i < nv; i++) before_last += seqs[i] < a.last_create_seq;
  fprintf(stderr, "%zu validates answered before the last of %d creates (of %zu)\n", before_last,
          a.n, nv);
  TT_ASSERT_MSG(before_last > 0, "no validate was answered while the creates were being committed");
  TT_EQ_INT(tc_stat(c, "sessions"), a.n + 1);
  free(seqs);
  sem_destroy(&started);
  json_decref(s);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* ---- the store cap ---------------------------------------------------------------------- */

/* Pipelined creates of params (borrowed) in batches (1 .. 16) until one fails; every failure must
 * be `unavailable`. The sids of the sessions created go to ids from index at. Returns how many
 * were created. */
static int create_until_full(tessera_client *c, const json_t *params, int batch, tc_idset *ids, int at,
                             int max, char *msg, size_t cap) {
  enum { B = 16 };
  TT_ASSERT(batch >= 1 && batch <= B);
  int made = 0;
  bool full = false;
  while (!full) {
    uint32_t id[B];
    for (int k = 0; k < batch; k++) TT_EQ_INT(tessera_send(c, "session.create", params, &id[k]), 0);
    for (int k = 0; k < batch; k++) {
      json_t *r = NULL;
      tessera_error err = {{0}, {0}};
      int rc = tessera_wait(c, id[k], 30000, &r, &err);
      if (rc == 0) {
        TT_ASSERT_MSG(at + made < max, "the cap never came");
        tc_keep_ids(r, at + made++, ids);
        json_decref(r);
        continue;
      }
      TT_ASSERT_MSG(rc == TESSERA_EREMOTE, "create: %s", tessera_strerror(rc));
      TT_ASSERT_MSG(strcmp(err.code, "unavailable") == 0, "create at the cap: %s (%s)", err.code,
                    err.message);
      snprintf(msg, cap, "%s", err.message);
      full = true;
    }
  }
  return made;
}

static void store_cap_answers_unavailable(void) {
  if (tr_env_redis()) tt_skip("LMDB's --max-store-bytes (Redis: maxmemory, noeviction)");
  static const char *const args[] = {"--max-store-bytes", "1M", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  char *blob = malloc(4001);
  memset(blob, 'z', 4000);
  blob[4000] = 0;
  json_t *p = json_pack("{s:s, s:{s:s}}", "sub", "olga", "data", "blob", blob);
  enum { MAX = 10000 };
  tc_idset ids = tc_idset_new(MAX);
  char msg[256] = "";
  int n = create_until_full(c, p, 16, &ids, 0, MAX, msg, sizeof(msg));
  fprintf(stderr, "%d sessions of 4 KiB fit in 1M; then unavailable (%s)\n", n, msg);
  TT_ASSERT_MSG(n > 10, "only %d creates before the cap", n);
  /* Near the cap a page freed by an earlier commit may still become reusable (LMDB recycles
   * pages a commit or two later), so a few more creates can fit; then it is full for good. */
  int streak = 0, tries = 0;
  for (; streak < 3 && tries < 50; tries++) {
    json_t *r = NULL;
    tessera_error err = {{0}, {0}};
    int rc = tessera_call(c, "session.create", p, 30000, &r, &err);
    if (rc == 0) {
      tc_keep_ids(r, n++, &ids);
      json_decref(r);
      streak = 0;
    } else {
      TT_ASSERT_MSG(rc == TESSERA_EREMOTE && strcmp(err.code, "unavailable") == 0, "at the cap: %s",
                    rc == TESSERA_EREMOTE ? err.code : tessera_strerror(rc));
      streak++;
    }
  }
  TT_ASSERT_MSG(streak == 3, "the store never stayed full (%d sessions)", n);
  /* Nothing of the refused creates was written; everything acknowledged was. */
  TT_EQ_INT(tc_stat(c, "sessions"), n);
  TT_EQ_INT(tc_stat(c, "expiry_index"), n);
  /* Everything acknowledged before is there; the daemon keeps serving. */
  for (int i = 0; i < n; i++) tc_expect_valid(c, ids.sid[i]);
  tessera_client *c2 = tc_client(&d);
  json_decref(tc_call_ok(c2, "sys.ping", NULL));
  TT_EQ_INT(tc_count_listed(c2, "olga"), n);
  /* Freeing space (revokes work at the cap) makes room again: LMDB reuses the freed pages. */
  int freed = n / 2;
  static uint32_t rid[MAX];
  for (int i = 0; i < freed; i++) {
    json_t *rp = json_pack("{s:s}", "sid", ids.sid[i]);
    TT_EQ_INT(tessera_send(c, "session.revoke", rp, &rid[i]), 0);
    json_decref(rp);
  }
  for (int i = 0; i < freed; i++) {
    json_t *r = NULL;
    tessera_error err = {{0}, {0}};
    int rc = tessera_wait(c, rid[i], 30000, &r, &err);
    TT_ASSERT_MSG(rc == 0, "revoke at the cap: %s (%s)", tessera_strerror(rc), err.code);
    TT_EQ_INT(tc_int(r, "revoked"), 1);
    json_decref(r);
  }
  int again = create_until_full(c, p, 16, &ids, n, MAX, msg, sizeof(msg));
  fprintf(stderr, "after revoking %d, %d creates fit again\n", freed, again);
  TT_ASSERT_MSG(again >= freed / 2, "only %d creates after freeing %d sessions", again, freed);
  for (int i = freed; i < n + again; i++) tc_expect_valid(c2, ids.sid[i]);
  for (int i = 0; i < freed; i++) tc_expect_unauthenticated(c2, ids.sid[i]);
  TT_EQ_INT(tc_stat(c2, "sessions"), n - freed + again);
  /* Full again: logging the user out everywhere still works (one transaction of deletes). */
  json_t *r = tc_call_ok(c2, "session.revoke_all", json_pack("{s:s}", "sub", "olga"));
  TT_EQ_INT(tc_int(r, "revoked"), n - freed + again);
  json_decref(r);
  TT_EQ_INT(tc_stat(c2, "sessions"), 0);
  for (int i = freed; i < n + again; i += 17) tc_expect_unauthenticated(c, ids.sid[i]);
  TT_ASSERT(create_until_full(c, p, 16, &ids, 0, MAX, msg, sizeof(msg)) >= n / 2);
  json_decref(tc_call_ok(c2, "sys.ping", NULL));
  json_decref(p);
  free(blob);
  tc_idset_free(&ids);
  tessera_close(c2);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A store filled with sessions that then expire empties itself: the sweeper's deletes work at
 * the cap, and creates are accepted again without anybody revoking anything. */
static void store_cap_heals_by_sweeping(void) {
  if (tr_env_redis()) tt_skip("LMDB's --max-store-bytes and sweeper");
  /* Relaxed durability only to fill fast: what is under test is the sweeper in a full store. */
  static const char *const args[] = {
      "--max-store-bytes", "1M", "--sweep-interval", "100ms", "--durability", "relaxed", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  char *blob = malloc(3585);
  memset(blob, 'y', 3584);
  blob[3584] = 0;
  const int ttl = getenv("TT_SANITIZED") ? 20 : 3; /* sanitizer builds fill far more slowly */
  json_t *p = json_pack("{s:s, s:i, s:{s:s}}", "sub", "pia", "ttl", ttl, "data", "blob", blob);
  enum { MAX = 10000 };
  tc_idset ids = tc_idset_new(MAX);
  char msg[256] = "";
  int64_t t0 = tc_start_of_next_second();
  int n = create_until_full(c, p, 1, &ids, 0, MAX, msg, sizeof(msg)); /* filled to the last page */
  TT_ASSERT_MSG(n > 10, "only %d creates before the cap", n);
  /* Full of live sessions: nothing expired (or was swept) while filling. */
  TT_ASSERT_MSG((int64_t)time(NULL) < t0 + ttl, "the fill outlasted the sessions' ttl");
  TT_EQ_INT(tc_stat(c, "swept"), 0);
  long long swept = 0, sessions = -1;
  for (int i = 0; i < (ttl + 30) * 10 && sessions != 0; i++) { /* needs about ttl + 0.1 s */
    sessions = tc_stat(c, "sessions");
    if (sessions != 0) nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
  swept = tc_stat(c, "swept");
  TT_ASSERT_MSG(sessions == 0, "%lld sessions left unswept at the cap (%lld swept)", sessions,
                swept);
  TT_ASSERT(swept >= n);
  TT_EQ_INT(tc_stat(c, "expiry_index"), 0);
  json_decref(tc_create(c, json_pack("{s:s, s:{s:s}}", "sub", "pia", "data", "blob", blob)));
  json_decref(p);
  free(blob);
  tc_idset_free(&ids);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(list_shows_live_sessions_never_sids),
    TT_CASE(non_canonical_handles_name_nothing),
    TT_CASE(list_when_reads_fail_is_unavailable),
    TT_CASE(list_is_paged),
    TT_CASE(list_is_oldest_first),
    TT_CASE(revoke_all_with_and_without_except),
    TT_CASE(revoke_all_of_a_sub_with_many_sessions),
    TT_CASE(sweeper_deletes_100k_expired),
    TT_CASE(validate_answers_during_bulk_creates),
    TT_CASE(store_cap_answers_unavailable),
    TT_CASE(store_cap_heals_by_sweeping),
};

TT_MAIN(cases)
