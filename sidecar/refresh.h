/* sidecar/refresh.h: access + refresh tokens (PROTOCOL.md token.pair, token.refresh,
 * token.revoke, user.revoke). */
#ifndef TS_REFRESH_H
#define TS_REFRESH_H

#include "server.h"

void ts_token_pair(ts_req *r, const msgpack_object *params);
void ts_token_refresh(ts_req *r, const msgpack_object *params);
void ts_token_revoke(ts_req *r, const msgpack_object *params);
void ts_user_revoke(ts_req *r, const msgpack_object *params);

#endif
