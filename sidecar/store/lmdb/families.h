/* sidecar/store/lmdb/families.h: refresh-token families, as the store holds them.
 *
 *   families[fam] = JSON {sub, aud?, scope?, claims?, access_ttl, refresh_ttl, kid,
 *                         current, access, previous, rotated_at, exp, generation,
                         created_at}
 *   fam_by_sub[sub] += fam                      (for user.revoke)
 *   expiry[be64 exp + leeway | 'F' | fam]       (the sweeper drops dead families)
 * `current` is the jti of the one refresh token that may rotate, `access` the jti of the access
 * token issued with it, `previous` the refresh jti it replaced at `rotated_at`. The successor
 * pair is never stored: it is signed again from these fields (Ed25519 is deterministic), so a
 * retry within the grace window gets the identical pair and the store holds no live token.
 * `created_at` is the time of the token.pair: exp never passes created_at +
 * --refresh-max-lifetime, however often the family rotates (records from before the field
 * existed get their rotated_at as created_at at their next rotation).
 * A revoked family is deleted and listed in the revocation list ('f') until its exp + leeway. */
#ifndef TS_FAMILIES_H
#define TS_FAMILIES_H

#include "backend.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>


/* *rec: a new reference. TS_ENOTFOUND when there is no such (live) family. */
int ts_family_get(ts_txn *t, const char *fam, json_t **rec);
/* Writes rec (new or updated); old_exp: the exp the stored record had (-1: new family). */
int ts_family_put(ts_txn *t, const char *fam, const json_t *rec, int64_t old_exp, int64_t leeway);
/* Revokes: lists fam as revoked until max(exp of the record, until) + leeway and deletes the
 * record. *was_live: a record existed; *listed_until: when the entry can be forgotten. */
int ts_family_revoke(ts_txn *t, const char *fam, int64_t until, int64_t leeway, bool *was_live,
                     int64_t *listed_until);
/* ts_family_revoke, and when the family was live, its entry in the revocation feed (the
 * seq into *feed_last, published by the caller once durable) and one more in *revoked. */
int ts_family_revoke_announced(ts_txn *t, const char *fam, int64_t until, int64_t leeway,
                               uint64_t *feed_last, unsigned *revoked);
/* Families of sub, into ids (cap of them). Returns how many (>= 0) or TS_E*. */
int ts_family_list_sub(ts_txn *t, const char *sub, size_t sublen,
                       char (*ids)[TS_FAMILY_ID_CHARS + 1], size_t cap);
/* The sweeper's half for 'F' entries. Returns records deleted (0/1) or TS_E*. */
int ts_family_sweep(ts_txn *t, const uint8_t *fam, size_t len, int64_t now);

#endif
