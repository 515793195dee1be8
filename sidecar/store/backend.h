/* sidecar/store/backend.h: the storage interface, as the domain's atomic operations.
 *
 * The method handlers (methods/, sessions/, tokens/, events.c) see only this: no table,
 * cursor or transaction. Each backend implements every operation atomically:
 *   - lmdb/  (--store lmdb, the default): reads at once in a read transaction on the loop
 *     thread; writes as ts_write operations of the writer thread (group commit), completed
 *     after the commit returned; the sweeper thread deletes what expired.
 *   - redis/ (--store redis://...): every operation is one Redis Function call (FCALL) on the
 *     loop thread, pipelined, with a deadline; expiry is Redis's own (PXAT on every key);
 *     revocations are fanned out to every sidecar through a Redis Stream.
 *
 * Calling convention (every operation):
 *   - Loop thread only. Arguments are copied before the call returns (the caller may free
 *     them at once); a `done` callback runs exactly once, on the loop thread, possibly before
 *     the call returns (LMDB reads). Pointers handed to `done` (records, entries) are valid
 *     during the callback only: copy what must outlive it.
 *   - status: 0, or a domain result named per operation (TS_ENOTFOUND, TS_EREVOKED, ...), or
 *     TS_EUNAVAILABLE: the store could not do it (full, I/O error, Redis unreachable or past
 *     its deadline). A write that answers TS_EUNAVAILABLE may or may not have happened on a
 *     remote store (a reply lost with its connection): it is never reported as done. A write
 *     reported done (status 0) is durable as far as the backend promises (LMDB: fsync'ed
 *     commit; Redis: acknowledged by the master; see README "Choosing a store").
 *   - `now` is the caller's wall-clock second: backends decide liveness with it, never with
 *     their own clock, so every sidecar and backend agree on one rule (ts_session_alive).
 *
 * The loop: a backend keeps uv_run from returning only while an operation's completion is
 * owed (LMDB: the writer's async handle; Redis: a request in flight). Idle connections, the
 * stream reader's blocking read, reconnect and health timers are unref'd (uv_unref), so the
 * loop ends once the server drained and every owed completion ran.
 *
 * Ownership: ts_backend_open returns a backend owned by main (through ts_domain); it is
 * closed after the server drained: ts_backend_close first completes every operation still
 * owed (their done callbacks run), then frees the backend. */
#ifndef TS_BACKEND_H
#define TS_BACKEND_H

#include "config.h"
#include "session.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ts_backend ts_backend;
struct ts_stat_list;

#define TS_FAMILY_ID_CHARS 22 /* a refresh family's id: 16 random bytes, base64url */

/* ---- the revocation feed ---------------------------------------------------------------- */

#define TS_CURSOR_MAX 48 /* the longest cursor string any backend makes */
#define TS_FEED_ID_MAX 256

/* A position in the feed: backends order entries by (major, minor). LMDB: (seq, 0); Redis:
 * the stream id (ms, seq). {0, 0} is before every entry. */
typedef struct ts_feed_pos {
  uint64_t major, minor;
} ts_feed_pos;

static inline int ts_feed_pos_cmp(ts_feed_pos a, ts_feed_pos b) {
  if (a.major != b.major) return a.major < b.major ? -1 : 1;
  return a.minor < b.minor ? -1 : a.minor > b.minor;
}

/* Entry kinds: 'j' a jti ("jti"), 'f' a refresh family ("family"), 's' a sub cut off by
 * user.revoke ("sub", with before). Sessions are not in the feed: only the daemon validates
 * them, and revoking one stays a pure delete, which a full store or disk can always take. */
typedef struct ts_feed_entry {
  ts_feed_pos pos;
  char kind;
  int64_t until;  /* in force through this second */
  int64_t before; /* kind 's': the cut-off */
  char id[TS_FEED_ID_MAX + 1];
  size_t id_len;
} ts_feed_entry;

/* The protocol's name of a kind ("jti", ...), or NULL for an unknown letter (feed_kind.c). */
const char *ts_feed_kind_name(char kind);

/* ---- results handed to done callbacks --------------------------------------------------- */

typedef void (*ts_done_fn)(void *ctx, int status);
/* n: how many things the operation revoked (0 or 1 for one, any for many). */
typedef void (*ts_count_fn)(void *ctx, int status, unsigned n);
/* rec: the session (status 0 only). */
typedef void (*ts_session_fn)(void *ctx, int status, const ts_session_rec *rec);
/* One page of session.list: recs[0..n), in handle order; more: a next page may follow,
 * starting after handle `last`. */
typedef void (*ts_list_fn)(void *ctx, int status, const ts_session_rec *recs, size_t n,
                           bool more, const uint8_t last[TS_HANDLE_BYTES]);
/* rec: the family record after the operation, with "id" set to the family id (status 0; the
 * callback borrows it). */
typedef void (*ts_family_fn)(void *ctx, int status, json_t *rec);
/* user.revoke: sessions and families revoked, and the cut-off second `at` applied. */
typedef void (*ts_user_fn)(void *ctx, int status, unsigned sessions, unsigned families,
                           int64_t at);
/* A page of the feed: entries in force at the read's now, in order; last: the position of the
 * last entry examined (after, when none); more: entries past last may remain. */
typedef void (*ts_feed_fn)(void *ctx, int status, const ts_feed_entry *e, size_t n,
                           ts_feed_pos last, bool more);
/* events.subscribe: latest committed position; resumable false: `since` cannot be resumed
 * without a gap (send reset; then after is {0,0}). after: where the replay starts. */
typedef void (*ts_resume_fn)(void *ctx, int status, bool resumable, ts_feed_pos after,
                             ts_feed_pos latest);

/* What token.refresh presents: the verified refresh token's claims and the rules to apply. */
typedef struct ts_refresh_in {
  const char *fam;   /* the family id claim */
  const char *jti;   /* the presented refresh token's jti */
  const char *sub;   /* its sub (the cut-off is checked against iat) */
  size_t sub_len;
  int64_t iat, now;
  const char *kid;   /* the active key id: signs the successor */
  const char *next_jti, *next_access; /* fresh random ids for a rotation */
  int64_t grace;     /* --refresh-grace */
  int64_t max_lifetime; /* --refresh-max-lifetime */
  int64_t leeway;
} ts_refresh_in;

/* What token.verify {check_revoked}, token.consume and session.exchange check. */
typedef struct ts_claims_ref {
  const char *jti;   /* may be NULL */
  const char *fam;   /* may be NULL */
  const char *sub;   /* may be NULL */
  size_t sub_len;
  int64_t iat;
} ts_claims_ref;

/* ---- the operations ---------------------------------------------------------------------- */

typedef struct ts_backend_ops {
  const char *name; /* "lmdb", "redis" */

  /* Sessions (sessions/session.h holds the record and its liveness rule). */
  /* Stores a prepared session. */
  void (*session_create)(ts_backend *b, const ts_session_new *n, ts_done_fn done, void *ctx);
  /* The session of hash, if alive at now; else TS_ENOTFOUND. */
  void (*session_get)(ts_backend *b, const uint8_t hash[TS_HASH_BYTES], int64_t now,
                      ts_session_fn done, void *ctx);
  /* Slides the idle expiry: last_seen_at = at if later. Fire and forget (a lost touch only
   * makes the session expire sooner). */
  void (*session_touch)(ts_backend *b, const uint8_t hash[TS_HASH_BYTES], int64_t at);
  /* Moves the live session of hash to new_hash (last_seen_at = now); done gets the moved
   * record. TS_ENOTFOUND when not alive. */
  void (*session_rotate)(ts_backend *b, const uint8_t hash[TS_HASH_BYTES],
                         const uint8_t new_hash[TS_HASH_BYTES], int64_t now, ts_session_fn done,
                         void *ctx);
  /* Deletes the session of hash (or, hash NULL, of handle); n: 1 if it was alive. */
  void (*session_revoke)(ts_backend *b, const uint8_t *hash, const uint8_t *handle, int64_t now,
                         ts_count_fn done, void *ctx);
  /* Deletes every session of sub but the one with handle except (NULL: none); n: alive ones. */
  void (*session_revoke_all)(ts_backend *b, const char *sub, size_t sub_len,
                             const uint8_t *except, int64_t now, ts_count_fn done, void *ctx);
  /* One page of sub's live sessions after handle after (NULL: from the first). */
  void (*session_list)(ts_backend *b, const char *sub, size_t sub_len, const uint8_t *after,
                       size_t limit, int64_t now, ts_list_fn done, void *ctx);

  /* Refresh families (store/lmdb/families.h documents the record). */
  /* Stores a new family; done gets rec back. */
  void (*family_create)(ts_backend *b, const char *fam, const json_t *rec, int64_t leeway,
                        ts_family_fn done, void *ctx);
  /* The refresh decision, atomically: TS_EREVOKED (no live family, the sub's cut-off, the jti
   * denylisted), TS_EEXPIRED (past the family's max lifetime), TS_EREUSED (an older jti, or the
   * previous one past the grace: the family is revoked and announced in the same write), or 0
   * with the record to sign from (rotated, or unchanged for a retry within the grace). */
  void (*family_refresh)(ts_backend *b, const ts_refresh_in *in, ts_family_fn done, void *ctx);
  /* Revokes fam until max(its record's exp, until) + leeway, deletes the record, announces it
   * when it was live; n: 1 if it was live. */
  void (*family_revoke)(ts_backend *b, const char *fam, int64_t until, int64_t leeway,
                        ts_count_fn done, void *ctx);

  /* The revocation list. */
  /* Denylists jti until `until` (already including the leeway) and announces it; n: 1 if it
   * was not already listed. proven: the jti came from a token that verified (a full LMDB
   * store lets it use its whole reserve). */
  void (*revoke_jti)(ts_backend *b, const char *jti, int64_t until, bool proven, ts_count_fn done,
                     void *ctx);
  /* user.revoke: deletes sub's sessions, revokes its families, sets its cut-off to the
   * second the write applies in (>= now), kept until now + longest, announced. */
  void (*user_revoke)(ts_backend *b, const char *sub, size_t sub_len, int64_t now,
                      int64_t longest, int64_t leeway, ts_user_fn done, void *ctx);
  /* 0, or TS_EREVOKED when the jti or family is listed or iat <= the sub's cut-off. */
  void (*revocation_check)(ts_backend *b, const ts_claims_ref *c, int64_t now, ts_done_fn done,
                           void *ctx);
  /* Single use: checks c as revocation_check does, then lists jti until `until`; with
   * session (not NULL), stores it in the same write (session.exchange). TS_EREVOKED when the
   * token was used or revoked. */
  void (*consume)(ts_backend *b, const ts_claims_ref *c, int64_t until, int64_t now,
                  const ts_session_new *session, ts_done_fn done, void *ctx);

  /* The feed. */
  /* Where a subscriber sending since (NULL: none, start from latest) resumes. */
  void (*feed_resume)(ts_backend *b, const char *since, size_t since_len, ts_resume_fn done,
                      void *ctx);
  /* Entries after `after` still in force at now, at most max examined. */
  void (*feed_read)(ts_backend *b, ts_feed_pos after, int64_t now, size_t max, ts_feed_fn done,
                    void *ctx);
  /* The cursor string of a position (at most TS_CURSOR_MAX chars). */
  void (*cursor_format)(ts_backend *b, ts_feed_pos pos, char out[TS_CURSOR_MAX + 1]);
  /* A shared store (NULL for LMDB): tells the other sidecars that this one changed the key
   * set (keys.rotate), so that they reload their key directory (their on_keys runs). Fire and
   * forget: a failure is logged. */
  void (*keys_changed)(ts_backend *b, int64_t keys_version);

  /* Gauges for sys.stats (sessions, families, ...) and the backend's state ("store_up"). */
  void (*stats)(ts_backend *b, struct ts_stat_list *l);
  /* false while the store cannot serve (Redis unreachable): readiness. */
  bool (*ready)(ts_backend *b);
  void (*close)(ts_backend *b);
} ts_backend_ops;

/* Told when entries up to `last` were committed (by this sidecar or, with Redis, any):
 * events.c pumps its subscribers. The server sets it when it starts (NULL until then). */
typedef void (*ts_published_fn)(void *ctx, ts_feed_pos last);

struct ts_backend {
  const ts_backend_ops *ops;
  ts_published_fn on_published;
  void *published_ctx;
  void (*on_keys)(void *ctx); /* another sidecar changed the key set: reload the keys */
  void *keys_ctx;
};

/* Opens the backend cfg->store names (backend.c). Returns 0 or TS_E* (logged). */
int ts_backend_open(ts_backend **out, const ts_config *cfg, void *uv_loop);
static inline void ts_backend_close(ts_backend *b) {
  if (b) b->ops->close(b);
}

/* Backends (each in its folder). */
int ts_backend_lmdb_open(ts_backend **out, const ts_config *cfg, void *uv_loop);
int ts_backend_redis_open(ts_backend **out, const ts_config *cfg, void *uv_loop);

#endif
