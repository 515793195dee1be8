/* sidecar/methods/keys.c: keys.jwks and keys.rotate (admin).
 *
 * The keyring itself is keys.c (loop thread only, like these handlers): keys.jwks publishes
 * what it holds with the cache lifetime; keys.rotate asks it to rotate and tells why it could
 * not. The admin door is the row's flag, checked by dispatch before the handler runs. */
#include "method.h"

#include "domain.h"
#include "error.h"
#include "json.h"
#include "keys.h"
#include "rpc.h"

static void keys_jwks(ts_req *r, const ts_param_value *v) {
  (void)v;
  ts_domain *d = r->conn->server->domain;
  json_t *set = NULL;
  if (ts_keyring_jwks(d->keys.ring, &set) != 0) {
    ts_req_fail(r, TS_ENOMEM, NULL);
    return;
  }
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 3);
  ts_pack_cstr(pk, "keys");
  ts_json_pack(pk, json_object_get(set, "keys"));
  ts_pack_cstr(pk, "max_age");
  msgpack_pack_int64(pk, d->cfg->jwks_max_age);
  ts_pack_cstr(pk, "keys_version");
  msgpack_pack_int64(pk, d->keys.version);
  json_decref(set);
  ts_req_send(r);
}

static void keys_rotate(ts_req *r, const ts_param_value *v) {
  (void)v;
  ts_keys *k = &((ts_domain *)r->conn->server->domain)->keys;
  char previous[TS_KID_LEN + 1];
  if (ts_keys_rotate(k, previous) != 0) {
    ts_req_fail(r, TS_EUNAVAILABLE, k->ring->managed
                    ? "key rotation failed; the keys in use stay"
                    : "keys are managed outside tesserad (read-only key directory)");
    return;
  }
  ts_backend *b = ((ts_domain *)r->conn->server->domain)->backend;
  if (b->ops->keys_changed) b->ops->keys_changed(b, k->version); /* the other sidecars reload */
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 3);
  ts_pack_cstr(pk, "kid");
  ts_pack_cstr(pk, ts_keyring_active(k->ring)->kid);
  ts_pack_cstr(pk, "previous");
  ts_pack_cstr(pk, previous);
  ts_pack_cstr(pk, "keys_version");
  msgpack_pack_int64(pk, k->version);
  ts_req_send(r);
}

const ts_method ts_method_keys_jwks = {.name = "keys.jwks", .handler = keys_jwks};
const ts_method ts_method_keys_rotate = {
    .name = "keys.rotate", .handler = keys_rotate, .flags = TS_METHOD_ADMIN};
