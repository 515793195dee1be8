/* client/lib/vfeed.c: the verifier's side of the daemon (see verifier_internal.h):
 *   - keys.jwks: parse the JWK Set, keep the usable OKP/Ed25519 keys, install the set;
 *   - the call connection verify uses for refetches and ASK_DAEMON (reconnects on demand);
 *   - the feed thread.
 *
 * The feed thread owns one subscribed connection. Its loop: drain every queued notification
 * (never blocking), prune expired revocations now and then, then poll() the connection and a
 * wake-up pipe (free() writes to it) with a timeout of at most a second. A notification is
 * applied before the next one is read:
 *   "revoked" -> entries into the revocation set under mu, in one hold per notification;
 *   "keys"    -> a keys.jwks fetch on the same connection (under fetch_mu), unless the
 *                announced keys_version is the one installed.
 *   "reset"   -> the daemon cannot resume after our cursor: the cache is purged and tokens
 *                issued up to now get the feed-down policy (verifier.c); the replay of every
 *                revocation still in force follows.
 * Anything that breaks the feed (EOF, socket error, a malformed stream, lost notifications
 * because the queue overflowed, a revocation that could not be stored, a failed refetch)
 * closes the connection and marks the feed down; the thread then reconnects with jittered
 * exponential backoff (BACKOFF_MIN doubling to BACKOFF_MAX; back to the minimum once a
 * connection lived BACKOFF_RESET_MS), subscribing before fetching the keys so that no key
 * change can fall between the two. Every subscribe sends `since`: the cursor of the last
 * entry applied ("0" at first, which asks for every revocation still in force), so the daemon
 * replays what was committed meanwhile and nothing is missed across a reconnect. */
#include "verifier_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN 50
#define BACKOFF_MAX 5000
#define BACKOFF_RESET_MS 10000
#define PRUNE_MS 30000
#define TICK_MS 1000
#define MAX_AGE_CAP 86400 /* seconds: a key set is refetched at least daily */
#define MAX_AGE_DEFAULT 300

/* ---- keys.jwks ---------------------------------------------------------------------------- */

static bool str_is(const json_t *v, const char *s) {
  return json_is_string(v) && strcmp(json_string_value(v), s) == 0 &&
         json_string_length(v) == strlen(s);
}

/* One JWK of the set: an OKP/Ed25519 signing key with a usable kid, else false. */
static bool parse_jwk(const json_t *j, ts_vkey *k) {
  if (!json_is_object(j)) return false;
  const json_t *use = json_object_get(j, "use"), *alg = json_object_get(j, "alg");
  const json_t *kid = json_object_get(j, "kid"), *x = json_object_get(j, "x");
  if (!str_is(json_object_get(j, "kty"), "OKP") || !str_is(json_object_get(j, "crv"), "Ed25519"))
    return false;
  if ((use && !str_is(use, "sig")) || (alg && !str_is(alg, "EdDSA") && !str_is(alg, "Ed25519")))
    return false;
  if (!json_is_string(kid) || json_string_length(kid) == 0 ||
      json_string_length(kid) > TS_JWS_KID_MAX ||
      strlen(json_string_value(kid)) != json_string_length(kid) || !json_is_string(x))
    return false;
  size_t n;
  if (ts_jws_b64_decode(json_string_value(x), json_string_length(x), k->pk, sizeof(k->pk), &n) !=
          0 ||
      n != sizeof(k->pk))
    return false;
  memcpy(k->kid, json_string_value(kid), json_string_length(kid) + 1);
  return true;
}

/* Swaps in a new key set (takes keys). A set that drops a kid also clears the cache: a key
 * taken out of the set (say, after a compromise) must not keep vouching for tokens. */
static void install_keys(tessera_verifier *v, ts_vkey *keys, size_t n, int64_t version,
                         int64_t max_age) {
  pthread_mutex_lock(&v->mu);
  bool dropped = false;
  for (size_t i = 0; i < v->nkeys && !dropped; i++) {
    bool kept = false;
    for (size_t j = 0; j < n && !kept; j++) kept = strcmp(v->keys[i].kid, keys[j].kid) == 0;
    dropped = !kept;
  }
  if (dropped) ts_vcache_clear(&v->cache);
  ts_vkey *old = v->keys;
  v->keys = keys;
  v->nkeys = n;
  v->keys_version = version;
  v->keys_fetched_ms = ts_v_now_ms();
  v->keys_max_age_ms = max_age * 1000;
  pthread_mutex_unlock(&v->mu);
  free(old);
}

/* Parses a keys.jwks result {keys, max_age, keys_version?} and installs it. Returns 0,
 * TESSERA_EPROTO (not that shape, or not one usable key) or TESSERA_ENOMEM. */
static int apply_jwks(tessera_verifier *v, const json_t *res) {
  const json_t *arr = json_object_get(res, "keys"), *age = json_object_get(res, "max_age");
  const json_t *ver = json_object_get(res, "keys_version");
  if (!json_is_array(arr) || (age && !json_is_integer(age)) || (ver && !json_is_integer(ver)))
    return TESSERA_EPROTO;
  size_t cap = json_array_size(arr) < TS_V_MAX_KEYS ? json_array_size(arr) : TS_V_MAX_KEYS;
  if (cap == 0) return TESSERA_EPROTO;
  ts_vkey *keys = calloc(cap, sizeof(*keys));
  if (!keys) return TESSERA_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < cap; i++)
    if (parse_jwk(json_array_get(arr, i), &keys[n])) n++;
  if (n == 0) {
    free(keys);
    return TESSERA_EPROTO;
  }
  int64_t max_age = age ? (int64_t)json_integer_value(age) : MAX_AGE_DEFAULT;
  if (max_age < 0) max_age = 0;
  if (max_age > MAX_AGE_CAP) max_age = MAX_AGE_CAP;
  install_keys(v, keys, n, ver ? (int64_t)json_integer_value(ver) : 0, max_age);
  return 0;
}

static void count_fetch(tessera_verifier *v, int rc) {
  pthread_mutex_lock(&v->mu);
  v->st.jwks_fetches++;
  if (rc) v->st.jwks_fetch_failures++;
  pthread_mutex_unlock(&v->mu);
}

int ts_v_fetch_keys(tessera_verifier *v, tessera_client *c, int timeout_ms, tessera_error *err) {
  json_t *res = NULL;
  int rc = tessera_call(c, "keys.jwks", NULL, timeout_ms, &res, err);
  if (rc == 0) rc = apply_jwks(v, res);
  json_decref(res);
  count_fetch(v, rc);
  return rc;
}

/* ---- the call connection ------------------------------------------------------------------ */

static bool broken(int rc) {
  return rc == TESSERA_ECLOSED || rc == TESSERA_EIO || rc == TESSERA_EPROTO;
}

int ts_v_call(tessera_verifier *v, const char *method, const json_t *params, json_t **result,
              tessera_error *err) {
  pthread_mutex_lock(&v->call_mu);
  int rc = 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    bool fresh = v->call == NULL;
    if (fresh && (rc = tessera_connect_timeout(v->socket_path, v->timeout_ms, &v->call)) != 0)
      break;
    rc = tessera_call(v->call, method, params, v->timeout_ms, result, err);
    if (!broken(rc)) break;
    tessera_close(v->call);
    v->call = NULL;
    if (fresh) break; /* a connection that was idle may have died with a daemon restart:
                         one more try on a new one; a new one that fails is the answer */
  }
  pthread_mutex_unlock(&v->call_mu);
  return rc;
}

int ts_v_refetch(tessera_verifier *v, tessera_error *err) {
  pthread_mutex_lock(&v->fetch_mu);
  json_t *res = NULL;
  int rc = ts_v_call(v, "keys.jwks", NULL, &res, err);
  if (rc == 0) rc = apply_jwks(v, res);
  json_decref(res);
  count_fetch(v, rc);
  pthread_mutex_unlock(&v->fetch_mu);
  return rc;
}

/* ---- feed state --------------------------------------------------------------------------- */

/* Adds to the feed counters and wakes tessera_verifier_wait_feed (mu held). */
static void fed(tessera_verifier *v, uint64_t *counter, uint64_t n) {
  if (n == 0) return;
  *counter += n;
  v->st.feed_events += n;
  pthread_cond_broadcast(&v->fed);
}

static void feed_lost(tessera_verifier *v) {
  pthread_mutex_lock(&v->mu);
  v->feed_up = false;
  v->feed_down_since_ms = ts_v_now_ms();
  fed(v, &v->st.feed_disconnects, 1);
  pthread_mutex_unlock(&v->mu);
}

static int subscribe(tessera_verifier *v, tessera_client *c, tessera_error *err) {
  json_t *res = NULL;
  json_t *p = json_pack("{s:s}", "since", v->cursor[0] ? v->cursor : "0");
  if (!p) return TESSERA_ENOMEM;
  int rc = tessera_call(c, "events.subscribe", p, v->feed_timeout_ms, &res, err);
  json_decref(p);
  if (rc == 0 && !json_is_true(json_object_get(res, "subscribed"))) rc = TESSERA_EPROTO;
  json_decref(res);
  return rc;
}

int ts_v_feed_connect(tessera_verifier *v, tessera_client **out, tessera_error *err) {
  *out = NULL;
  tessera_client *c = NULL;
  int rc = tessera_connect_timeout(v->socket_path, v->feed_timeout_ms, &c);
  if (rc) return rc;
  rc = subscribe(v, c, err);
  if (rc == 0) {
    pthread_mutex_lock(&v->fetch_mu);
    rc = ts_v_fetch_keys(v, c, v->feed_timeout_ms, err);
    pthread_mutex_unlock(&v->fetch_mu);
  }
  if (rc) {
    tessera_close(c);
    return rc;
  }
  pthread_mutex_lock(&v->mu);
  v->feed_up = true;
  fed(v, &v->st.feed_connects, 1);
  pthread_mutex_unlock(&v->mu);
  *out = c;
  return 0;
}

/* ---- notifications ------------------------------------------------------------------------ */

/* The kind letter of a revocation entry we apply, or 0 (a kind we do not know). */
static char kind_of(const json_t *e) {
  const json_t *k = json_object_get(e, "kind");
  if (str_is(k, "jti")) return 'j';
  if (str_is(k, "family")) return 'f';
  if (str_is(k, "sub")) return 's';
  return 0;
}

/* Remembers an entry's cursor as the point to resume after (feed connection owner only). */
static void advance(tessera_verifier *v, const json_t *e) {
  const json_t *cur = json_object_get(e, "cursor");
  if (json_is_string(cur) && json_string_length(cur) >= 1 &&
      json_string_length(cur) <= TS_V_CURSOR_MAX &&
      strlen(json_string_value(cur)) == json_string_length(cur))
    memcpy(v->cursor, json_string_value(cur), json_string_length(cur) + 1);
}

/* "revoked" [{kind, id, until, before?, cursor}, ...]. Entries not of the documented shape are
 * skipped; a revocation that cannot be stored breaks the feed (TESSERA_ENOMEM) before its
 * cursor is taken, so the resubscribe replays it. */
static int on_revoked(tessera_verifier *v, const json_t *args) {
  int64_t now = (int64_t)time(NULL);
  int rc = 0;
  uint64_t applied = 0;
  size_t i;
  const json_t *e;
  pthread_mutex_lock(&v->mu);
  json_array_foreach(args, i, e) {
    char kind = kind_of(e);
    const json_t *id = json_object_get(e, "id"), *until = json_object_get(e, "until");
    const json_t *before = json_object_get(e, "before");
    if (!kind || !json_is_string(id) || !json_is_integer(until) ||
        (kind == 's' && !json_is_integer(before))) {
      advance(v, e); /* a kind we do not know: nothing to hold, but seen */
      continue;
    }
    rc = ts_vrevoked_add(&v->revoked, kind, json_string_value(id), json_string_length(id),
                         (int64_t)json_integer_value(until),
                         kind == 's' ? (int64_t)json_integer_value(before) : 0, now);
    if (rc) break;
    advance(v, e);
    applied++;
  }
  fed(v, &v->st.revocations_applied, applied);
  pthread_mutex_unlock(&v->mu);
  return rc;
}

/* "reset" [{cursor}]: the daemon cannot prove that nothing was missed since our cursor (its
 * store changed, or our cursor is unknown to it). Cached verdicts may be stale and revocations
 * may be lost: purge the cache and hand every token issued until now to the feed-down policy
 * (they all expire by themselves within the longest access lifetime). The revocations still
 * in force follow, from the cursor given. */
static void on_reset(tessera_verifier *v, const json_t *args) {
  const json_t *e = json_array_get(args, 0);
  v->cursor[0] = 0;
  advance(v, e);
  pthread_mutex_lock(&v->mu);
  ts_vcache_clear(&v->cache);
  v->reset_at = (int64_t)time(NULL);
  fed(v, &v->st.feed_resets, 1);
  pthread_mutex_unlock(&v->mu);
}

/* "keys" [{keys_version}]: refetch unless that version is installed already. */
static int on_keys(tessera_verifier *v, tessera_client *c, const json_t *args) {
  const json_t *ver = json_object_get(json_array_get(args, 0), "keys_version");
  pthread_mutex_lock(&v->mu);
  bool have = json_is_integer(ver) && (int64_t)json_integer_value(ver) == v->keys_version;
  pthread_mutex_unlock(&v->mu);
  int rc = 0;
  if (!have) {
    pthread_mutex_lock(&v->fetch_mu);
    rc = ts_v_fetch_keys(v, c, v->feed_timeout_ms, NULL);
    pthread_mutex_unlock(&v->fetch_mu);
  }
  pthread_mutex_lock(&v->mu);
  fed(v, &v->st.keys_notifications, 1);
  pthread_mutex_unlock(&v->mu);
  return rc;
}

/* Applies every notification already received or waiting in the socket, without blocking.
 * Returns 0, or the error that ends this connection. */
static int drain(tessera_verifier *v, tessera_client *c) {
  for (;;) {
    char method[TESSERA_NOTIFY_METHOD_MAX];
    json_t *args = NULL;
    int rc = tessera_next_notification(c, 0, method, &args);
    if (rc == TESSERA_ETIMEDOUT) return 0;
    if (rc) return rc; /* TESSERA_EOVERFLOW too: revocations were lost, resubscribe */
    if (strcmp(method, "revoked") == 0) rc = on_revoked(v, args);
    else if (strcmp(method, "reset") == 0) on_reset(v, args);
    else if (strcmp(method, "keys") == 0) rc = on_keys(v, c, args);
    json_decref(args);
    if (rc) return rc;
  }
}

/* ---- the thread --------------------------------------------------------------------------- */

static bool stopping(tessera_verifier *v) {
  pthread_mutex_lock(&v->mu);
  bool s = v->stop;
  pthread_mutex_unlock(&v->mu);
  return s;
}

static int64_t jitter(int64_t ms) {
  return ms / 2 + (int64_t)randombytes_uniform((uint32_t)(ms / 2 + 1));
}

static int64_t clamp_ms(int64_t ms) {
  return ms < 0 ? 0 : ms > TICK_MS ? TICK_MS : ms;
}

/* Sleeps in poll() until the connection has bytes, free() wakes us, or timeout_ms passes. */
static void wait_io(tessera_verifier *v, tessera_client *c, int64_t timeout_ms) {
  struct pollfd p[2] = {{.fd = v->wake[0], .events = POLLIN},
                        {.fd = c ? tessera_fd(c) : -1, .events = POLLIN}};
  if (poll(p, c ? 2 : 1, (int)timeout_ms) > 0 && (p[0].revents & POLLIN)) {
    char buf[16];
    while (read(v->wake[0], buf, sizeof(buf)) > 0) {}
  }
}

static void *feed_main(void *arg) {
  tessera_verifier *v = arg;
  tessera_client *c = v->feed; /* handed over by new(); ours alone from here */
  v->feed = NULL;
  int64_t backoff = BACKOFF_MIN, now = ts_v_now_ms();
  int64_t next_try = now, next_prune = now + PRUNE_MS, up_since = now;
  while (!stopping(v)) {
    now = ts_v_now_ms();
    if (!c && now >= next_try) {
      if (ts_v_feed_connect(v, &c, NULL) == 0) {
        up_since = ts_v_now_ms();
      } else {
        next_try = now + jitter(backoff);
        backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
      }
    }
    if (c && drain(v, c) != 0) {
      tessera_close(c);
      c = NULL;
      feed_lost(v);
      now = ts_v_now_ms();
      if (now - up_since >= BACKOFF_RESET_MS) backoff = BACKOFF_MIN;
      next_try = now + jitter(backoff);
      backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
    }
    now = ts_v_now_ms();
    if (now >= next_prune) {
      pthread_mutex_lock(&v->mu);
      ts_vrevoked_prune(&v->revoked, (int64_t)time(NULL));
      pthread_mutex_unlock(&v->mu);
      next_prune = now + PRUNE_MS;
    }
    wait_io(v, c, clamp_ms((c ? next_prune : next_try) - now));
  }
  tessera_close(c);
  return NULL;
}

int ts_v_feed_start(tessera_verifier *v) {
  if (pipe2(v->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    v->wake[0] = v->wake[1] = -1;
    return TESSERA_ENOMEM;
  }
  if (pthread_create(&v->thread, NULL, feed_main, v) != 0) return TESSERA_ENOMEM;
  v->thread_started = true;
  return 0;
}

void ts_v_feed_stop(tessera_verifier *v) {
  if (v->thread_started) {
    pthread_mutex_lock(&v->mu);
    v->stop = true;
    pthread_mutex_unlock(&v->mu);
    ssize_t k;
    do {
      k = write(v->wake[1], "x", 1);
    } while (k < 0 && errno == EINTR);
    pthread_join(v->thread, NULL);
    v->thread_started = false;
  }
  tessera_close(v->feed); /* when the thread never took it */
  v->feed = NULL;
  for (int i = 0; i < 2; i++)
    if (v->wake[i] >= 0) close(v->wake[i]);
  v->wake[0] = v->wake[1] = -1;
}
