/* sidecar/store/lmdb/revocations.h: the revocation list, as the store holds it.
 *
 *   revoked[kind | id] = be64 until      kind 'j': a token's jti (revoked, or a single-use
 *                                        token consumed), 'f': a refresh family
 *   cutoffs[sub]       = be64 before     user.revoke: tokens of sub with iat <= before die
 *   expiry[be64 until | 'r' | kind | id] and expiry[until | 'c' | sub]: the sweeper's entries
 * Every entry lasts exactly as long as the thing it revokes could still be accepted (its exp
 * plus the leeway), then the sweeper removes it: the list never grows without bound.
 * Keyed by jti, never by a token's bytes (a token has other valid encodings). */
#ifndef TS_REVOCATIONS_H
#define TS_REVOCATIONS_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_REVOKED_ID_MAX 64

/* Adds (or extends) an entry. Writer thread. */
int ts_revoked_put(ts_txn *t, char kind, const char *id, size_t idlen, int64_t until);
/* 0 when an entry exists that is still in force at now; TS_ENOTFOUND otherwise. */
int ts_revoked_get(ts_txn *t, char kind, const char *id, size_t idlen, int64_t now);
/* Sets sub's cut-off to before (never moves it back); kept until `until`. */
int ts_cutoff_put(ts_txn *t, const char *sub, size_t sublen, int64_t before, int64_t until);
/* The cut-off of sub in force at now, or TS_ENOTFOUND. */
int ts_cutoff_get(ts_txn *t, const char *sub, size_t sublen, int64_t now, int64_t *before);

/* The sweeper's half: deletes what an expiry entry of kind 'r' or 'c' names, if due.
 * Returns records deleted (0 or 1) or TS_E*. */
int ts_revoked_sweep(ts_txn *t, char kind, const uint8_t *key, size_t klen, int64_t now);

#endif
