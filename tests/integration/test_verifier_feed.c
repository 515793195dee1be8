/* tests/integration/test_verifier_feed.c: what reaches an in-process libtessera verifier
 * while it runs, against the real daemon: the notification API (tessera_next_notification:
 * queued in order, overflow reported) and the revocation feed (a revoked jti, a user.revoke,
 * a family revocation and a key change reach cached tokens; the feed down fails closed, or
 * asks the daemon, then reconnects; a verifier whose notification queue overflowed resumes
 * from its cursor; verifies under concurrent feed traffic). Local
 * verification: test_verifier.c.
 *
 * Feed tests wait on the verifier's feed counters (tessera_verifier_wait_feed, through
 * TC_WAIT_FEED_STAT), never on a blind sleep. To take the feed down while the daemon stays up,
 * a small proxy sits between the verifier and the daemon and cuts the connections that
 * subscribe (it recognises "events.subscribe" in the bytes it forwards, and notes each one's
 * `since`); it can also hold what the daemon pushes and hand it over at once, which overflows
 * the verifier's own notification queue. The notification API's overflow is driven by a fake
 * one-connection daemon instead. */
#include "calls.h"
#include "forge.h"
#include "daemon.h"
#include "tt.h"

#include <tessera/tessera.h>
#include <tessera/verifier.h>

#include "jws.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers: daemon calls ------------------------------------------------------------------ */

static char *issue_jti(tessera_client *c, const char *sub, char jti[64], int64_t *exp) {
  json_t *r = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", sub));
  char *tok = strdup(json_string_value(json_object_get(r, "token")));
  snprintf(jti, 64, "%s", json_string_value(json_object_get(r, "jti")));
  *exp = json_integer_value(json_object_get(r, "expires_at"));
  json_decref(r);
  return tok;
}

/* ---- helpers: a proxy that can cut the feed ------------------------------------------------------ */

typedef struct proxy {
  char path[256];
  const char *target;
  int lfd, wake[2];
  pthread_t th;
  pthread_mutex_t mu;
  bool cut, stop;
  bool hold;          /* keep what the daemon sends a feed connection until released */
  int subscribes;     /* events.subscribe requests seen, and the `since` of the first four */
  char since[4][80];
} proxy;

typedef struct pconn {
  int a, b; /* a: the client side, b: the daemon side */
  bool feed, dead;
  char *held; /* daemon bytes kept while the proxy holds */
  size_t held_len;
} pconn;

static bool write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= (size_t)k;
  }
  return true;
}

static int connect_to(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path)) path = ""; /* connect then fails */
  memcpy(sa.sun_path, path, strlen(path) + 1);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) return fd;
  if (fd >= 0) close(fd);
  return -1;
}

/* Notes an events.subscribe request (one read holds it: it is small) and its `since`, a
 * msgpack str (fixstr or str8) after the key. */
static void note_subscribe(proxy *p, const char *buf, size_t k) {
  pthread_mutex_lock(&p->mu);
  int i = p->subscribes++;
  const char *at = memmem(buf, k, "since", 5);
  if (i < 4 && at) {
    const uint8_t *v = (const uint8_t *)at + 5, *end = (const uint8_t *)buf + k;
    size_t len = v < end && (*v & 0xe0) == 0xa0 ? (size_t)(*v & 0x1f)
                 : v + 1 < end && *v == 0xd9    ? v[1]
                                                : 0;
    const uint8_t *body = v + (*v == 0xd9 ? 2 : 1);
    if (len > 0 && len < sizeof(p->since[i]) && body + len <= end)
      memcpy(p->since[i], body, len);
  }
  pthread_mutex_unlock(&p->mu);
}

/* Forwards one chunk from->to; the client side marks a subscribing connection. While the
 * proxy holds, what the daemon sends a feed connection is kept (read at once, so the daemon's
 * write queue stays empty and each push stays its own notification). */
static void forward(proxy *p, pconn *c, bool from_client, bool cut, bool hold) {
  char buf[65536];
  ssize_t k = read(from_client ? c->a : c->b, buf, sizeof(buf));
  if (k <= 0) {
    c->dead = true;
    return;
  }
  if (from_client && memmem(buf, (size_t)k, "events.subscribe", 16)) {
    c->feed = true;
    note_subscribe(p, buf, (size_t)k);
  }
  if (!from_client && c->feed && (hold || c->held_len > 0)) {
    char *grown = realloc(c->held, c->held_len + (size_t)k);
    TT_ASSERT(grown != NULL);
    memcpy(grown + c->held_len, buf, (size_t)k);
    c->held = grown;
    c->held_len += (size_t)k;
    return;
  }
  if ((c->feed && cut) || !write_all(from_client ? c->b : c->a, buf, (size_t)k)) c->dead = true;
}

/* Sends a feed connection what was held for it, once the proxy no longer holds. */
static void release(pconn *c) {
  if (c->held_len > 0 && !write_all(c->a, c->held, c->held_len)) c->dead = true;
  free(c->held);
  c->held = NULL;
  c->held_len = 0;
}

static void *proxy_main(void *arg) {
  proxy *p = arg;
  pconn c[32];
  size_t n = 0;
  for (;;) {
    struct pollfd fds[2 + 64];
    fds[0] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
    fds[1] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
    for (size_t i = 0; i < n; i++) {
      fds[2 + 2 * i] = (struct pollfd){.fd = c[i].a, .events = POLLIN};
      fds[3 + 2 * i] = (struct pollfd){.fd = c[i].b, .events = POLLIN};
    }
    if (poll(fds, 2 + 2 * n, -1) < 0) continue;
    pthread_mutex_lock(&p->mu);
    bool cut = p->cut, stop = p->stop, hold = p->hold;
    pthread_mutex_unlock(&p->mu);
    if (stop) break;
    if (fds[1].revents & POLLIN) {
      char b[16];
      while (read(p->wake[0], b, sizeof(b)) > 0) {}
    }
    size_t live = n;
    for (size_t i = 0; i < live; i++) {
      if (!c[i].dead && !hold) release(&c[i]);
      if (!c[i].dead && fds[2 + 2 * i].revents) forward(p, &c[i], true, cut, hold);
      if (!c[i].dead && fds[3 + 2 * i].revents) forward(p, &c[i], false, cut, hold);
      if (!c[i].dead && !hold) release(&c[i]);
      if (cut && c[i].feed) c[i].dead = true;
    }
    size_t keep = 0;
    for (size_t i = 0; i < n; i++) {
      if (c[i].dead) {
        close(c[i].a);
        close(c[i].b);
        free(c[i].held);
      } else {
        c[keep++] = c[i];
      }
    }
    n = keep;
    if (fds[0].revents & POLLIN) {
      int a = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
      int b = a >= 0 ? connect_to(p->target) : -1;
      if (a >= 0 && b >= 0 && n < 32) {
        c[n++] = (pconn){.a = a, .b = b};
      } else {
        if (a >= 0) close(a);
        if (b >= 0) close(b);
      }
    }
  }
  for (size_t i = 0; i < n; i++) {
    close(c[i].a);
    close(c[i].b);
    free(c[i].held);
  }
  return NULL;
}

static void proxy_start(proxy *p, const td_daemon *d) {
  memset(p, 0, sizeof(*p));
  snprintf(p->path, sizeof(p->path), "%s/proxy.sock", d->dir);
  p->target = d->socket;
  p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  TT_ASSERT(strlen(p->path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, p->path, strlen(p->path) + 1);
  TT_ASSERT(p->lfd >= 0 && bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  TT_ASSERT(listen(p->lfd, 16) == 0);
  TT_ASSERT(pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) == 0);
  pthread_mutex_init(&p->mu, NULL);
  TT_ASSERT(pthread_create(&p->th, NULL, proxy_main, p) == 0);
}

static void proxy_set(proxy *p, bool cut, bool stop) {
  pthread_mutex_lock(&p->mu);
  p->cut = cut;
  p->stop = stop;
  pthread_mutex_unlock(&p->mu);
  TT_ASSERT(write(p->wake[1], "x", 1) == 1);
}

/* Holds (or releases, in one write) what the daemon sends feed connections. */
static void proxy_hold(proxy *p, bool hold) {
  pthread_mutex_lock(&p->mu);
  p->hold = hold;
  pthread_mutex_unlock(&p->mu);
  TT_ASSERT(write(p->wake[1], "x", 1) == 1);
}

static int proxy_subscribes(proxy *p, char since[][80], int max) {
  pthread_mutex_lock(&p->mu);
  int n = p->subscribes;
  for (int i = 0; i < max && i < 4; i++) memcpy(since[i], p->since[i], sizeof(p->since[i]));
  pthread_mutex_unlock(&p->mu);
  return n;
}

static void proxy_stop(proxy *p) {
  proxy_set(p, p->cut, true);
  pthread_join(p->th, NULL);
  close(p->lfd);
  close(p->wake[0]);
  close(p->wake[1]);
  unlink(p->path);
}

/* ---- tests: the notification API ------------------------------------------------------------------ */

static void notifications_are_queued(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *s = tc_client(&d);
  char method[TESSERA_NOTIFY_METHOD_MAX];
  json_t *args = (json_t *)1;
  TT_EQ_INT(tessera_next_notification(s, 0, method, &args), TESSERA_ETIMEDOUT);
  TT_ASSERT(args == NULL);
  json_t *r = tc_call_ok(s, "events.subscribe", NULL);
  TT_ASSERT(json_is_true(json_object_get(r, "subscribed")));
  TT_ASSERT(json_is_integer(json_object_get(r, "keys_version")));
  json_decref(r);
  TT_EQ_INT(tessera_pending_notifications(s), 0);

  int64_t exp = (int64_t)time(NULL) + 600;
  r = tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", "jti-one", "exp", (json_int_t)exp));
  TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), 1);
  json_decref(r);
  TT_EQ_INT(tessera_next_notification(s, 10000, method, &args), 0);
  TT_EQ_STR(method, "revoked");
  TT_ASSERT(json_is_array(args) && json_array_size(args) == 1);
  json_t *e = json_array_get(args, 0);
  TT_EQ_STR(json_string_value(json_object_get(e, "kind")), "jti");
  TT_EQ_STR(json_string_value(json_object_get(e, "id")), "jti-one");
  TT_ASSERT(json_integer_value(json_object_get(e, "until")) >= exp);
  json_decref(args);

  /* Notifications that arrive during a call on the same connection are kept, in order. */
  r = tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", "jti-two", "exp", (json_int_t)exp));
  json_decref(r);
  json_decref(tc_call_ok(c, "keys.rotate", NULL));
  json_decref(tc_call_ok(s, "sys.ping", NULL));
  TT_EQ_INT(tessera_pending_notifications(s), 2);
  TT_EQ_INT(tessera_next_notification(s, 0, method, NULL), 0);
  TT_EQ_STR(method, "revoked");
  TT_EQ_INT(tessera_next_notification(s, 0, method, &args), 0);
  TT_EQ_STR(method, "keys");
  TT_ASSERT(json_is_integer(json_object_get(json_array_get(args, 0), "keys_version")));
  json_decref(args);
  TT_EQ_INT(tessera_next_notification(s, 0, method, &args), TESSERA_ETIMEDOUT);
  TT_EQ_STR(method, "");

  /* The daemon going away: the sticky error, after what was queued. */
  r = tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", "jti-three", "exp", (json_int_t)exp));
  json_decref(r);
  td_stop(&d);
  TT_EQ_INT(tessera_next_notification(s, 10000, method, NULL), 0);
  TT_EQ_INT(tessera_next_notification(s, 10000, method, NULL), TESSERA_ECLOSED);
  TT_EQ_INT(tessera_next_notification(NULL, 0, method, NULL), TESSERA_EINVAL);
  tessera_close(s);
  tessera_close(c);
  td_cleanup(&d);
}

/* A one-connection fake daemon: it answers the first request (msgid 1) only after pushing n
 * "revoked" notifications, so a tessera_call reads them all while it waits. (The real daemon
 * would need over a thousand durable writes for this, which a sanitizer build makes slow.) */
typedef struct fake_daemon {
  int lfd, n;
} fake_daemon;

static void *fake_main(void *arg) {
  fake_daemon *f = arg;
  int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return NULL;
  char req[512];
  if (read(fd, req, sizeof(req)) <= 0) goto done; /* the request: small, one read */
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  for (int i = 0; i < f->n; i++) {
    char id[32];
    snprintf(id, sizeof(id), "flood-%d", i);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 2);
    msgpack_pack_str_with_body(&pk, "revoked", 7);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "kind", 4);
    msgpack_pack_str_with_body(&pk, "jti", 3);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_str_with_body(&pk, id, strlen(id));
    msgpack_pack_str_with_body(&pk, "until", 5);
    msgpack_pack_int64(&pk, 4000000000);
  }
  msgpack_pack_array(&pk, 4); /* [1, 1, nil, {}] */
  msgpack_pack_uint8(&pk, 1);
  msgpack_pack_uint8(&pk, 1);
  msgpack_pack_nil(&pk);
  msgpack_pack_map(&pk, 0);
  write_all(fd, sb.data, sb.size);
  msgpack_sbuffer_destroy(&sb);
  char b;
  if (read(fd, &b, 1) < 0) { /* until the client closes */ }
done:
  close(fd);
  return NULL;
}

static void notification_overflow_is_reported(void) {
  char dir[] = "/tmp/tessera-fake.XXXXXX", path[64];
  TT_ASSERT(mkdtemp(dir) != NULL);
  snprintf(path, sizeof(path), "%s/fake.sock", dir);
  fake_daemon f = {.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0),
                   .n = TESSERA_NOTIFY_QUEUE_MAX + 76};
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  memcpy(sa.sun_path, path, strlen(path) + 1);
  TT_ASSERT(f.lfd >= 0 && bind(f.lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  TT_ASSERT(listen(f.lfd, 1) == 0);
  pthread_t th;
  TT_ASSERT(pthread_create(&th, NULL, fake_main, &f) == 0);

  tessera_client *s = NULL;
  TT_EQ_INT(tessera_connect(path, &s), 0);
  json_decref(tc_call_ok(s, "events.subscribe", NULL));
  TT_EQ_INT(tessera_pending_notifications(s), TESSERA_NOTIFY_QUEUE_MAX);
  char method[TESSERA_NOTIFY_METHOD_MAX];
  json_t *args = (json_t *)1;
  TT_EQ_INT(tessera_next_notification(s, 0, method, &args), TESSERA_EOVERFLOW);
  TT_ASSERT(args == NULL);
  TT_EQ_STR(method, "");
  int got = 0, rc;
  while ((rc = tessera_next_notification(s, 0, method, &args)) == 0) {
    char want[32];
    snprintf(want, sizeof(want), "flood-%d", got); /* the oldest are kept, in order */
    TT_EQ_STR(method, "revoked");
    TT_EQ_STR(json_string_value(json_object_get(json_array_get(args, 0), "id")), want);
    json_decref(args);
    got++;
  }
  TT_EQ_INT(rc, TESSERA_ETIMEDOUT);
  TT_EQ_INT(got, TESSERA_NOTIFY_QUEUE_MAX);
  TT_EQ_INT(tessera_pending_notifications(s), 0);
  tessera_close(s);
  pthread_join(th, NULL);
  close(f.lfd);
  unlink(path);
  rmdir(dir);
}

/* ---- tests: the revocation feed ------------------------------------------------------------------ */

static tessera_verifier *subscribed(const char *socket, int policy, int stale_ms) {
  tessera_verifier_options o;
  tessera_verifier_options_init(&o);
  o.socket_path = socket;
  o.timeout_ms = 10000;
  o.subscribe = 1;
  o.feed_down_policy = policy;
  o.feed_stale_ms = stale_ms;
  tessera_verifier *v = tc_verifier_new(&o);
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.feed_up, 1);
  TT_EQ_INT(st.feed_connects, 1);
  TT_EQ_INT(st.jwks_fetches, 1);
  return v;
}

static void feed_revokes_a_cached_jti(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier *v = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 5000);
  char jti[64];
  int64_t exp;
  char *t1 = issue_jti(c, "alice", jti, &exp);
  char *t2 = tc_issue_claims(c, "alice", NULL);
  json_decref(TC_EXPECT_LOCAL_OK(v, t1));
  json_decref(TC_EXPECT_LOCAL_OK(v, t2));
  TT_EQ_INT(tc_verifier_stats(v).cached_tokens, 2);

  json_t *r = tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)exp));
  TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), 1);
  json_decref(r);
  TC_WAIT_FEED_STAT(v, revocations_applied, 1);
  TC_EXPECT_LOCAL_REFUSED(v, t1, "revoked"); /* was cached: refused on the very next verify */
  TC_EXPECT_LOCAL_REFUSED(v, t1, "revoked");
  json_decref(TC_EXPECT_LOCAL_OK(v, t2)); /* the same user's other token is fine */

  /* {token} revokes an access token's jti too. */
  char *t3 = tc_issue_claims(c, "bob", NULL);
  json_decref(TC_EXPECT_LOCAL_OK(v, t3));
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", t3)));
  TC_WAIT_FEED_STAT(v, revocations_applied, 2);
  TC_EXPECT_LOCAL_REFUSED(v, t3, "revoked");
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.revocation_entries, 2);
  TT_EQ_INT(st.daemon_fallbacks, 0);
  free(t1);
  free(t2);
  free(t3);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void feed_user_revoke_cuts_off_a_sub(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier *v = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 5000);
  char *a1 = tc_issue_claims(c, "alice", NULL), *a2 = tc_issue_claims(c, "alice", NULL), *b = tc_issue_claims(c, "bob", NULL);
  json_t *pair = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "alice"));
  const char *a3 = json_string_value(json_object_get(pair, "access_token"));
  json_decref(TC_EXPECT_LOCAL_OK(v, a1)); /* cached */
  json_decref(TC_EXPECT_LOCAL_OK(v, a3));

  json_t *r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "alice"));
  TT_EQ_INT(json_integer_value(json_object_get(r, "families")), 1);
  json_decref(r);
  int64_t revoked_at = (int64_t)time(NULL);
  TC_WAIT_FEED_STAT(v, revocations_applied, 2); /* the family and the sub's cut-off */
  TC_EXPECT_LOCAL_REFUSED(v, a1, "revoked");
  TC_EXPECT_LOCAL_REFUSED(v, a2, "revoked"); /* never seen before: refused too */
  TC_EXPECT_LOCAL_REFUSED(v, a3, "revoked");
  json_decref(TC_EXPECT_LOCAL_OK(v, b));

  /* Tokens issued after the cut-off second are fine. */
  while ((int64_t)time(NULL) <= revoked_at) {
    struct timespec pause = {0, 50 * 1000000};
    nanosleep(&pause, NULL);
  }
  char *a4 = tc_issue_claims(c, "alice", NULL);
  json_decref(TC_EXPECT_LOCAL_OK(v, a4));
  free(a1);
  free(a2);
  free(a4);
  free(b);
  json_decref(pair);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void feed_family_revoke_kills_access_tokens(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier *v = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 5000);
  json_t *p1 = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "alice"));
  json_t *p2 = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "alice"));
  const char *at1 = json_string_value(json_object_get(p1, "access_token"));
  const char *at2 = json_string_value(json_object_get(p2, "access_token"));
  json_decref(TC_EXPECT_LOCAL_OK(v, at1));
  json_decref(TC_EXPECT_LOCAL_OK(v, at2));
  /* Revoking by the refresh token kills its family (RFC 7009 2.1). */
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token",
                                                   json_string_value(json_object_get(p1, "refresh_token")))));
  TC_WAIT_FEED_STAT(v, revocations_applied, 1);
  TC_EXPECT_LOCAL_REFUSED(v, at1, "revoked");
  json_decref(TC_EXPECT_LOCAL_OK(v, at2)); /* another family of the same user */
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "family",
                                                   json_string_value(json_object_get(p2, "family")))));
  TC_WAIT_FEED_STAT(v, revocations_applied, 2);
  TC_EXPECT_LOCAL_REFUSED(v, at2, "revoked");
  json_decref(p1);
  json_decref(p2);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void feed_keys_notification_refetches(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier *v = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 5000);
  int64_t version = tc_verifier_stats(v).keys_version;
  json_t *r = tc_call_ok(c, "keys.rotate", NULL);
  int64_t rotated = json_integer_value(json_object_get(r, "keys_version"));
  TT_ASSERT(rotated != version);
  json_decref(r);
  TC_WAIT_FEED_STAT(v, keys_notifications, 1);
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.jwks_fetches, 2);
  TT_EQ_INT(st.keys_version, rotated);
  char *t = tc_issue_claims(c, "alice", NULL);
  json_decref(TC_EXPECT_LOCAL_OK(v, t));
  TT_EQ_INT(tc_verifier_stats(v).jwks_fetches, 2);
  free(t);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

/* The daemon stops: fail-closed refuses; it comes back: the feed reconnects by itself. */
static void feed_down_fails_closed_then_reconnects(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *t = tc_issue_claims(c, "alice", NULL);
  tessera_close(c);
  tessera_verifier *strict = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 0);
  tessera_verifier *lenient = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 600000);
  json_decref(TC_EXPECT_LOCAL_OK(strict, t));
  json_decref(TC_EXPECT_LOCAL_OK(lenient, t));

  td_stop(&d);
  TC_WAIT_FEED_STAT(strict, feed_disconnects, 1);
  TC_WAIT_FEED_STAT(lenient, feed_disconnects, 1);
  TT_EQ_INT(tc_verifier_stats(strict).feed_up, 0);
  TC_EXPECT_LOCAL_REFUSED(strict, t, "unavailable");
  json_decref(TC_EXPECT_LOCAL_OK(lenient, t)); /* a gap shorter than feed_stale_ms is tolerated */

  td_launch(&d, NULL); /* same socket, data and keys */
  TC_WAIT_FEED_STAT(strict, feed_connects, 2);
  TC_WAIT_FEED_STAT(lenient, feed_connects, 2);
  json_decref(TC_EXPECT_LOCAL_OK(strict, t));
  c = tc_client(&d);
  char jti[64];
  int64_t exp;
  char *t2 = issue_jti(c, "alice", jti, &exp);
  json_decref(TC_EXPECT_LOCAL_OK(strict, t2));
  uint64_t applied = tc_verifier_stats(strict).revocations_applied;
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)exp)));
  TC_WAIT_FEED_STAT(strict, revocations_applied, applied + 1); /* the new subscription works */
  TC_EXPECT_LOCAL_REFUSED(strict, t2, "revoked");
  tessera_verifier_stats st = tc_verifier_stats(strict);
  TT_EQ_INT(st.feed_up, 1);
  TT_ASSERT(st.jwks_fetches >= 2); /* refetched on resubscribing */
  free(t);
  free(t2);
  tessera_verifier_free(strict);
  tessera_verifier_free(lenient);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

/* The feed alone goes down (the daemon stays up): ASK_DAEMON asks tesserad per verify, and so
 * catches a revocation the feed could not deliver; FAIL_CLOSED refuses. */
static void feed_down_asks_the_daemon(void) {
  td_daemon d;
  td_start(&d, NULL);
  proxy px;
  proxy_start(&px, &d);
  tessera_client *c = tc_client(&d);
  tessera_verifier *ask = subscribed(px.path, TESSERA_FEED_ASK_DAEMON, 0);
  tessera_verifier *closed = subscribed(px.path, TESSERA_FEED_FAIL_CLOSED, 0);
  char jti[64];
  int64_t exp;
  char *t = issue_jti(c, "alice", jti, &exp);
  char *t2 = tc_issue_claims(c, "bob", NULL);
  json_decref(TC_EXPECT_LOCAL_OK(ask, t));
  json_decref(TC_EXPECT_LOCAL_OK(closed, t));
  TT_EQ_INT(tc_verifier_stats(ask).daemon_fallbacks, 0);

  proxy_set(&px, true, false);
  TC_WAIT_FEED_STAT(ask, feed_disconnects, 1);
  TC_WAIT_FEED_STAT(closed, feed_disconnects, 1);
  json_decref(TC_EXPECT_LOCAL_OK(ask, t));
  TT_EQ_INT(tc_verifier_stats(ask).daemon_fallbacks, 1);
  TC_EXPECT_LOCAL_REFUSED(closed, t, "unavailable");

  /* Revoked while the feed is down: only the daemon knows. */
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)exp)));
  TC_EXPECT_LOCAL_REFUSED(ask, t, "revoked");
  TT_EQ_INT(tc_verifier_stats(ask).daemon_fallbacks, 2);
  json_decref(TC_EXPECT_LOCAL_OK(ask, t2));
  TT_EQ_INT(tc_verifier_stats(ask).daemon_fallbacks, 3);
  /* Garbage never reaches the daemon: it fails the local checks first. */
  TC_EXPECT_LOCAL_REFUSED(ask, "not.a.token", "unauthenticated");
  TT_EQ_INT(tc_verifier_stats(ask).daemon_fallbacks, 3);

  proxy_set(&px, false, false);
  TC_WAIT_FEED_STAT(ask, feed_connects, 2);
  TC_WAIT_FEED_STAT(closed, feed_connects, 2);
  json_decref(TC_EXPECT_LOCAL_OK(ask, t2));
  json_decref(TC_EXPECT_LOCAL_OK(closed, t2));
  TT_EQ_INT(tc_verifier_stats(ask).daemon_fallbacks, 3); /* the feed is back: local again */
  tessera_verifier_free(ask);
  tessera_verifier_free(closed);
  free(t);
  free(t2);
  tessera_close(c);
  proxy_stop(&px);
  td_stop(&d);
  td_cleanup(&d);
}

/* The verifier's own notification queue overflows (more than TESSERA_NOTIFY_QUEUE_MAX
 * notifications arrive while its feed thread waits for the keys.jwks reply of a "keys"
 * notification, on the feed connection): it must resubscribe with the cursor of the last entry
 * it applied, and the daemon's replay brings back what was dropped, here the revocation of a
 * token it has cached. The proxy holds the feed while the daemon pushes a key change and then
 * one revocation per commit, and hands it all over at once. */
static void feed_overflow_resubscribes_from_its_cursor(void) {
  enum { N = 1200 }; /* revocations after the "keys" notification: > TESSERA_NOTIFY_QUEUE_MAX */
  td_daemon d;
  td_start(&d, NULL);
  proxy px;
  proxy_start(&px, &d);
  tessera_client *c = tc_client(&d);
  tessera_verifier *v = subscribed(px.path, TESSERA_FEED_FAIL_CLOSED, 60000);
  char *tok = tc_issue_claims(c, "victim", NULL);
  json_decref(TC_EXPECT_LOCAL_OK(v, tok));
  json_decref(TC_EXPECT_LOCAL_OK(v, tok));
  tessera_verifier_stats st = tc_verifier_stats(v);
  TT_EQ_INT(st.cached_tokens, 1);
  TT_EQ_INT(st.cache_hits, 1);
  int64_t exp = (int64_t)time(NULL) + 600;
  /* The last entry applied before the overflow: its cursor is where the feed must resume. */
  json_decref(tc_call_ok(c, "token.revoke",
                         json_pack("{s:s, s:I}", "jti", "applied", "exp", (json_int_t)exp)));
  TC_WAIT_FEED_STAT(v, revocations_applied, 1);

  proxy_hold(&px, true);
  json_decref(tc_call_ok(c, "keys.rotate", NULL));
  for (int i = 0; i < N; i++) { /* one at a time: one commit, one notification each */
    char jti[32];
    snprintf(jti, sizeof(jti), "burst-%d", i);
    json_decref(tc_call_ok(c, "token.revoke",
                           json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)exp)));
  }
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", tok))); /* the last */
  TT_EQ_INT(tc_wait_stat(c, "feed_entries_sent", true, N + 2, 30000), N + 2); /* all pushed */
  TT_EQ_INT(tc_verifier_stats(v).revocations_applied, 1); /* and all held */
  proxy_hold(&px, false);

  TC_WAIT_FEED_STAT(v, revocations_applied, N + 2); /* "applied", then the replay of N + 1 */
  TC_EXPECT_LOCAL_REFUSED(v, tok, "revoked");
  st = tc_verifier_stats(v);
  TT_EQ_INT(st.keys_notifications, 1);
  TT_EQ_INT(st.feed_disconnects, 1); /* the overflow ended the connection */
  TT_EQ_INT(st.feed_connects, 2);    /* and it resubscribed */
  TT_EQ_INT(st.feed_resets, 0);      /* resumed, not reset */
  TT_EQ_INT(st.feed_up, 1);
  TT_EQ_INT(st.revocations_applied, N + 2); /* nothing applied twice, nothing missed */
  /* The daemon sent the N + 1 entries twice: once into the overflow, once in the replay. */
  TT_EQ_INT(tc_stat(c, "feed_entries_sent"), 1 + 2 * (N + 1));
  /* The second subscribe's since was the cursor of "applied", the first entry of the feed. */
  char since[4][80];
  TT_EQ_INT(proxy_subscribes(&px, since, 4), 2);
  TT_EQ_STR(since[0], "0");
  tessera_client *all = tc_client(&d);
  json_decref(tc_call_ok(all, "events.subscribe", json_pack("{s:s}", "since", "0")));
  char method[TESSERA_NOTIFY_METHOD_MAX];
  json_t *args = NULL;
  TT_EQ_INT(tessera_next_notification(all, 10000, method, &args), 0);
  TT_EQ_STR(method, "revoked");
  json_t *first = json_array_get(args, 0);
  TT_EQ_STR(tc_str(first, "id"), "applied");
  TT_EQ_STR(since[1], tc_str(first, "cursor"));
  json_decref(args);
  tessera_close(all);
  free(tok);
  tessera_verifier_free(v);
  tessera_close(c);
  proxy_stop(&px);
  td_stop(&d);
  td_cleanup(&d);
}

/* Revocations keep arriving while 8 threads verify. */
static void feed_under_concurrent_verifies(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier *v = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 5000);
  char *good[20], *bad[2];
  tf_hammer_tokens(c, good, 20, bad, 2);
  int64_t now = (int64_t)time(NULL);
  for (int i = 0; i < 50; i++) { /* unrelated revocations: the set changes, verdicts do not */
    char jti[32];
    snprintf(jti, sizeof(jti), "other-%d", i);
    json_decref(tc_call_ok(c, "token.revoke",
                           json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)now + 600)));
  }
  tc_run_hammer(v, good, 20, bad, 2);
  TC_WAIT_FEED_STAT(v, revocations_applied, 50);
  tc_run_hammer(v, good, 20, bad, 2);
  json_decref(tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "user3")));
  TC_WAIT_FEED_STAT(v, revocations_applied, 51);
  TC_EXPECT_LOCAL_REFUSED(v, good[3], "revoked");
  for (int i = 0; i < 20; i++) free(good[i]);
  for (int i = 0; i < 2; i++) free(bad[i]);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static const tt_case cases[] = {
    TT_CASE(notifications_are_queued),
    TT_CASE(notification_overflow_is_reported),
    TT_CASE(feed_revokes_a_cached_jti),
    TT_CASE(feed_user_revoke_cuts_off_a_sub),
    TT_CASE(feed_family_revoke_kills_access_tokens),
    TT_CASE(feed_keys_notification_refetches),
    TT_CASE(feed_down_fails_closed_then_reconnects),
    TT_CASE(feed_down_asks_the_daemon),
    TT_CASE(feed_overflow_resubscribes_from_its_cursor),
    TT_CASE(feed_under_concurrent_verifies),
};

int main(int argc, char **argv) {
  if (sodium_init() < 0) return 1;
  return tt_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
