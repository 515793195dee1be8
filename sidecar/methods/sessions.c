/* sidecar/methods/sessions.c: the session.* methods (PROTOCOL.md "sessions"): their rows,
 * param specs, and what their params mean.
 *
 * Dispatch has matched the params against the row's spec; the handlers here interpret them:
 * defaults and maxima of durations (--session-ttl, --max-session-ttl), the nested `client`
 * map, and the decoding of sids and handles. A sid that cannot be one is a bad credential
 * (unauthenticated), never bad_request; a handle that cannot be one revokes nothing. Then the
 * session operation (sessions/sessions.c) does the work and replies. session.exchange
 * consumes a purpose token: its row is in methods/tokens.c. */
#include "method.h"

#include "domain.h"
#include "error.h"
#include "session.h"
#include "sessions.h"

#include <sodium.h>
#include <string.h>

#define LIST_DEFAULT 100
#define LIST_MAX 1000

static ts_domain *domain_of(ts_req *r) { return r->conn->server->domain; }

static const ts_param client_spec[] = {
    {"ip", TS_P_STR, false, 1, 64},
    {"ua", TS_P_STR, false, 0, 1024}, /* "": no user agent (create: none bound) */
};

/* Parses the optional `client` map into ip/ua. Returns false after replying bad_request. */
static bool parse_client(ts_req *r, const ts_param_value *v, ts_param_value out[2]) {
  memset(out, 0, 2 * sizeof(*out));
  if (!v->present) return true;
  char why[160];
  if (ts_params_parse(v->obj, client_spec, TS_PARAMS_N(client_spec), out, why, sizeof(why)) !=
      0) {
    ts_req_failf(r, TS_EBAD_REQUEST, "client: %s", why);
    return false;
  }
  return true;
}

/* Checks a duration param against its default and maximum. */
static bool duration_or_default(ts_req *r, const ts_param_value *v, const char *name, int64_t def,
                                int64_t max, int64_t *out) {
  *out = v->present ? v->i64 : def;
  if (*out > max) {
    ts_req_failf(r, TS_EBAD_REQUEST, "%s must be 1..%lld seconds", name, (long long)max);
    return false;
  }
  return true;
}

/* Decodes and hashes a sid param; false (after replying unauthenticated) if malformed. */
static bool sid_hash_of(ts_req *r, const ts_param_value *v, uint8_t hash[TS_HASH_BYTES]) {
  uint8_t sid[TS_SID_BYTES];
  bool ok = ts_session_sid_decode(v->str, v->len, sid);
  if (ok) ts_session_hash(sid, hash);
  sodium_memzero(sid, sizeof(sid));
  if (!ok && r) ts_req_fail(r, TS_EUNAUTHENTICATED, NULL);
  return ok;
}

/* ---- session.create -------------------------------------------------------------------- */

static const ts_param create_params[] = {
    {"sub", TS_P_STR, true, 1, 256},
    {"ttl", TS_P_DURATION, false, 0, 0},
    {"idle_ttl", TS_P_DURATION, false, 0, 0},
    {"data", TS_P_MAP, false, 0, 4096},
    {"client", TS_P_MAP, false, 0, 4096},
};

static void session_create(ts_req *r, const ts_param_value *v) {
  ts_param_value cl[2];
  const ts_config *cfg = domain_of(r)->cfg;
  int64_t ttl, idle;
  if (!duration_or_default(r, &v[1], "ttl", cfg->session_ttl, cfg->max_session_ttl, &ttl) ||
      !duration_or_default(r, &v[2], "idle_ttl", cfg->session_idle_ttl, cfg->max_session_ttl,
                           &idle) ||
      !parse_client(r, &v[4], cl))
    return;
  ts_session_start_create(r, v[0].str, v[0].len, ttl, idle, v[3].present ? v[3].obj : NULL,
                          &cl[0], &cl[1]);
}

/* ---- session.validate and session.rotate ------------------------------------------------ */

static const ts_param validate_params[] = {
    {"sid", TS_P_CREDENTIAL, true, 0, 0},
    {"client", TS_P_MAP, false, 0, 4096},
};

static void session_validate(ts_req *r, const ts_param_value *v) {
  ts_param_value cl[2];
  uint8_t hash[TS_HASH_BYTES];
  if (!parse_client(r, &v[1], cl) || !sid_hash_of(r, &v[0], hash)) return;
  ts_session_validate(r, hash, &cl[0], &cl[1]);
}

static const ts_param rotate_params[] = {{"sid", TS_P_CREDENTIAL, true, 0, 0}};

static void session_rotate(ts_req *r, const ts_param_value *v) {
  uint8_t hash[TS_HASH_BYTES];
  if (sid_hash_of(r, &v[0], hash)) ts_session_rotate(r, hash);
}

/* ---- session.revoke and session.revoke_all ---------------------------------------------- */

static const ts_param revoke_params[] = {
    {"sid", TS_P_CREDENTIAL, false, 0, 0},
    {"handle", TS_P_STR, false, 1, 256},
};

static const char *revoke_check(const ts_param_value *v) {
  return v[0].present == v[1].present ? "give exactly one of sid and handle" : NULL;
}

static void session_revoke(ts_req *r, const ts_param_value *v) {
  uint8_t hash[TS_HASH_BYTES], handle[TS_HANDLE_BYTES];
  bool ok = v[0].present ? sid_hash_of(NULL, &v[0], hash)
                         : ts_session_handle_decode(v[1].str, v[1].len, handle);
  if (!ok) /* an id that cannot exist revokes nothing */
    ts_req_reply_count(r, 0, "revoked", 0);
  else
    ts_session_revoke(r, v[0].present ? hash : NULL, handle);
}

static const ts_param revoke_all_params[] = {
    {"sub", TS_P_STR, true, 1, 256},
    {"except", TS_P_STR, false, 1, 256},
};

static void session_revoke_all(ts_req *r, const ts_param_value *v) {
  uint8_t except[TS_HANDLE_BYTES];
  if (v[1].present && !ts_session_handle_decode(v[1].str, v[1].len, except)) {
    ts_req_fail(r, TS_EBAD_REQUEST, "except is not a session handle");
    return;
  }
  ts_session_revoke_all(r, v[0].str, v[0].len, v[1].present ? except : NULL);
}

/* ---- session.list ----------------------------------------------------------------------- */

static const ts_param list_params[] = {
    {"sub", TS_P_STR, true, 1, 256},
    {"limit", TS_P_INT, false, 0, 0},
    {"after", TS_P_STR, false, 1, 64},
};

static void session_list(ts_req *r, const ts_param_value *v) {
  int64_t limit = v[1].present ? v[1].i64 : LIST_DEFAULT;
  if (limit < 1 || limit > LIST_MAX) {
    ts_req_failf(r, TS_EBAD_REQUEST, "limit must be 1..%d", LIST_MAX);
    return;
  }
  uint8_t after[TS_HANDLE_BYTES];
  if (v[2].present && !ts_session_handle_decode(v[2].str, v[2].len, after)) {
    ts_req_fail(r, TS_EBAD_REQUEST, "after must be a `next` from session.list");
    return;
  }
  ts_session_list(r, v[0].str, v[0].len, (size_t)limit, v[2].present ? after : NULL);
}

const ts_method ts_method_session_create = {
    .name = "session.create", .handler = session_create, TS_PARAMS(create_params)};
const ts_method ts_method_session_validate = {
    .name = "session.validate", .handler = session_validate, TS_PARAMS(validate_params)};
const ts_method ts_method_session_rotate = {
    .name = "session.rotate", .handler = session_rotate, TS_PARAMS(rotate_params)};
const ts_method ts_method_session_revoke = {
    .name = "session.revoke",
    .handler = session_revoke,
    TS_PARAMS(revoke_params),
    .check = revoke_check};
const ts_method ts_method_session_list = {
    .name = "session.list", .handler = session_list, TS_PARAMS(list_params)};
const ts_method ts_method_session_revoke_all = {
    .name = "session.revoke_all", .handler = session_revoke_all, TS_PARAMS(revoke_all_params)};
