/* tests/integration/test_verifier.c: libtessera's local verifier (tessera/verifier.h) and the
 * notification API (tessera_next_notification) against the real daemon.
 *
 * Tokens come from token.issue / token.pair, or are signed here with the daemon's own active
 * key (read from its key directory) when a test needs claims the daemon would never issue
 * (expired, foreign issuer, no jti, another typ). Feed tests wait on the verifier's feed
 * counters (tessera_verifier_wait_feed), never on a blind sleep. To take the feed down while
 * the daemon stays up, a small proxy sits between the verifier and the daemon and cuts the
 * connections that subscribe (it recognises "events.subscribe" in the bytes it forwards). The
 * notification queue's overflow is driven by a fake one-connection daemon instead. */
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

/* token.issue {sub} plus extra params (stolen, may be NULL); returns the token (free()). */
static char *issue(tessera_client *c, const char *sub, json_t *extra) {
  json_t *p = extra ? extra : json_object();
  json_object_set_new(p, "sub", json_string(sub));
  json_t *r = tc_call_ok(c, "token.issue", p);
  char *tok = strdup(json_string_value(json_object_get(r, "token")));
  json_decref(r);
  return tok;
}

static char *issue_jti(tessera_client *c, const char *sub, char jti[64], int64_t *exp) {
  json_t *r = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", sub));
  char *tok = strdup(json_string_value(json_object_get(r, "token")));
  snprintf(jti, 64, "%s", json_string_value(json_object_get(r, "jti")));
  *exp = json_integer_value(json_object_get(r, "expires_at"));
  json_decref(r);
  return tok;
}

/* The kid in a token's header. */
static void kid_of(const char *tok, char kid[TS_JWS_KID_MAX + 1]) {
  const char *dot = strchr(tok, '.');
  TT_ASSERT(dot != NULL);
  uint8_t buf[512];
  size_t n;
  TT_ASSERT(ts_jws_b64_decode(tok, (size_t)(dot - tok), buf, sizeof(buf), &n) == 0);
  json_t *h = json_loadb((const char *)buf, n, 0, NULL);
  TT_ASSERT(json_is_string(json_object_get(h, "kid")));
  snprintf(kid, TS_JWS_KID_MAX + 1, "%s", json_string_value(json_object_get(h, "kid")));
  json_decref(h);
}

/* ---- helpers: signing with the daemon's key, or with a stranger's (forge.h) ------------------ */

/* A stranger's key (forge.h) under the kid "stranger-<i>": the same i, the same kid. */
static void stranger(tf_signer *s, int i) {
  tf_stranger_signer(s);
  snprintf(s->kid, sizeof(s->kid), "stranger-%d", i);
}

/* ---- helpers: the verifier ---------------------------------------------------------------------- */

static tessera_verifier_options opts_for(const td_daemon *d) {
  tessera_verifier_options o;
  tessera_verifier_options_init(&o);
  o.socket_path = d->socket;
  o.timeout_ms = 10000;
  return o;
}

static tessera_verifier *verifier_new(const tessera_verifier_options *o) {
  tessera_verifier *v = NULL;
  tessera_error err;
  int rc = tessera_verifier_new(o, &v, &err);
  TT_ASSERT_MSG(rc == 0, "tessera_verifier_new: %s (%s: %s)", tessera_strerror(rc), err.code,
                err.message);
  return v;
}

static tessera_verifier_stats stats_of(tessera_verifier *v) {
  tessera_verifier_stats st;
  tessera_verifier_stats_get(v, &st);
  return st;
}

#define EXPECT_OK(v, tok) expect_ok_(v, tok, __LINE__)
static json_t *expect_ok_(tessera_verifier *v, const char *tok, int line) {
  json_t *claims = NULL;
  tessera_error err;
  int rc = tessera_verifier_verify(v, tok, strlen(tok), &claims, &err);
  if (rc != 0)
    tt_fail(__FILE__, line, "verify: %s (%s: %s)", tessera_strerror(rc), err.code, err.message);
  if (!json_is_object(claims)) tt_fail(__FILE__, line, "verify gave no claims");
  return claims;
}

#define EXPECT_REFUSED(v, tok, code) expect_refused_(v, tok, strlen(tok), code, __LINE__)
static void expect_refused_(tessera_verifier *v, const char *tok, size_t len, const char *code,
                            int line) {
  json_t *claims = json_object(); /* must come back NULL */
  json_t *sentinel = claims;
  tessera_error err;
  int rc = tessera_verifier_verify(v, tok, len, &claims, &err);
  json_decref(sentinel);
  int want = strcmp(code, "unavailable") == 0 ? TESSERA_EUNAVAILABLE : TESSERA_EREJECTED;
  if (rc != want)
    tt_fail(__FILE__, line, "verify: %s (%s), expected %s %s", tessera_err_name(rc), err.code,
            tessera_err_name(want), code);
  if (strcmp(err.code, code) != 0)
    tt_fail(__FILE__, line, "err.code \"%s\", expected \"%s\"", err.code, code);
  if (claims) tt_fail(__FILE__, line, "claims left set on error");
}

/* Waits (bounded, on the feed's own signal) until a feed counter reaches atleast. */
#define WAIT_STAT(v, field, atleast) \
  wait_stat_(v, offsetof(tessera_verifier_stats, field), (atleast), #field, __LINE__)
static void wait_stat_(tessera_verifier *v, size_t off, uint64_t atleast, const char *name,
                       int line) {
  int64_t deadline = tc_mono_ms() + 15000;
  for (;;) {
    tessera_verifier_stats st = stats_of(v);
    uint64_t val;
    memcpy(&val, (const char *)&st + off, sizeof(val));
    if (val >= atleast) return;
    int64_t left = deadline - tc_mono_ms();
    if (left <= 0)
      tt_fail(__FILE__, line, "stats.%s stayed at %llu, waited for %llu", name,
              (unsigned long long)val, (unsigned long long)atleast);
    tessera_verifier_wait_feed(v, st.feed_events, (int)left);
  }
}

/* ---- helpers: a proxy that can cut the feed ------------------------------------------------------ */

typedef struct proxy {
  char path[256];
  const char *target;
  int lfd, wake[2];
  pthread_t th;
  pthread_mutex_t mu;
  bool cut, stop;
} proxy;

typedef struct pconn {
  int a, b; /* a: the client side, b: the daemon side */
  bool feed, dead;
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

/* Forwards one chunk from->to; the client side marks a subscribing connection. */
static void forward(pconn *c, bool from_client, bool cut) {
  char buf[65536];
  ssize_t k = read(from_client ? c->a : c->b, buf, sizeof(buf));
  if (k <= 0) {
    c->dead = true;
    return;
  }
  if (from_client && memmem(buf, (size_t)k, "events.subscribe", 16)) c->feed = true;
  if ((c->feed && cut) || !write_all(from_client ? c->b : c->a, buf, (size_t)k)) c->dead = true;
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
    bool cut = p->cut, stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    if (stop) break;
    if (fds[1].revents & POLLIN) {
      char b[16];
      while (read(p->wake[0], b, sizeof(b)) > 0) {}
    }
    size_t live = n;
    for (size_t i = 0; i < live; i++) {
      if (!c[i].dead && fds[2 + 2 * i].revents) forward(&c[i], true, cut);
      if (!c[i].dead && fds[3 + 2 * i].revents) forward(&c[i], false, cut);
      if (cut && c[i].feed) c[i].dead = true;
    }
    size_t keep = 0;
    for (size_t i = 0; i < n; i++) {
      if (c[i].dead) {
        close(c[i].a);
        close(c[i].b);
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

static void proxy_stop(proxy *p) {
  proxy_set(p, p->cut, true);
  pthread_join(p->th, NULL);
  close(p->lfd);
  close(p->wake[0]);
  close(p->wake[1]);
  unlink(p->path);
}

/* ---- tests: local verification ------------------------------------------------------------------ */

static void valid_token_verifies_and_is_cached(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *tok = issue(c, "alice", json_pack("{s:s, s:{s:s}}", "scope", "read write", "claims",
                                          "role", "admin"));
  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *v = verifier_new(&o);
  tessera_verifier_stats st = stats_of(v);
  TT_EQ_INT(st.jwks_fetches, 1);
  TT_ASSERT(st.keys_version != 0);
  TT_EQ_INT(st.feed_up, 0);

  json_t *cl = EXPECT_OK(v, tok);
  TT_EQ_STR(json_string_value(json_object_get(cl, "sub")), "alice");
  TT_EQ_STR(json_string_value(json_object_get(cl, "iss")), "tessera");
  TT_EQ_STR(json_string_value(json_object_get(cl, "scope")), "read write");
  TT_EQ_STR(json_string_value(json_object_get(cl, "role")), "admin");
  TT_ASSERT(json_is_string(json_object_get(cl, "jti")));
  st = stats_of(v);
  TT_EQ_INT(st.signature_checks, 1);
  TT_EQ_INT(st.cache_hits, 0);
  TT_EQ_INT(st.cached_tokens, 1);
  /* The claims are the caller's own copy: changing them changes nothing inside. */
  json_object_set_new(cl, "sub", json_string("mallory"));
  json_decref(cl);

  cl = EXPECT_OK(v, tok);
  TT_EQ_STR(json_string_value(json_object_get(cl, "sub")), "alice");
  json_decref(cl);
  TT_EQ_INT(tessera_verifier_verify(v, tok, strlen(tok), NULL, NULL), 0); /* claims not wanted */
  st = stats_of(v);
  TT_EQ_INT(st.signature_checks, 1); /* the second and third verify were hash lookups */
  TT_EQ_INT(st.cache_hits, 2);
  TT_EQ_INT(st.verifies, 3);
  TT_EQ_INT(st.accepted, 3);
  TT_EQ_INT(st.jwks_fetches, 1);

  /* The same token through the daemon agrees. */
  json_decref(tc_call_ok(c, "token.verify", json_pack("{s:s}", "token", tok)));
  free(tok);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void refused_tokens_name_the_reason(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *v = verifier_new(&o);
  tf_signer s;
  tf_daemon_signer(&d, &s);
  int64_t now = (int64_t)time(NULL);

  char *tok = issue(c, "alice", NULL);
  json_decref(EXPECT_OK(v, tok));
  size_t len = strlen(tok);
  char *bad = strdup(tok);
  bad[len - 2] = bad[len - 2] == 'A' ? 'B' : 'A'; /* the signature */
  EXPECT_REFUSED(v, bad, "unauthenticated");
  strcpy(bad, tok);
  char *payload = strchr(bad, '.') + 1;
  payload[3] = payload[3] == 'A' ? 'B' : 'A'; /* the claims */
  EXPECT_REFUSED(v, bad, "unauthenticated");
  EXPECT_REFUSED(v, "not.a.token", "unauthenticated");
  EXPECT_REFUSED(v, "", "unauthenticated");
  free(bad);
  char *huge = malloc(9000);
  memset(huge, 'A', 9000);
  expect_refused_(v, huge, 9000, "unauthenticated", __LINE__);
  free(huge);

  /* Time: exp and nbf outside the 60 s leeway. */
  char *t = tf_sign(&s, "at+jwt", tf_claims("alice", now - 3600, now - 61));
  EXPECT_REFUSED(v, t, "expired");
  free(t);
  t = tf_sign(&s, "at+jwt", tf_claims("alice", now - 3600, now - 30)); /* within the leeway */
  json_decref(EXPECT_OK(v, t));
  free(t);
  json_t *cl = tf_claims("alice", now, now + 600);
  json_object_set_new(cl, "nbf", json_integer(now + 120));
  t = tf_sign(&s, "at+jwt", cl);
  EXPECT_REFUSED(v, t, "expired");
  free(t);

  /* Identity: another issuer, no jti, no sub. */
  cl = tf_claims("alice", now, now + 600);
  json_object_set_new(cl, "iss", json_string("someone-else"));
  t = tf_sign(&s, "at+jwt", cl);
  EXPECT_REFUSED(v, t, "unauthenticated");
  free(t);
  cl = tf_claims("alice", now, now + 600);
  json_object_del(cl, "jti");
  t = tf_sign(&s, "at+jwt", cl);
  EXPECT_REFUSED(v, t, "unauthenticated");
  free(t);
  cl = tf_claims("alice", now, now + 600);
  json_object_del(cl, "sub");
  t = tf_sign(&s, "at+jwt", cl);
  EXPECT_REFUSED(v, t, "unauthenticated");
  free(t);

  /* Other token types presented as access tokens. */
  t = tf_sign(&s, "rt+jwt", tf_claims("alice", now, now + 600));
  EXPECT_REFUSED(v, t, "unauthenticated");
  free(t);
  json_t *pair = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "alice"));
  const char *rt = json_string_value(json_object_get(pair, "refresh_token"));
  const char *at = json_string_value(json_object_get(pair, "access_token"));
  EXPECT_REFUSED(v, rt, "unauthenticated");
  cl = EXPECT_OK(v, at);
  TT_EQ_STR(json_string_value(json_object_get(cl, "fam")),
            json_string_value(json_object_get(pair, "family")));
  json_decref(cl);
  json_decref(pair);
  char *pt = issue(c, "alice", json_pack("{s:s}", "purpose", "verify-email"));
  EXPECT_REFUSED(v, pt, "unauthenticated");
  free(pt);

  /* A stranger's key: unknown kid. */
  tf_signer x;
  stranger(&x, 1);
  t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
  EXPECT_REFUSED(v, t, "unauthenticated");
  free(t);
  /* The daemon's kid on a stranger's signature. */
  snprintf(x.kid, sizeof(x.kid), "%s", s.kid);
  t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
  EXPECT_REFUSED(v, t, "unauthenticated");
  free(t);

  tessera_verifier_stats st = stats_of(v);
  TT_EQ_INT(st.cached_tokens, 3); /* tok, the token within the leeway, the pair's access token */
  TT_EQ_INT(tessera_verifier_verify(v, NULL, 0, NULL, NULL), TESSERA_EINVAL);
  TT_EQ_INT(tessera_verifier_verify(NULL, tok, len, NULL, NULL), TESSERA_EINVAL);
  free(tok);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void audience_and_issuer_are_checked(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *plain = issue(c, "alice", NULL);
  char *api = issue(c, "alice", json_pack("{s:s}", "aud", "api"));
  char *both = issue(c, "alice", json_pack("{s:[s,s]}", "aud", "web", "api"));
  char *web = issue(c, "alice", json_pack("{s:s}", "aud", "web"));

  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *none = verifier_new(&o); /* no audience: tokens carrying aud are refused */
  json_decref(EXPECT_OK(none, plain));
  EXPECT_REFUSED(none, api, "unauthenticated");
  EXPECT_REFUSED(none, both, "unauthenticated");
  tessera_verifier_free(none);

  o.audience = "api";
  tessera_verifier *v = verifier_new(&o);
  json_decref(EXPECT_OK(v, api));
  json_decref(EXPECT_OK(v, both));
  EXPECT_REFUSED(v, web, "unauthenticated");
  EXPECT_REFUSED(v, plain, "unauthenticated");
  tessera_verifier_free(v);

  o.audience = NULL;
  o.issuer = "someone-else";
  v = verifier_new(&o);
  EXPECT_REFUSED(v, plain, "unauthenticated");
  tessera_verifier_free(v);

  free(plain);
  free(api);
  free(both);
  free(web);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void custom_issuer_of_the_daemon(void) {
  const char *args[] = {"--issuer", "https://auth.example", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  char *tok = issue(c, "alice", NULL);
  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *v = verifier_new(&o); /* expects the default "tessera" */
  EXPECT_REFUSED(v, tok, "unauthenticated");
  tessera_verifier_free(v);
  o.issuer = "https://auth.example";
  v = verifier_new(&o);
  json_decref(EXPECT_OK(v, tok));
  tessera_verifier_free(v);
  free(tok);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void unknown_kid_refetches_once_per_cooldown(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_verifier_options o = opts_for(&d);
  o.refetch_cooldown_ms = 60000; /* the whole test runs inside one cooldown */
  tessera_verifier *v = verifier_new(&o);
  int64_t now = (int64_t)time(NULL);
  TT_EQ_INT(stats_of(v).jwks_fetches, 1);

  tf_signer x;
  stranger(&x, 0);
  char *t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
  EXPECT_REFUSED(v, t, "unauthenticated");
  free(t);
  TT_EQ_INT(stats_of(v).jwks_fetches, 2); /* exactly one refetch */
  for (int i = 1; i <= 100; i++) {
    stranger(&x, i);
    t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
    EXPECT_REFUSED(v, t, "unauthenticated");
    free(t);
  }
  tessera_verifier_stats st = stats_of(v);
  TT_EQ_INT(st.jwks_fetches, 2); /* the flood caused none */
  TT_EQ_INT(st.unknown_kid_refused, 100);
  TT_EQ_INT(st.signature_checks, 0);
  tessera_verifier_free(v);
  td_stop(&d);
  td_cleanup(&d);
}

static void cooldown_allows_a_later_refetch(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_verifier_options o = opts_for(&d);
  o.refetch_cooldown_ms = 100;
  tessera_verifier *v = verifier_new(&o);
  int64_t now = (int64_t)time(NULL);
  tf_signer x;
  stranger(&x, 0);
  char *t = tf_sign(&x, "at+jwt", tf_claims("alice", now, now + 600));
  EXPECT_REFUSED(v, t, "unauthenticated");
  EXPECT_REFUSED(v, t, "unauthenticated");
  TT_EQ_INT(stats_of(v).jwks_fetches, 2);
  struct timespec pause = {0, 150 * 1000000}; /* past the cooldown */
  nanosleep(&pause, NULL);
  EXPECT_REFUSED(v, t, "unauthenticated");
  TT_EQ_INT(stats_of(v).jwks_fetches, 3);
  free(t);
  tessera_verifier_free(v);
  td_stop(&d);
  td_cleanup(&d);
}

/* keys.rotate makes the published next key the signing key: a verifier that fetched before
 * the rotation already holds it. */
static void rotation_needs_no_refetch(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *before = issue(c, "alice", NULL);
  tessera_verifier_options o = opts_for(&d);
  tessera_verifier *v = verifier_new(&o);
  json_decref(EXPECT_OK(v, before));

  json_t *r = tc_call_ok(c, "keys.rotate", NULL);
  char *after = issue(c, "alice", NULL);
  char kid_before[TS_JWS_KID_MAX + 1], kid_after[TS_JWS_KID_MAX + 1];
  kid_of(before, kid_before);
  kid_of(after, kid_after);
  TT_EQ_STR(kid_after, json_string_value(json_object_get(r, "kid")));
  TT_EQ_STR(kid_before, json_string_value(json_object_get(r, "previous")));
  TT_ASSERT(strcmp(kid_before, kid_after) != 0);
  json_decref(r);

  json_decref(EXPECT_OK(v, after));
  json_decref(EXPECT_OK(v, before)); /* the old key stays published */
  tessera_verifier_stats st = stats_of(v);
  TT_EQ_INT(st.jwks_fetches, 1);
  TT_EQ_INT(st.signature_checks, 2);
  free(before);
  free(after);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void full_cache_evicts_and_still_verifies(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  tessera_verifier_options o = opts_for(&d);
  o.cache_entries = 4;
  tessera_verifier *v = verifier_new(&o);
  char *tok[10];
  for (int i = 0; i < 10; i++) {
    char sub[16];
    snprintf(sub, sizeof(sub), "user%d", i);
    tok[i] = issue(c, sub, NULL);
    json_decref(EXPECT_OK(v, tok[i]));
  }
  TT_EQ_INT(stats_of(v).cached_tokens, 4);
  /* A hot token survives a stream of cold ones (the clock's second chance). */
  for (int round = 0; round < 3; round++) {
    for (int i = 1; i < 10; i++) {
      json_decref(EXPECT_OK(v, tok[0]));
      json_t *cl = EXPECT_OK(v, tok[i]);
      char sub[16];
      snprintf(sub, sizeof(sub), "user%d", i);
      TT_EQ_STR(json_string_value(json_object_get(cl, "sub")), sub);
      json_decref(cl);
    }
  }
  tessera_verifier_stats st = stats_of(v);
  TT_EQ_INT(st.cached_tokens, 4);
  TT_ASSERT(st.cache_hits >= 26); /* tok[0]: every verify after its first */
  for (int i = 0; i < 10; i++) free(tok[i]);
  tessera_verifier_free(v);

  o.cache_entries = 0; /* no cache at all */
  v = verifier_new(&o);
  char *t = issue(c, "alice", NULL);
  json_decref(EXPECT_OK(v, t));
  json_decref(EXPECT_OK(v, t));
  st = stats_of(v);
  TT_EQ_INT(st.cache_hits, 0);
  TT_EQ_INT(st.signature_checks, 2);
  free(t);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

typedef struct hammer {
  tessera_verifier *v;
  char **good;
  size_t ngood;
  char **bad;
  size_t nbad;
  unsigned seed;
  atomic_int *failures;
} hammer;

static void *hammer_main(void *arg) {
  hammer *h = arg;
  for (int i = 0; i < 1000; i++) {
    unsigned r = rand_r(&h->seed);
    tessera_error err;
    json_t *cl = NULL;
    if (r % 10 == 0) {
      const char *t = h->bad[(r / 10) % h->nbad];
      int rc = tessera_verifier_verify(h->v, t, strlen(t), &cl, &err);
      if (rc != TESSERA_EREJECTED || strcmp(err.code, "unauthenticated") != 0 || cl)
        atomic_fetch_add(h->failures, 1);
      continue;
    }
    size_t k = (r / 10) % h->ngood;
    const char *t = h->good[k];
    int rc = tessera_verifier_verify(h->v, t, strlen(t), (r & 1) ? &cl : NULL, &err);
    char sub[16];
    snprintf(sub, sizeof(sub), "user%zu", k);
    if (rc != 0 || ((r & 1) && strcmp(json_string_value(json_object_get(cl, "sub")), sub) != 0))
      atomic_fetch_add(h->failures, 1);
    json_decref(cl);
  }
  return NULL;
}

static void run_hammer(tessera_verifier *v, char **good, size_t ngood, char **bad, size_t nbad) {
  atomic_int failures = 0;
  pthread_t th[8];
  hammer h[8];
  for (int i = 0; i < 8; i++) {
    h[i] = (hammer){v, good, ngood, bad, nbad, (unsigned)(i + 1) * 7919u, &failures};
    TT_ASSERT(pthread_create(&th[i], NULL, hammer_main, &h[i]) == 0);
  }
  for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
  TT_EQ_INT(atomic_load(&failures), 0);
}

static void threads_verify_concurrently(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *good[40], *bad[4];
  for (int i = 0; i < 40; i++) {
    char sub[16];
    snprintf(sub, sizeof(sub), "user%d", i);
    good[i] = issue(c, sub, NULL);
  }
  int64_t now = (int64_t)time(NULL);
  for (int i = 0; i < 4; i++) {
    tf_signer x;
    stranger(&x, i);
    bad[i] = tf_sign(&x, "at+jwt", tf_claims("eve", now, now + 600));
  }
  tessera_verifier_options o = opts_for(&d);
  o.refetch_cooldown_ms = 60000;
  tessera_verifier *v = verifier_new(&o);
  run_hammer(v, good, 40, bad, 4);
  tessera_verifier_stats st = stats_of(v);
  TT_EQ_INT(st.verifies, 8000);
  TT_ASSERT(st.jwks_fetches <= 2); /* unknown kids from 8 threads: one refetch in all */
  TT_ASSERT(st.signature_checks <= 40 * 8); /* each good token: once per thread at worst */
  TT_ASSERT(st.cache_hits >= st.accepted - 40 * 8);
  tessera_verifier_free(v);

  o.cache_entries = 8; /* constant eviction under contention */
  v = verifier_new(&o);
  run_hammer(v, good, 40, bad, 4);
  TT_ASSERT(stats_of(v).cached_tokens <= 8);
  tessera_verifier_free(v);
  for (int i = 0; i < 40; i++) free(good[i]);
  for (int i = 0; i < 4; i++) free(bad[i]);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static void options_are_checked(void) {
  tessera_verifier *v = (tessera_verifier *)1;
  tessera_verifier_options o;
  tessera_verifier_options_init(&o);
  TT_EQ_INT(o.leeway, 60);
  TT_EQ_INT(o.cache_entries, 10000);
  TT_EQ_INT(o.refetch_cooldown_ms, 1000);
  TT_EQ_INT(o.feed_down_policy, TESSERA_FEED_FAIL_CLOSED);
  o.leeway = -1;
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_EINVAL);
  TT_ASSERT(v == NULL);
  tessera_verifier_options_init(&o);
  o.feed_down_policy = 7;
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_EINVAL);
  tessera_verifier_options_init(&o);
  o.audience = "";
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_EINVAL);
  TT_EQ_INT(tessera_verifier_new(NULL, NULL, NULL), TESSERA_EINVAL);
  tessera_verifier_options_init(&o);
  o.socket_path = "/nonexistent/tesserad.sock";
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_ECONNECT);
  TT_ASSERT(v == NULL);
  o.subscribe = 1;
  TT_EQ_INT(tessera_verifier_new(&o, &v, NULL), TESSERA_ECONNECT);
  tessera_verifier_free(NULL);
  TT_EQ_STR(tessera_err_name(TESSERA_EREJECTED), "EREJECTED");
  TT_EQ_STR(tessera_err_name(TESSERA_EUNAVAILABLE), "EUNAVAILABLE");
  TT_EQ_STR(tessera_err_name(TESSERA_EOVERFLOW), "EOVERFLOW");
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
  tessera_verifier *v = verifier_new(&o);
  tessera_verifier_stats st = stats_of(v);
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
  char *t2 = issue(c, "alice", NULL);
  json_decref(EXPECT_OK(v, t1));
  json_decref(EXPECT_OK(v, t2));
  TT_EQ_INT(stats_of(v).cached_tokens, 2);

  json_t *r = tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)exp));
  TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), 1);
  json_decref(r);
  WAIT_STAT(v, revocations_applied, 1);
  EXPECT_REFUSED(v, t1, "revoked"); /* was cached: refused on the very next verify */
  EXPECT_REFUSED(v, t1, "revoked");
  json_decref(EXPECT_OK(v, t2)); /* the same user's other token is fine */

  /* {token} revokes an access token's jti too. */
  char *t3 = issue(c, "bob", NULL);
  json_decref(EXPECT_OK(v, t3));
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", t3)));
  WAIT_STAT(v, revocations_applied, 2);
  EXPECT_REFUSED(v, t3, "revoked");
  tessera_verifier_stats st = stats_of(v);
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
  char *a1 = issue(c, "alice", NULL), *a2 = issue(c, "alice", NULL), *b = issue(c, "bob", NULL);
  json_t *pair = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "alice"));
  const char *a3 = json_string_value(json_object_get(pair, "access_token"));
  json_decref(EXPECT_OK(v, a1)); /* cached */
  json_decref(EXPECT_OK(v, a3));

  json_t *r = tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "alice"));
  TT_EQ_INT(json_integer_value(json_object_get(r, "families")), 1);
  json_decref(r);
  int64_t revoked_at = (int64_t)time(NULL);
  WAIT_STAT(v, revocations_applied, 2); /* the family and the sub's cut-off */
  EXPECT_REFUSED(v, a1, "revoked");
  EXPECT_REFUSED(v, a2, "revoked"); /* never seen before: refused too */
  EXPECT_REFUSED(v, a3, "revoked");
  json_decref(EXPECT_OK(v, b));

  /* Tokens issued after the cut-off second are fine. */
  while ((int64_t)time(NULL) <= revoked_at) {
    struct timespec pause = {0, 50 * 1000000};
    nanosleep(&pause, NULL);
  }
  char *a4 = issue(c, "alice", NULL);
  json_decref(EXPECT_OK(v, a4));
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
  json_decref(EXPECT_OK(v, at1));
  json_decref(EXPECT_OK(v, at2));
  /* Revoking by the refresh token kills its family (RFC 7009 2.1). */
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token",
                                                   json_string_value(json_object_get(p1, "refresh_token")))));
  WAIT_STAT(v, revocations_applied, 1);
  EXPECT_REFUSED(v, at1, "revoked");
  json_decref(EXPECT_OK(v, at2)); /* another family of the same user */
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "family",
                                                   json_string_value(json_object_get(p2, "family")))));
  WAIT_STAT(v, revocations_applied, 2);
  EXPECT_REFUSED(v, at2, "revoked");
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
  int64_t version = stats_of(v).keys_version;
  json_t *r = tc_call_ok(c, "keys.rotate", NULL);
  int64_t rotated = json_integer_value(json_object_get(r, "keys_version"));
  TT_ASSERT(rotated != version);
  json_decref(r);
  WAIT_STAT(v, keys_notifications, 1);
  tessera_verifier_stats st = stats_of(v);
  TT_EQ_INT(st.jwks_fetches, 2);
  TT_EQ_INT(st.keys_version, rotated);
  char *t = issue(c, "alice", NULL);
  json_decref(EXPECT_OK(v, t));
  TT_EQ_INT(stats_of(v).jwks_fetches, 2);
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
  char *t = issue(c, "alice", NULL);
  tessera_close(c);
  tessera_verifier *strict = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 0);
  tessera_verifier *lenient = subscribed(d.socket, TESSERA_FEED_FAIL_CLOSED, 600000);
  json_decref(EXPECT_OK(strict, t));
  json_decref(EXPECT_OK(lenient, t));

  td_stop(&d);
  WAIT_STAT(strict, feed_disconnects, 1);
  WAIT_STAT(lenient, feed_disconnects, 1);
  TT_EQ_INT(stats_of(strict).feed_up, 0);
  EXPECT_REFUSED(strict, t, "unavailable");
  json_decref(EXPECT_OK(lenient, t)); /* a gap shorter than feed_stale_ms is tolerated */

  td_launch(&d, NULL); /* same socket, data and keys */
  WAIT_STAT(strict, feed_connects, 2);
  WAIT_STAT(lenient, feed_connects, 2);
  json_decref(EXPECT_OK(strict, t));
  c = tc_client(&d);
  char jti[64];
  int64_t exp;
  char *t2 = issue_jti(c, "alice", jti, &exp);
  json_decref(EXPECT_OK(strict, t2));
  uint64_t applied = stats_of(strict).revocations_applied;
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)exp)));
  WAIT_STAT(strict, revocations_applied, applied + 1); /* the new subscription works */
  EXPECT_REFUSED(strict, t2, "revoked");
  tessera_verifier_stats st = stats_of(strict);
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
  char *t2 = issue(c, "bob", NULL);
  json_decref(EXPECT_OK(ask, t));
  json_decref(EXPECT_OK(closed, t));
  TT_EQ_INT(stats_of(ask).daemon_fallbacks, 0);

  proxy_set(&px, true, false);
  WAIT_STAT(ask, feed_disconnects, 1);
  WAIT_STAT(closed, feed_disconnects, 1);
  json_decref(EXPECT_OK(ask, t));
  TT_EQ_INT(stats_of(ask).daemon_fallbacks, 1);
  EXPECT_REFUSED(closed, t, "unavailable");

  /* Revoked while the feed is down: only the daemon knows. */
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)exp)));
  EXPECT_REFUSED(ask, t, "revoked");
  TT_EQ_INT(stats_of(ask).daemon_fallbacks, 2);
  json_decref(EXPECT_OK(ask, t2));
  TT_EQ_INT(stats_of(ask).daemon_fallbacks, 3);
  /* Garbage never reaches the daemon: it fails the local checks first. */
  EXPECT_REFUSED(ask, "not.a.token", "unauthenticated");
  TT_EQ_INT(stats_of(ask).daemon_fallbacks, 3);

  proxy_set(&px, false, false);
  WAIT_STAT(ask, feed_connects, 2);
  WAIT_STAT(closed, feed_connects, 2);
  json_decref(EXPECT_OK(ask, t2));
  json_decref(EXPECT_OK(closed, t2));
  TT_EQ_INT(stats_of(ask).daemon_fallbacks, 3); /* the feed is back: local again */
  tessera_verifier_free(ask);
  tessera_verifier_free(closed);
  free(t);
  free(t2);
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
  for (int i = 0; i < 20; i++) {
    char sub[16];
    snprintf(sub, sizeof(sub), "user%d", i);
    good[i] = issue(c, sub, NULL);
  }
  int64_t now = (int64_t)time(NULL);
  for (int i = 0; i < 2; i++) {
    tf_signer x;
    stranger(&x, i);
    bad[i] = tf_sign(&x, "at+jwt", tf_claims("eve", now, now + 600));
  }
  for (int i = 0; i < 50; i++) { /* unrelated revocations: the set changes, verdicts do not */
    char jti[32];
    snprintf(jti, sizeof(jti), "other-%d", i);
    json_decref(tc_call_ok(c, "token.revoke",
                        json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)now + 600)));
  }
  run_hammer(v, good, 20, bad, 2);
  WAIT_STAT(v, revocations_applied, 50);
  run_hammer(v, good, 20, bad, 2);
  json_decref(tc_call_ok(c, "user.revoke", json_pack("{s:s}", "sub", "user3")));
  WAIT_STAT(v, revocations_applied, 51);
  EXPECT_REFUSED(v, good[3], "revoked");
  for (int i = 0; i < 20; i++) free(good[i]);
  for (int i = 0; i < 2; i++) free(bad[i]);
  tessera_verifier_free(v);
  tessera_close(c);
  td_stop(&d);
  td_cleanup(&d);
}

static const tt_case cases[] = {
    TT_CASE(valid_token_verifies_and_is_cached),
    TT_CASE(refused_tokens_name_the_reason),
    TT_CASE(audience_and_issuer_are_checked),
    TT_CASE(custom_issuer_of_the_daemon),
    TT_CASE(unknown_kid_refetches_once_per_cooldown),
    TT_CASE(cooldown_allows_a_later_refetch),
    TT_CASE(rotation_needs_no_refetch),
    TT_CASE(full_cache_evicts_and_still_verifies),
    TT_CASE(threads_verify_concurrently),
    TT_CASE(options_are_checked),
    TT_CASE(notifications_are_queued),
    TT_CASE(notification_overflow_is_reported),
    TT_CASE(feed_revokes_a_cached_jti),
    TT_CASE(feed_user_revoke_cuts_off_a_sub),
    TT_CASE(feed_family_revoke_kills_access_tokens),
    TT_CASE(feed_keys_notification_refetches),
    TT_CASE(feed_down_fails_closed_then_reconnects),
    TT_CASE(feed_down_asks_the_daemon),
    TT_CASE(feed_under_concurrent_verifies),
};

int main(int argc, char **argv) {
  if (sodium_init() < 0) return 1;
  return tt_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
