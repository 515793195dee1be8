/* sidecar/observe.c: the reply hooks (see observe.h): metrics counters and audit lines.
 *
 * Owner: the HTTP edge's engineer (issue 13). Metrics: every reply counts in
 * stats.method_codes[method][code] and the latency histogram (uv_hrtime from dispatch to the
 * reply being complete, so a write's commit is inside). Revocations by kind are read from the
 * replies: session.revoke / revoke_all {revoked}, user.revoke {sessions, families} (+1 user),
 * token.revoke by its params (family, jti, or the token's typ), token.refresh `reused` (+1
 * family).
 *
 * Audit: only for the methods below, and only when --audit-log is on. What a request said is
 * kept at its start (public params: sub, handle, purpose, family, jti; a sid as a keyed hash;
 * a token as its unverified jti/fam/sub claims, used to name it only, never to decide), then
 * the line is written when the reply is complete, with the outcome and the public ids of the
 * reply (handle, kid). Not covered from here (they happen inside session/token code and have
 * no reply of their own): a session revoked by --bind-policy enforce during session.validate,
 * and expiries swept by the sweeper. */
#include "observe.h"

#include "audit.h"
#include "error.h"
#include "method.h"
#include "rpc.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static const int codes[TS_STATS_N_CODES - 1] = {
    TS_EBAD_REQUEST, TS_EUNKNOWN_METHOD, TS_EUNAUTHENTICATED, TS_EEXPIRED, TS_EREVOKED,
    TS_EREUSED,      TS_EFORBIDDEN,      TS_EOVERLOADED,      TS_EUNAVAILABLE, TS_EINTERNAL};

const char *ts_observe_code_name(size_t i) {
  return i == 0 ? "ok" : i < TS_STATS_N_CODES ? ts_err_code(codes[i - 1]) : "internal";
}

static size_t code_index(int err) {
  if (err == 0) return 0;
  const char *wire = ts_err_code(err);
  for (size_t i = 0; i < TS_STATS_N_CODES - 1; i++)
    if (strcmp(wire, ts_err_code(codes[i])) == 0) return i + 1;
  return TS_STATS_N_CODES - 1; /* internal */
}

/* ---- msgpack helpers --------------------------------------------------------------------- */

static const msgpack_object *map_get(const msgpack_object *map, const char *key) {
  if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t i = 0; i < map->via.map.size; i++)
    if (ts_mp_str_eq(&map->via.map.ptr[i].key, key)) return &map->via.map.ptr[i].val;
  return NULL;
}

static void set_str(json_t *o, const char *name, const msgpack_object *v) {
  if (v && v->type == MSGPACK_OBJECT_STR && v->via.str.size <= 1024)
    json_object_set_new(o, name, json_stringn(v->via.str.ptr, v->via.str.size));
}

static int64_t get_int(const msgpack_object *v) {
  if (!v) return 0;
  if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (int64_t)v->via.u64;
  if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return v->via.i64;
  return 0;
}

/* A keyed hash of a secret, to correlate lines without the secret: 16 bytes, base64url. */
static void set_hashed(json_t *o, const char *name, const msgpack_object *v) {
  if (!v || v->type != MSGPACK_OBJECT_STR) return;
  static const uint8_t key[crypto_generichash_KEYBYTES] = "tessera audit line hash, v1....";
  uint8_t h[16];
  crypto_generichash(h, sizeof(h), (const uint8_t *)v->via.str.ptr, v->via.str.size, key,
                     sizeof(key));
  char b[sodium_base64_ENCODED_LEN(16, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b, sizeof(b), h, sizeof(h), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  json_object_set_new(o, name, json_string(b));
}

/* The public claims (jti, fam, sub, typ) of a compact JWS, unverified: to name a token in an
 * audit line only. The signature segment is never looked at, nor kept. */
static void set_token_claims(json_t *o, const msgpack_object *v) {
  if (!v || v->type != MSGPACK_OBJECT_STR || v->via.str.size > 8192) return;
  const char *s = v->via.str.ptr, *end = s + v->via.str.size;
  const char *d1 = memchr(s, '.', (size_t)(end - s));
  if (!d1) return;
  const char *d2 = memchr(d1 + 1, '.', (size_t)(end - d1 - 1));
  if (!d2) return;
  uint8_t buf[6144];
  size_t n;
  if (sodium_base642bin(buf, sizeof(buf), d1 + 1, (size_t)(d2 - d1 - 1), NULL, &n, NULL,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
    return;
  json_t *claims = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
  if (!json_is_object(claims)) {
    json_decref(claims);
    return;
  }
  static const char *const keep[][2] = {{"jti", "jti"}, {"fam", "family"}, {"sub", "sub"}};
  for (size_t i = 0; i < 3; i++) {
    json_t *c = json_object_get(claims, keep[i][0]);
    if (json_is_string(c) && json_string_length(c) <= 256)
      json_object_set(o, keep[i][1], c);
  }
  json_decref(claims);
}

/* ---- requests ------------------------------------------------------------------------- */

typedef enum {
  A_NONE, A_CREATE, A_EXCHANGE, A_ROTATE, A_REVOKE, A_REVOKE_ALL, A_CONSUME, A_REFRESH,
  A_TOKEN_REVOKE, A_USER_REVOKE, A_KEYS_ROTATE
} audited;

static audited audited_of(const char *name) {
  static const struct {
    const char *name;
    audited a;
  } rows[] = {{"session.create", A_CREATE},          {"session.exchange", A_EXCHANGE},
              {"session.rotate", A_ROTATE},          {"session.revoke", A_REVOKE},
              {"session.revoke_all", A_REVOKE_ALL},  {"token.consume", A_CONSUME},
              {"token.refresh", A_REFRESH},          {"token.revoke", A_TOKEN_REVOKE},
              {"user.revoke", A_USER_REVOKE},        {"keys.rotate", A_KEYS_ROTATE}};
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
    if (strcmp(rows[i].name, name) == 0) return rows[i].a;
  return A_NONE;
}

typedef struct audit_req {
  audited kind;
  json_t *fields; /* what the request named */
  int revoke_kind; /* token.revoke: TS_REVOKE_FAMILY or TS_REVOKE_JTI */
} audit_req;

void ts_observe_request(ts_req *r, const msgpack_object *params) {
  static signed char by_index[TS_STATS_MAX_METHODS]; /* audited + 1, 0: not looked up yet */
  if (r->method_index >= TS_STATS_MAX_METHODS) return;
  if (!by_index[r->method_index])
    by_index[r->method_index] = (signed char)(audited_of(r->method->name) + 1);
  audited a = (audited)(by_index[r->method_index] - 1);
  if (a == A_NONE) return;
  audit_req *ar = calloc(1, sizeof(*ar));
  if (!ar) return;
  ar->kind = a;
  ar->fields = json_object();
  json_object_set_new(ar->fields, "method", json_string(r->method->name));
  set_str(ar->fields, "sub", map_get(params, "sub"));
  set_str(ar->fields, "handle", map_get(params, "handle"));
  set_str(ar->fields, "except", map_get(params, "except"));
  set_str(ar->fields, "purpose", map_get(params, "purpose"));
  set_str(ar->fields, "family", map_get(params, "family"));
  set_str(ar->fields, "jti", map_get(params, "jti"));
  set_hashed(ar->fields, "sid_hash", map_get(params, "sid"));
  set_token_claims(ar->fields, map_get(params, "token"));
  set_token_claims(ar->fields, map_get(params, "refresh_token"));
  ar->revoke_kind = json_object_get(ar->fields, "family") && !json_object_get(ar->fields, "jti")
                        ? TS_REVOKE_FAMILY : TS_REVOKE_JTI;
  if (a == A_TOKEN_REVOKE && map_get(params, "token")) {
    /* a refresh token revokes its family, an access token its jti */
    ar->revoke_kind = json_object_get(ar->fields, "family") ? TS_REVOKE_FAMILY : TS_REVOKE_JTI;
  }
  r->audit = ar;
}

void ts_observe_free(ts_req *r) {
  audit_req *ar = r->audit;
  if (!ar) return;
  json_decref(ar->fields);
  free(ar);
  r->audit = NULL;
}

/* ---- replies -------------------------------------------------------------------------- */

static const char *const event_names[] = {
    [A_CREATE] = "session.created",       [A_EXCHANGE] = "session.created",
    [A_ROTATE] = "session.rotated",       [A_REVOKE] = "session.revoked",
    [A_REVOKE_ALL] = "session.revoked_all", [A_CONSUME] = "purpose_token.consumed",
    [A_REFRESH] = "refresh.reuse_detected", [A_TOKEN_REVOKE] = "token.revoked",
    [A_USER_REVOKE] = "user.revoked",     [A_KEYS_ROTATE] = "key.rotated"};

void ts_observe_reply(ts_req *r) {
  ts_stats *st = &r->conn->server->stats;
  size_t m = r->method_index;
  if (m >= TS_STATS_MAX_METHODS) return;
  st->method_codes[m][code_index(r->err)]++;
  uint64_t ns = uv_hrtime() - r->started_ns;
  st->method_ns[m] += ns;
  static const double bounds[] = TS_STATS_BUCKETS;
  for (size_t i = 0; i < TS_STATS_N_BUCKETS; i++)
    if ((double)ns <= bounds[i] * 1e9) {
      st->method_buckets[m][i]++;
      break;
    }
  audit_req *ar = r->audit;
  if (!ar) return;
  if (ar->kind == A_REFRESH && r->err != TS_EREUSED) return; /* only reuse is an event */
  if (ar->kind == A_REFRESH) {
    st->refresh_reuse++;
    st->revocations[TS_REVOKE_FAMILY]++;
  }

  /* the result, when there is one: [1, msgid, nil, result] after the head */
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  const msgpack_object *res = NULL;
  size_t off = r->head_len;
  if (!r->err &&
      msgpack_unpack_next(&up, r->out.data, r->out.size, &off) == MSGPACK_UNPACK_SUCCESS &&
      msgpack_unpack_next(&up, r->out.data, r->out.size, &off) == MSGPACK_UNPACK_SUCCESS)
    res = &up.data;
  int64_t revoked = get_int(map_get(res, "revoked"));
  switch (ar->kind) {
  case A_REVOKE:
  case A_REVOKE_ALL: st->revocations[TS_REVOKE_SESSION] += (uint64_t)revoked; break;
  case A_TOKEN_REVOKE: st->revocations[ar->revoke_kind] += (uint64_t)revoked; break;
  case A_USER_REVOKE:
    if (res) {
      st->revocations[TS_REVOKE_USER]++;
      st->revocations[TS_REVOKE_SESSION] += (uint64_t)get_int(map_get(res, "sessions"));
      st->revocations[TS_REVOKE_FAMILY] += (uint64_t)get_int(map_get(res, "families"));
    }
    break;
  default: break;
  }
  if (ts_audit_enabled()) {
    json_t *f = ar->fields;
    ar->fields = NULL;
    json_object_set_new(f, "result", json_string(ts_observe_code_name(code_index(r->err))));
    set_str(f, "handle", map_get(res, "handle"));
    set_str(f, "family", map_get(res, "family"));
    set_str(f, "kid", map_get(res, "kid"));
    set_str(f, "previous", map_get(res, "previous"));
    const msgpack_object *claims = map_get(res, "claims"); /* token.consume */
    set_str(f, "sub", map_get(claims, "sub"));
    set_str(f, "jti", map_get(claims, "jti"));
    if (map_get(res, "revoked")) json_object_set_new(f, "revoked", json_integer(revoked));
    if (ar->kind == A_USER_REVOKE && res) {
      json_object_set_new(f, "sessions", json_integer(get_int(map_get(res, "sessions"))));
      json_object_set_new(f, "families", json_integer(get_int(map_get(res, "families"))));
    }
    if (ar->kind == A_EXCHANGE && !r->err) /* a purpose token consumed, a session created */
      ts_audit_emit("purpose_token.consumed", json_deep_copy(f));
    if (ar->kind == A_REFRESH) json_object_set_new(f, "family_revoked", json_true());
    ts_audit_emit(event_names[ar->kind], f);
  }
  msgpack_unpacked_destroy(&up);
}
