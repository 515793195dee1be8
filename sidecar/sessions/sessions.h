/* sidecar/sessions/sessions.h: the session operations behind the session.* methods, and what
 * session.exchange reuses of them.
 *
 * Loop thread. Each operation takes a request whose params were already checked and replies
 * to it exactly once, from the backend's completion (store/backend.h): reads at once or after
 * a round trip, writes once durable. The record is session.h. */
#ifndef TS_SESSIONS_H
#define TS_SESSIONS_H

#include "params.h"
#include "server.h"
#include "session.h"

/* Replies with the session whose sid hashes to hash (unauthenticated when unknown or dead),
 * with the anomalies of the client ip/ua presented (each may be absent); may queue a touch
 * (sliding idle expiry) or, under --bind-policy enforce with a changed user agent, revoke it
 * and answer unauthenticated. */
void ts_session_validate(ts_req *r, const uint8_t hash[TS_HASH_BYTES], const ts_param_value *ip,
                         const ts_param_value *ua);
/* A new sid for the session of hash; replies with the create shape. */
void ts_session_rotate(ts_req *r, const uint8_t hash[TS_HASH_BYTES]);
/* Revokes the session of hash, or (hash NULL) of handle; replies {revoked: 0|1}. */
void ts_session_revoke(ts_req *r, const uint8_t *hash, const uint8_t *handle);
/* Revokes every session of sub (sub_len <= 256) but the one with handle except (NULL: none);
 * replies {revoked: n}. */
void ts_session_revoke_all(ts_req *r, const char *sub, size_t sub_len, const uint8_t *except);
/* Replies with one page of sub's live sessions: at most limit, after handle after (NULL: from
 * the first), and `next` when more may follow. */
void ts_session_list(ts_req *r, const char *sub, size_t sub_len, size_t limit,
                     const uint8_t *after);

/* Creates a session for sub and replies with the create shape once it is durable (used by
 * session.exchange too). data, ip, ua may be NULL. */
void ts_session_start_create(ts_req *r, const char *sub, size_t sub_len, int64_t ttl,
                             int64_t idle_ttl, const msgpack_object *data, const ts_param_value *ip,
                             const ts_param_value *ua);
/* Packs and sends the {sid, handle, expires_at, expires_in, idle_expires_at, cookie} reply. */
void ts_session_pack_issued(ts_req *r, const uint8_t sid[TS_SID_BYTES],
                            const uint8_t handle[TS_HANDLE_BYTES], int64_t expires_at,
                            int64_t idle_expires_at);

#endif
