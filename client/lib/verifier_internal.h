/* client/lib/verifier_internal.h: the local verifier's private parts (never installed).
 *
 * Three files:
 *   verifier.c  the public API: options, the verify path (cache, signature, claims,
 *               revocations, feed-down policy), stats;
 *   vcache.c    two tables, no locking of their own: the verified-token cache (keyed BLAKE2b
 *               of the token -> claims, a fixed array with chained buckets and a clock hand)
 *               and the revocation set (jti, family, per-sub cut-offs, until their `until`);
 *   vfeed.c     talking to the daemon: keys.jwks fetch/parse/install, the call connection
 *               verify uses, and the feed thread (events.subscribe, notifications, reconnect).
 *
 * Locks, always taken in this order, never the other way round:
 *   fetch_mu  serialises every key fetch with its install, so sets are installed in the order
 *             they were fetched (the feed's fetch and a verify's refetch never cross);
 *   call_mu   owns the call connection (verify-path refetches and ASK_DAEMON calls);
 *   mu        everything shared: keys, cache, revocations, feed state, stats, stop. Held only
 *             for lookups and swaps: no I/O and no signature check ever runs under it.
 * The feed thread owns its own connection; nobody else touches it after tessera_verifier_new.
 *
 * Invariants under mu:
 *   - every cached entry passed the signature and claim checks with the current key set or a
 *     set whose kids are all still present (installing a set that drops a kid clears the
 *     cache); entry->rev_gen == revoked.gen means it was checked against every revocation
 *     held; revocations are only ever added (pruning drops entries whose tokens are dead);
 *   - feed_up is false exactly while the feed thread has no subscribed connection, and then
 *     feed_down_since_ms is when it lost it. */
#ifndef TS_CLIENT_VERIFIER_INTERNAL_H
#define TS_CLIENT_VERIFIER_INTERNAL_H

#include "internal.h"
#include "tessera/verifier.h"

#include "jws.h"

#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_V_NIL UINT32_MAX
#define TS_V_MAX_KEYS 256 /* keys taken from one JWKS; more are ignored */
#define TS_V_CURSOR_MAX 64 /* bytes of a feed cursor (PROTOCOL.md "events") */

/* ---- the claims the revocation checks read (pointers into a claims object) ---- */

typedef struct ts_tokinfo {
  const char *jti, *fam, *sub; /* fam may be NULL */
  size_t jti_len, fam_len, sub_len;
  int64_t iat; /* 0 when absent: any cut-off of its sub then applies, as in the daemon */
} ts_tokinfo;

/* Fills t from verified claims (jti and sub must be strings). */
void ts_tokinfo_of(const json_t *claims, ts_tokinfo *t);

/* ---- the verified-token cache (vcache.c) ---- */

typedef struct ts_ventry {
  uint8_t key[32];     /* keyed BLAKE2b-256 of the token */
  int64_t valid_until; /* exp + leeway, wall clock */
  uint64_t rev_gen;    /* revoked.gen when last checked against the revocation set */
  json_t *claims;      /* owned; private to the cache, touched only under the verifier's mu */
  ts_tokinfo ti;       /* points into claims */
  uint32_t next;       /* bucket chain, or the free list; TS_V_NIL ends both */
  uint8_t used, ref;   /* ref: the clock's second-chance bit */
} ts_ventry;

typedef struct ts_vcache {
  ts_ventry *e;
  uint32_t cap, count;
  uint32_t *buckets; /* nbuckets: a power of two >= cap */
  uint32_t nbuckets;
  uint32_t free_head;
  uint32_t hand;
} ts_vcache;

/* cap 0: a disabled cache (every call is a no-op, find never hits). Returns 0 or
 * TESSERA_ENOMEM / TESSERA_EINVAL (cap too large). */
int ts_vcache_init(ts_vcache *c, size_t cap);
void ts_vcache_close(ts_vcache *c);
/* Forgets every entry. */
void ts_vcache_clear(ts_vcache *c);
/* The live entry for key (marking it recently used), or NULL; an entry found expired at now
 * is removed. */
ts_ventry *ts_vcache_find(ts_vcache *c, const uint8_t key[32], int64_t now);
/* Removes e (found by ts_vcache_find). */
void ts_vcache_remove(ts_vcache *c, ts_ventry *e);
/* Remembers claims (takes the caller's reference: a copy nobody else holds) for key until
 * valid_until, evicting an expired or not recently used entry when full. A key already
 * present keeps its entry (claims is then released). */
void ts_vcache_insert(ts_vcache *c, const uint8_t key[32], json_t *claims, int64_t valid_until,
                      uint64_t rev_gen, int64_t now);

/* ---- the revocation set (vcache.c) ---- */

typedef struct ts_vrev ts_vrev;

typedef struct ts_vrevoked {
  ts_vrev **buckets;
  size_t nbuckets; /* 0 or a power of two */
  size_t count;
  uint64_t gen; /* bumped by every add that can refuse a token it did not refuse before */
  uint8_t hkey[crypto_shorthash_KEYBYTES];
} ts_vrevoked;

void ts_vrevoked_init(ts_vrevoked *r);
void ts_vrevoked_close(ts_vrevoked *r);
/* Adds or widens an entry: kind 'j' (jti), 'f' (family) or 's' (sub, with before). Entries
 * that already ended (until < now) are ignored. Returns 0 or TESSERA_ENOMEM. */
int ts_vrevoked_add(ts_vrevoked *r, char kind, const char *id, size_t len, int64_t until,
                    int64_t before, int64_t now);
/* True when the token t is revoked at now. */
bool ts_vrevoked_check(const ts_vrevoked *r, const ts_tokinfo *t, int64_t now);
/* Drops entries whose until passed. */
void ts_vrevoked_prune(ts_vrevoked *r, int64_t now);

/* ---- the verifier ---- */

typedef struct ts_vkey {
  char kid[TS_JWS_KID_MAX + 1];
  uint8_t pk[32];
} ts_vkey;

struct tessera_verifier {
  /* options, immutable after new */
  char *socket_path, *issuer, *audience; /* audience may be NULL */
  int64_t leeway;
  int cooldown_ms, timeout_ms, feed_timeout_ms, policy, stale_ms;
  bool subscribe;
  uint8_t hkey[crypto_generichash_KEYBYTES]; /* keys the token hash of the cache */

  pthread_mutex_t fetch_mu;
  pthread_mutex_t call_mu;
  tessera_client *call; /* under call_mu; NULL until needed / after a broken connection */

  pthread_mutex_t mu;
  pthread_cond_t fetched; /* a verify-path fetch finished */
  pthread_cond_t fed;     /* stats.feed_events changed */
  ts_vkey *keys;          /* the key set in use */
  size_t nkeys;
  int64_t keys_version;
  int64_t keys_fetched_ms, keys_max_age_ms; /* monotonic */
  bool fetching;                            /* a verify-path fetch runs */
  int64_t last_kid_fetch_ms;                /* monotonic; INT64_MIN: never */
  int64_t last_stale_try_ms;                /* monotonic; INT64_MIN: never */
  ts_vcache cache;
  ts_vrevoked revoked;
  bool feed_up;
  int64_t feed_down_since_ms;
  int64_t reset_at; /* wall clock second of the last "reset"; 0: none. Tokens issued at or
                       before it get the feed-down policy: the feed may have missed their
                       revocation */
  bool stop;
  tessera_verifier_stats st;

  /* the feed thread */
  pthread_t thread;
  bool thread_started;
  int wake[2]; /* a pipe: free() writes a byte to wake the thread */
  tessera_client *feed; /* handed from new() to the thread */
  /* The cursor of the last feed entry applied ("0" before any): resubscribes resume after it.
   * Touched only by whoever owns the feed connection (new(), then the feed thread). */
  char cursor[TS_V_CURSOR_MAX + 1];
};

/* Monotonic milliseconds. */
int64_t ts_v_now_ms(void);

/* Fills err (may be NULL) with code and message. */
void ts_v_set_error(tessera_error *err, const char *code, const char *message);

/* Fetches keys.jwks on c and installs the set (caller holds fetch_mu and owns c). Counts the
 * fetch in stats. Returns 0 or a TESSERA_E* code (err, may be NULL, filled on EREMOTE). */
int ts_v_fetch_keys(tessera_verifier *v, tessera_client *c, int timeout_ms, tessera_error *err);

/* One call on the call connection (connecting when needed, reconnecting once when an idle
 * connection turned out closed). Takes call_mu itself. */
int ts_v_call(tessera_verifier *v, const char *method, const json_t *params, json_t **result,
              tessera_error *err);

/* Fetches keys on the call connection: takes fetch_mu and call_mu. */
int ts_v_refetch(tessera_verifier *v, tessera_error *err);

/* Connects, subscribes and fetches keys on a new connection; on success *out is it and the
 * feed is marked up. */
int ts_v_feed_connect(tessera_verifier *v, tessera_client **out, tessera_error *err);
/* Starts the feed thread on v->feed. Returns 0 or TESSERA_ENOMEM. */
int ts_v_feed_start(tessera_verifier *v);
/* Stops and joins the feed thread (if started) and closes its connection. */
void ts_v_feed_stop(tessera_verifier *v);

#endif
