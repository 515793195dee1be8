/* client/lib/verifier.c: the local verifier's public API (tessera/verifier.h); the design and
 * the lock order are in verifier_internal.h.
 *
 * The verify path, in order:
 *   1. the feed-down policy (only with subscribe): FAIL_CLOSED refuses here;
 *   2. the cache: hash the token (keyed BLAKE2b), look it up under mu; a hit is re-checked
 *      against the revocation set only when the set changed since the entry was last checked
 *      (rev_gen), and answers without a signature check;
 *   3. a miss: refresh a key set older than max_age (one thread does it; the others go on with
 *      the old set), ts_jws_verify with a key callback that takes mu just to copy the public
 *      key, and on an unknown kid one refetch (single flight, at most one per cooldown) and a
 *      second try; then ts_jws_check_claims with the same rules as the daemon, sub and jti
 *      required; then, under one hold of mu, the revocation check and the cache insert (so a
 *      revocation applied in between cannot be missed by the entry);
 *   4. after a feed "reset", a token issued at or before it gets the policy too (FAIL_CLOSED
 *      refuses it, ASK_DAEMON asks): the feed may have missed its revocation;
 *   5. ASK_DAEMON while the feed is stale: token.verify with check_revoked on the daemon.
 * No JSON value is ever shared between threads: the cache keeps its own deep copy of the
 * claims, touched only under mu (a hit copies it out under mu), and a fresh verification
 * hands the caller the object it parsed. So jansson's reference counts never race. */
#include "verifier_internal.h"

#include "error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ISSUER "tessera"

/* ---- small helpers ------------------------------------------------------------------------ */

int64_t ts_v_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ts_v_set_error(tessera_error *err, const char *code, const char *message) {
  if (!err) return;
  snprintf(err->code, sizeof(err->code), "%s", code);
  snprintf(err->message, sizeof(err->message), "%s", message);
}

static void clear_error(tessera_error *err) {
  if (err) memset(err, 0, sizeof(*err)); /* reserved included (tessera.h, ABI) */
}

static int refuse(tessera_error *err, int ts_code) {
  const char *code = ts_code == TS_EEXPIRED ? "expired"
                     : ts_code == TS_EREVOKED ? "revoked"
                                              : "unauthenticated";
  const char *msg = ts_code == TS_EEXPIRED ? "token expired or not yet valid"
                    : ts_code == TS_EREVOKED ? "token revoked"
                                             : "token not valid";
  ts_v_set_error(err, code, msg);
  return TESSERA_EREJECTED;
}

static int unavailable(tessera_error *err, const char *why) {
  ts_v_set_error(err, "unavailable", why);
  return TESSERA_EUNAVAILABLE;
}

static char *dup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

/* ---- options ------------------------------------------------------------------------------ */

void tessera_verifier_options_init(tessera_verifier_options *o) {
  if (!o) return;
  memset(o, 0, sizeof(*o));
  o->leeway = 60;
  o->cache_entries = 10000;
  o->refetch_cooldown_ms = 1000;
  o->timeout_ms = 2000;
  o->subscribe = 0;
  o->feed_down_policy = TESSERA_FEED_FAIL_CLOSED;
  o->feed_stale_ms = 5000;
}

static bool options_ok(const tessera_verifier_options *o) {
  for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
    if (o->reserved[i] != 0) return false; /* an option this version does not know */
  return o->leeway >= 0 && o->refetch_cooldown_ms >= 0 && o->feed_stale_ms >= 0 &&
         (o->subscribe == 0 || o->subscribe == 1) &&
         (o->feed_down_policy == TESSERA_FEED_FAIL_CLOSED ||
          o->feed_down_policy == TESSERA_FEED_ASK_DAEMON) &&
         o->cache_entries < ((size_t)1 << 30) && (!o->issuer || *o->issuer) &&
         (!o->audience || *o->audience);
}

/* ---- new / free --------------------------------------------------------------------------- */

/* Everything new() needs before talking to the daemon. Returns 0 or TESSERA_ENOMEM /
 * TESSERA_EINVAL; on error the caller frees v with destroy(). */
static int setup(tessera_verifier *v, const tessera_verifier_options *o) {
  v->wake[0] = v->wake[1] = -1;
  /* Locks first (destroy() always destroys them). None of these can fail on Linux. */
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wait_feed: immune to wall-clock jumps */
  pthread_mutex_init(&v->mu, NULL);
  pthread_mutex_init(&v->fetch_mu, NULL);
  pthread_mutex_init(&v->call_mu, NULL);
  pthread_cond_init(&v->fetched, NULL);
  pthread_cond_init(&v->fed, &ca);
  pthread_condattr_destroy(&ca);
  ts_vrevoked_init(&v->revoked);
  v->socket_path = strdup(o->socket_path ? o->socket_path : tessera_default_socket());
  v->issuer = strdup(o->issuer ? o->issuer : DEFAULT_ISSUER);
  v->audience = dup_or_null(o->audience);
  if (!v->socket_path || !v->issuer || (o->audience && !v->audience)) return TESSERA_ENOMEM;
  v->leeway = o->leeway;
  v->cooldown_ms = o->refetch_cooldown_ms;
  v->timeout_ms = o->timeout_ms;
  v->feed_timeout_ms = o->timeout_ms < 0 || o->timeout_ms > 10000 ? 10000 : o->timeout_ms;
  v->policy = o->feed_down_policy;
  v->stale_ms = o->feed_stale_ms;
  v->subscribe = o->subscribe == 1;
  v->last_kid_fetch_ms = v->last_stale_try_ms = INT64_MIN;
  crypto_generichash_keygen(v->hkey);
  return ts_vcache_init(&v->cache, o->cache_entries);
}

static void destroy(tessera_verifier *v) {
  ts_v_feed_stop(v);
  tessera_close(v->call);
  ts_vcache_close(&v->cache);
  ts_vrevoked_close(&v->revoked);
  free(v->keys);
  pthread_cond_destroy(&v->fed);
  pthread_cond_destroy(&v->fetched);
  pthread_mutex_destroy(&v->call_mu);
  pthread_mutex_destroy(&v->fetch_mu);
  pthread_mutex_destroy(&v->mu);
  free(v->audience);
  free(v->issuer);
  free(v->socket_path);
  sodium_memzero(v->hkey, sizeof(v->hkey));
  free(v);
}

int tessera_verifier_new(const tessera_verifier_options *o,
                         tessera_verifier **out, tessera_error *err) {
  clear_error(err);
  if (!out) return TESSERA_EINVAL;
  *out = NULL;
  tessera_verifier_options defaults;
  if (!o) {
    tessera_verifier_options_init(&defaults);
    o = &defaults;
  }
  if (!options_ok(o)) return TESSERA_EINVAL;
  if (sodium_init() < 0) return TESSERA_ENOMEM;
  tessera_verifier *v = calloc(1, sizeof(*v));
  if (!v) return TESSERA_ENOMEM;
  int rc = setup(v, o);
  if (rc) goto fail;
  if (v->subscribe) {
    /* Subscribe first, then fetch (on the same connection): a key change between the two
     * cannot be missed. */
    rc = ts_v_feed_connect(v, &v->feed, err);
    if (rc == 0) rc = ts_v_feed_start(v);
  } else {
    rc = ts_v_refetch(v, err);
  }
  if (rc) goto fail;
  *out = v;
  return 0;
fail:
  destroy(v);
  return rc;
}

void tessera_verifier_free(tessera_verifier *v) {
  if (v) destroy(v);
}

/* ---- keys on the verify path -------------------------------------------------------------- */

/* The key of kid, or NULL (mu held). */
static const ts_vkey *find_key(const tessera_verifier *v, const char *kid) {
  for (size_t i = 0; i < v->nkeys; i++)
    if (strcmp(v->keys[i].kid, kid) == 0) return &v->keys[i];
  return NULL;
}

typedef struct key_ctx {
  tessera_verifier *v;
  bool unknown;
  char kid[TS_JWS_KID_MAX + 1];
} key_ctx;

/* ts_jws_key_fn: copies the public key under mu; remembers an unknown kid. */
static int key_lookup(void *ctx, const char *kid, uint8_t pk[32]) {
  key_ctx *k = ctx;
  pthread_mutex_lock(&k->v->mu);
  const ts_vkey *key = find_key(k->v, kid);
  if (key) {
    memcpy(pk, key->pk, 32);
    k->v->st.signature_checks++;
  }
  pthread_mutex_unlock(&k->v->mu);
  if (key) return 0;
  k->unknown = true;
  snprintf(k->kid, sizeof(k->kid), "%s", kid);
  return TS_ENOTFOUND;
}

/* Waits for a running verify-path fetch (mu held). */
static void wait_fetch(tessera_verifier *v) {
  while (v->fetching) pthread_cond_wait(&v->fetched, &v->mu);
}

/* Runs one verify-path fetch with fetching set (mu held on entry and exit, dropped inside). */
static int fetch_flagged(tessera_verifier *v) {
  v->fetching = true;
  pthread_mutex_unlock(&v->mu);
  int rc = ts_v_refetch(v, NULL);
  pthread_mutex_lock(&v->mu);
  v->fetching = false;
  pthread_cond_broadcast(&v->fetched);
  return rc;
}

/* Refreshes a key set older than max_age: one thread at a time, one try per second at most;
 * on failure the old set stays in use. */
static void refresh_if_old(tessera_verifier *v) {
  int64_t now = ts_v_now_ms();
  pthread_mutex_lock(&v->mu);
  if (!v->fetching && now - v->keys_fetched_ms >= v->keys_max_age_ms &&
      (v->last_stale_try_ms == INT64_MIN || now - v->last_stale_try_ms >= 1000)) {
    v->last_stale_try_ms = now;
    (void)fetch_flagged(v);
  }
  pthread_mutex_unlock(&v->mu);
}

/* After an unknown kid: refetch once (single flight, at most once per cooldown). Returns 1
 * when kid is known now, 0 when not (or the cooldown forbids a fetch), or a TESSERA_E* code
 * when the fetch failed. */
static int refetch_for(tessera_verifier *v, const char *kid) {
  pthread_mutex_lock(&v->mu);
  wait_fetch(v);
  int rc = find_key(v, kid) != NULL;
  if (rc) goto out;
  int64_t now = ts_v_now_ms();
  if (v->last_kid_fetch_ms != INT64_MIN && now - v->last_kid_fetch_ms < v->cooldown_ms) {
    v->st.unknown_kid_refused++;
    goto out;
  }
  v->last_kid_fetch_ms = now;
  rc = fetch_flagged(v);
  if (rc == 0) rc = find_key(v, kid) != NULL;
out:
  pthread_mutex_unlock(&v->mu);
  return rc;
}

/* ---- the verify path ---------------------------------------------------------------------- */

enum feed_mode { FEED_OK, FEED_CLOSED, FEED_ASK };

static enum feed_mode feed_mode(tessera_verifier *v) {
  if (!v->subscribe) return FEED_OK;
  pthread_mutex_lock(&v->mu);
  bool stale = !v->feed_up && ts_v_now_ms() - v->feed_down_since_ms >= v->stale_ms;
  pthread_mutex_unlock(&v->mu);
  if (!stale) return FEED_OK;
  return v->policy == TESSERA_FEED_ASK_DAEMON ? FEED_ASK : FEED_CLOSED;
}

/* After a "reset" the feed may have missed revocations of any token issued up to it: those
 * get the feed-down policy (until they expire, which ends the rule by itself). */
static enum feed_mode reset_mode(tessera_verifier *v, int64_t iat) {
  if (!v->subscribe) return FEED_OK;
  pthread_mutex_lock(&v->mu);
  bool before = v->reset_at != 0 && iat <= v->reset_at;
  pthread_mutex_unlock(&v->mu);
  if (!before) return FEED_OK;
  return v->policy == TESSERA_FEED_ASK_DAEMON ? FEED_ASK : FEED_CLOSED;
}

static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/* Step 2. Returns 0 on a valid hit (with *claims a private copy when claims is not NULL), 1 on
 * a miss, TESSERA_EREJECTED for a cached token revoked since, or TESSERA_ENOMEM. */
static int from_cache(tessera_verifier *v, const uint8_t key[32], int64_t now, json_t **claims,
                      int64_t *iat, tessera_error *err) {
  int rc = 1;
  pthread_mutex_lock(&v->mu);
  ts_ventry *e = ts_vcache_find(&v->cache, key, now);
  if (e && e->rev_gen != v->revoked.gen) {
    if (ts_vrevoked_check(&v->revoked, &e->ti, now)) {
      ts_vcache_remove(&v->cache, e);
      rc = refuse(err, TS_EREVOKED);
      e = NULL;
    } else {
      e->rev_gen = v->revoked.gen;
    }
  }
  if (e) {
    v->st.cache_hits++;
    rc = 0;
    *iat = e->ti.iat;
    if (claims && !(*claims = json_deep_copy(e->claims))) rc = TESSERA_ENOMEM;
  }
  pthread_mutex_unlock(&v->mu);
  return rc;
}

/* The signature, with one refetch for an unknown kid. Returns 0 with *claims, or
 * TESSERA_EREJECTED / TESSERA_EUNAVAILABLE / TESSERA_ENOMEM. */
static int check_signature(tessera_verifier *v, const char *token, size_t len, json_t **claims,
                           tessera_error *err) {
  key_ctx kc = {.v = v};
  int rc = ts_jws_verify(token, len, key_lookup, &kc, "at+jwt", claims, NULL);
  if (rc && kc.unknown) {
    int k = refetch_for(v, kc.kid);
    if (k < 0) return unavailable(err, "unknown kid and the key set could not be refetched");
    if (k == 1) {
      kc.unknown = false;
      rc = ts_jws_verify(token, len, key_lookup, &kc, "at+jwt", claims, NULL);
    }
  }
  if (rc == TS_ENOMEM) return TESSERA_ENOMEM;
  return rc ? refuse(err, TS_EUNAUTHENTICATED) : 0;
}

/* Step 3. Returns 0 with *claims (a new reference), or a refusal / error. */
static int verify_fresh(tessera_verifier *v, const char *token, size_t len,
                        const uint8_t key[32], int64_t now, json_t **claims, int64_t *iat,
                        tessera_error *err) {
  refresh_if_old(v);
  json_t *cl = NULL;
  int rc = check_signature(v, token, len, &cl, err);
  if (rc) return rc;
  ts_claim_rules rules = {now, v->leeway, v->issuer, v->audience};
  rc = ts_jws_check_claims(cl, &rules);
  if (rc == 0 && (!json_is_string(json_object_get(cl, "sub")) ||
                  !json_is_string(json_object_get(cl, "jti"))))
    rc = TS_EUNAUTHENTICATED;
  if (rc) {
    json_decref(cl);
    return refuse(err, rc == TS_EEXPIRED ? TS_EEXPIRED : TS_EUNAUTHENTICATED);
  }
  ts_tokinfo ti;
  ts_tokinfo_of(cl, &ti);
  *iat = ti.iat;
  int64_t valid_until = sat_add(json_integer_value(json_object_get(cl, "exp")), v->leeway);
  json_t *keep = v->cache.cap ? json_deep_copy(cl) : NULL; /* the cache's own copy */
  pthread_mutex_lock(&v->mu);
  bool revoked = ts_vrevoked_check(&v->revoked, &ti, now);
  if (!revoked && keep) ts_vcache_insert(&v->cache, key, keep, valid_until, v->revoked.gen, now);
  else json_decref(keep);
  pthread_mutex_unlock(&v->mu);
  if (revoked) {
    json_decref(cl);
    return refuse(err, TS_EREVOKED);
  }
  *claims = cl;
  return 0;
}

/* Step 4: token.verify {token, check_revoked: true, aud?} on the daemon. */
static int ask_daemon(tessera_verifier *v, const char *token, size_t len, tessera_error *err) {
  json_t *p = json_pack("{s:s%, s:b}", "token", token, len, "check_revoked", 1);
  if (!p || (v->audience && json_object_set_new(p, "aud", json_string(v->audience)))) {
    json_decref(p);
    return TESSERA_ENOMEM;
  }
  pthread_mutex_lock(&v->mu);
  v->st.daemon_fallbacks++;
  pthread_mutex_unlock(&v->mu);
  tessera_error e;
  int rc = ts_v_call(v, "token.verify", p, NULL, &e);
  json_decref(p);
  if (rc == 0) return 0;
  if (rc == TESSERA_EREMOTE) {
    if (strcmp(e.code, "expired") == 0) return refuse(err, TS_EEXPIRED);
    if (strcmp(e.code, "revoked") == 0) return refuse(err, TS_EREVOKED);
    if (strcmp(e.code, "unauthenticated") == 0) return refuse(err, TS_EUNAUTHENTICATED);
  }
  if (rc == TESSERA_ENOMEM) return rc;
  return unavailable(err, "the revocation feed is down and tesserad could not be asked");
}

int tessera_verifier_verify(tessera_verifier *v, const char *token, size_t len,
                            json_t **claims, tessera_error *err) {
  if (claims) *claims = NULL;
  clear_error(err);
  if (!v || !token) return TESSERA_EINVAL;
  enum feed_mode mode = feed_mode(v);
  int64_t now = (int64_t)time(NULL);
  json_t *cl = NULL;
  int rc;
  if (mode == FEED_CLOSED) {
    rc = unavailable(err, "the revocation feed is down (fail-closed policy)");
    goto out;
  }
  if (len > TS_JWS_MAX_TOKEN) {
    rc = refuse(err, TS_EUNAUTHENTICATED);
    goto out;
  }
  uint8_t key[32];
  crypto_generichash(key, sizeof(key), (const unsigned char *)token, len, v->hkey,
                     sizeof(v->hkey));
  int64_t iat = 0;
  rc = from_cache(v, key, now, claims ? &cl : NULL, &iat, err);
  if (rc == 1) rc = verify_fresh(v, token, len, key, now, &cl, &iat, err);
  if (rc == 0 && mode == FEED_OK) mode = reset_mode(v, iat);
  if (rc == 0 && mode == FEED_CLOSED)
    rc = unavailable(err, "issued before the revocation feed was reset (fail-closed policy)");
  if (rc == 0 && mode == FEED_ASK) rc = ask_daemon(v, token, len, err);
  if (rc == 0 && claims) {
    *claims = cl; /* private to this call either way: a copy from the cache, or fresh */
    cl = NULL;
  }
out:
  json_decref(cl);
  pthread_mutex_lock(&v->mu);
  v->st.verifies++;
  if (rc == 0) v->st.accepted++;
  pthread_mutex_unlock(&v->mu);
  return rc;
}

/* ---- stats -------------------------------------------------------------------------------- */

void tessera_verifier_stats_get(tessera_verifier *v, tessera_verifier_stats *st) {
  if (!st) return;
  memset(st, 0, sizeof(*st));
  if (!v) return;
  pthread_mutex_lock(&v->mu);
  *st = v->st;
  st->cached_tokens = v->cache.count;
  st->revocation_entries = v->revoked.count;
  st->keys_version = v->keys_version;
  st->feed_up = v->feed_up;
  pthread_mutex_unlock(&v->mu);
}

int tessera_verifier_wait_feed(tessera_verifier *v, uint64_t seen, int timeout_ms) {
  if (!v) return TESSERA_EINVAL;
  struct timespec until;
  if (timeout_ms >= 0) { /* fed waits on CLOCK_MONOTONIC (see setup) */
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000;
    }
  }
  int rc = 0;
  pthread_mutex_lock(&v->mu);
  while (v->st.feed_events <= seen && rc == 0) {
    if (timeout_ms < 0) pthread_cond_wait(&v->fed, &v->mu);
    else if (pthread_cond_timedwait(&v->fed, &v->mu, &until) != 0)
      rc = v->st.feed_events > seen ? 0 : TESSERA_ETIMEDOUT;
  }
  pthread_mutex_unlock(&v->mu);
  return rc;
}
