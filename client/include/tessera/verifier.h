/* tessera/verifier.h: the local verifier of libtessera: access tokens checked in-process.
 *
 * A tessera_verifier checks access tokens (JWS typ "at+jwt", PROTOCOL.md "tokens") without a
 * round trip to tesserad: it fetches the daemon's public keys (keys.jwks) and verifies the
 * Ed25519 signature and the claims itself, exactly as token.verify does: alg EdDSA/Ed25519,
 * typ "at+jwt" (refresh and purpose tokens are refused), a known kid, iss equal to the
 * configured issuer, aud containing the configured audience (or absent when none is
 * configured), exp and nbf within the leeway, sub and jti present.
 *
 * Keys. The key set is fetched by tessera_verifier_new and cached for the max_age the daemon
 * announces; after that it is refetched by the next verify (the old set stays in use if that
 * fails). A token whose kid is not in the set triggers one refetch, at most once per
 * refetch_cooldown_ms however many unknown kids arrive (a flood of forged kids cannot hammer the
 * daemon); threads that meet the same unknown kid while a refetch runs wait for it. The daemon
 * publishes its next key before it starts signing, so a keys.rotate normally needs no refetch.
 * When a refetch drops a kid, every cached verdict is forgotten.
 *
 * Cache. A verified token is remembered (keyed by a keyed BLAKE2b hash of its bytes, never
 * the token itself) until its exp plus the leeway, so verifying it again costs a hash lookup
 * instead of a signature check. The cache holds cache_entries tokens and evicts with the clock
 * algorithm (an approximation of LRU). Revocations apply to cached tokens as to new ones.
 *
 * Revocation feed (options.subscribe = 1). The verifier opens a second connection, calls
 * events.subscribe, and a background thread applies the daemon's notifications:
 *   "revoked" {kind: "jti"|"family", id, until}: tokens with that jti / fam are refused (as
 *             "revoked") until `until`;
 *   "revoked" {kind: "sub", id, before, until}: tokens of that sub with iat <= before are
 *             refused until `until` (user.revoke: logged out everywhere);
 *   "revoked" of another kind: ignored;
 *   "keys"    {keys_version}: the key set changed; it is refetched at once.
 * A revocation is applied to the very next verify, cached tokens included. The feed resumes
 * where it left off: the verifier remembers the cursor of the last revocation it applied and
 * every subscribe sends it (`since`; the first asks for every revocation still in force), so
 * after a disconnect, a lost notification (queue overflow) or a daemon restart the daemon
 * replays what was committed meanwhile. On a disconnect the thread reconnects with
 * exponential backoff (50 ms doubling to 5 s, jittered), resubscribes and refetches the keys.
 *   While the feed is down a revocation reaches the verifier only once it is back; the
 *   feed-down policy bounds that window: once the feed has been down for feed_stale_ms,
 *     TESSERA_FEED_FAIL_CLOSED  every verify returns TESSERA_EUNAVAILABLE until it is back;
 *     TESSERA_FEED_ASK_DAEMON   every verify that passes the local checks also asks the daemon
 *                               (token.verify {token, check_revoked: true, aud}), one call per
 *                               verify, serialised on one connection; if the daemon cannot
 *                               answer either, TESSERA_EUNAVAILABLE.
 *   When the daemon cannot prove the replay complete (its store changed: another data file, a
 *   restored backup; or it does not know the cursor) it sends "reset": the cache is purged and
 *   every token issued at or before the reset gets the same policy until it expires, while
 *   tokens issued after it verify locally as usual (stats.feed_resets counts them).
 * Without subscribe the verifier is purely stateless: it never learns of revocations (use
 * short access tokens, or token.verify with check_revoked where that matters).
 *
 * Threads. A tessera_verifier is thread-safe: any number of threads may call
 * tessera_verifier_verify and tessera_verifier_stats at once. Shared state sits behind one
 * mutex held only for lookups (signature checks and daemon calls run outside it); daemon calls
 * from verify (refetches, ASK_DAEMON) share one connection under a second mutex. The feed
 * runs on its own thread with its own connection. Do not use a verifier across fork().
 *
 * Errors: functions return 0 or a negative TESSERA_E* code (tessera.h). A token that is
 * refused is TESSERA_EREJECTED with err->code "unauthenticated" (malformed, bad signature,
 * wrong typ/iss/aud, unknown kid), "expired" (exp/nbf outside the leeway) or "revoked", the
 * same codes token.verify answers. TESSERA_EUNAVAILABLE (err->code "unavailable") means no
 * verdict could be reached: the feed-down policy, or keys/daemon unreachable when they were
 * needed. err may be NULL; every call that takes one clears it first. */
#ifndef TESSERA_VERIFIER_H
#define TESSERA_VERIFIER_H

#include <tessera/tessera.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tessera_verifier tessera_verifier;

/* What verify does once the revocation feed has been down for feed_stale_ms. */
#define TESSERA_FEED_FAIL_CLOSED 0 /* refuse every token: TESSERA_EUNAVAILABLE */
#define TESSERA_FEED_ASK_DAEMON 1  /* ask tesserad (token.verify, check_revoked) per verify */

typedef struct tessera_verifier_options {
  const char *socket_path; /* NULL: tessera_default_socket() */
  const char *issuer;      /* expected iss; NULL: "tessera" (tesserad's default --issuer) */
  const char *audience;    /* expected aud; NULL: tokens carrying aud are refused */
  int leeway;              /* seconds of clock skew on exp/nbf (>= 0); default 60 */
  size_t cache_entries;    /* verified tokens remembered; 0 disables the cache; default 10000 */
  int refetch_cooldown_ms; /* unknown-kid refetches at most this often (>= 0); default 1000 */
  int timeout_ms;          /* each daemon call (< 0: no limit); default 2000 */
  int subscribe;           /* 1: run the revocation feed (see above); default 0 */
  int feed_down_policy;    /* TESSERA_FEED_FAIL_CLOSED (default) or TESSERA_FEED_ASK_DAEMON */
  int feed_stale_ms;       /* feed downtime tolerated before the policy applies; default 5000 */
  uint64_t reserved[8];    /* must be zero (see below) */
} tessera_verifier_options;
/* Room to grow: a reserved array, not a leading size field. Callers already write
 * `tessera_verifier_options o; tessera_verifier_options_init(&o);` and need set nothing else;
 * the size is fixed within a major version; a later option takes a reserved slot with zero
 * meaning what the library did before it existed. tessera_verifier_new refuses non-zero
 * reserved members (TESSERA_EINVAL), so a program that sets an option this library does not
 * know gets an error, never a verifier that silently ignores it. */

/* Fills o with the defaults above (reserved zeroed). */
TESSERA_API void tessera_verifier_options_init(tessera_verifier_options *o);

/* Creates a verifier: connects, fetches keys.jwks and, with subscribe, calls events.subscribe
 * and starts the feed thread, all before returning (so a verifier that exists has keys and,
 * with subscribe, a live feed). o may be NULL (defaults); its strings are copied.
 * Returns 0 with *out a new verifier (tessera_verifier_free), or TESSERA_EINVAL (bad options,
 * non-zero reserved members included),
 * TESSERA_ENOMEM, TESSERA_ECONNECT (errno says why), TESSERA_ETIMEDOUT, TESSERA_ECLOSED,
 * TESSERA_EPROTO (a key set or subscribe reply that is not the documented shape, or no usable
 * key in it), TESSERA_EREMOTE (the daemon refused keys.jwks or events.subscribe; err says
 * why); on error *out is NULL and nothing is left running. err may be NULL. */
TESSERA_API int tessera_verifier_new(const tessera_verifier_options *o,
                                     tessera_verifier **out, tessera_error *err);

/* Stops and joins the feed thread, closes both connections, frees everything. NULL is
 * allowed. No other call on v may be running or start. If the feed thread is inside a daemon
 * call at that moment, this waits for it (timeout_ms, at most 10 s). */
TESSERA_API void tessera_verifier_free(tessera_verifier *v);

/* Verifies one access token of len bytes (no NUL needed). Returns 0 when it is valid: then,
 * when claims is not NULL, *claims is a new JSON object holding its claims (the caller's own
 * copy: json_decref it). Otherwise *claims is NULL and the result is TESSERA_EREJECTED (err->code
 * "unauthenticated" | "expired" | "revoked"), TESSERA_EUNAVAILABLE (err->code "unavailable":
 * feed-down policy, or an unknown kid could not be refetched because the daemon is
 * unreachable), TESSERA_EINVAL (v or token NULL) or TESSERA_ENOMEM. Tokens over 8 KiB are
 * "unauthenticated" before any parsing. Thread-safe. */
TESSERA_API int tessera_verifier_verify(tessera_verifier *v, const char *token, size_t len,
                                        json_t **claims, tessera_error *err);

/* Counters since tessera_verifier_new, for tests and metrics. */
typedef struct tessera_verifier_stats {
  uint64_t verifies;            /* tessera_verifier_verify calls */
  uint64_t accepted;            /* ... that returned 0 */
  uint64_t cache_hits;          /* verdicts taken from the cache (no signature check) */
  uint64_t signature_checks;    /* Ed25519 verifications run */
  uint64_t jwks_fetches;        /* keys.jwks calls sent (every reason, the feed's included) */
  uint64_t jwks_fetch_failures; /* ... that failed */
  uint64_t unknown_kid_refused; /* unknown kids refused without a refetch (cooldown) */
  uint64_t revocations_applied; /* jti/family/sub entries taken from the feed */
  uint64_t keys_notifications;  /* "keys" notifications handled */
  uint64_t feed_connects;       /* successful subscriptions (1 at start, +1 per reconnect) */
  uint64_t feed_disconnects;    /* feed connections lost */
  uint64_t feed_events;         /* sum of the four above and feed_resets: see
                                   tessera_verifier_wait_feed */
  uint64_t daemon_fallbacks;    /* token.verify calls made under TESSERA_FEED_ASK_DAEMON */
  size_t cached_tokens;         /* tokens in the cache now */
  size_t revocation_entries;    /* jti/family/sub entries held now */
  int64_t keys_version;         /* of the key set in use */
  int feed_up;                  /* 1 while subscribed (0 without subscribe) */
  uint64_t feed_resets;         /* "reset" notifications: the daemon could not resume */
  uint64_t reserved[16];        /* zero; later counters take these slots, so sizeof stays */
} tessera_verifier_stats;

/* Copies the counters into *st (reserved zeroed). Thread-safe. */
TESSERA_API void tessera_verifier_stats_get(tessera_verifier *v,
                                            tessera_verifier_stats *st);

/* Waits up to timeout_ms (< 0: forever) until stats.feed_events exceeds seen, i.e. until the
 * feed applied something (a revocation entry, a keys change, a reconnect or a disconnect)
 * after the caller read seen. Lets a test, or an app that just revoked a token, wait for the
 * feed without sleeping blindly. Returns 0, TESSERA_ETIMEDOUT, or TESSERA_EINVAL (v NULL).
 * Thread-safe. */
TESSERA_API int tessera_verifier_wait_feed(tessera_verifier *v, uint64_t seen,
                                           int timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
