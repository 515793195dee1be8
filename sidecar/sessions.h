/* sidecar/sessions.h: the session.* method handlers and what other domains reuse of them. */
#ifndef TS_SESSIONS_H
#define TS_SESSIONS_H

#include "params.h"
#include "server.h"
#include "session_store.h"

void ts_session_create(ts_req *r, const msgpack_object *params);
void ts_session_validate(ts_req *r, const msgpack_object *params);
void ts_session_rotate(ts_req *r, const msgpack_object *params);
void ts_session_revoke(ts_req *r, const msgpack_object *params);
void ts_session_list(ts_req *r, const msgpack_object *params);
void ts_session_revoke_all(ts_req *r, const msgpack_object *params);

/* A new session, prepared on the loop thread, written by the writer (ts_session_put_new). */
typedef struct ts_session_new {
  uint8_t sid[TS_SID_BYTES]; /* secret: ts_session_new_wipe */
  uint8_t hash[TS_HASH_BYTES];
  uint8_t handle[TS_HANDLE_BYTES];
  uint8_t *rec; /* encoded record (owned) */
  size_t rec_len;
  int64_t expires_at, idle_expires_at;
} ts_session_new;

int ts_session_prepare(ts_session_new *n, const char *sub, size_t sub_len, int64_t now,
                       int64_t ttl, int64_t idle_ttl, const msgpack_object *data,
                       const ts_param_value *ip, const ts_param_value *ua);
void ts_session_new_wipe(ts_session_new *n);
int ts_session_put_new(ts_txn *t, const ts_session_new *n);

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
