/* proto/json.h: msgpack <-> JSON (jansson), for claims, the client library and the CLI.
 *
 * Mapping: nil<->null, bool, integers (json_int_t range), floats<->real, str<->string (must be
 * valid UTF-8), array, map with str keys<->object. bin becomes a base64url string (no padding);
 * ext types and non-str map keys cannot be converted. */
#ifndef TS_PROTO_JSON_H
#define TS_PROTO_JSON_H

#include <jansson.h>
#include <msgpack.h>

/* Converts o to a new JSON value (the caller owns the reference). Returns NULL when o holds
 * something JSON cannot express (ext, a non-str key, invalid UTF-8, an integer beyond int64) or
 * on allocation failure. */
json_t *ts_mp_to_json(const msgpack_object *o);

/* Packs v. Returns 0, or TS_EBAD_REQUEST when v holds an integer/real that msgpack cannot carry
 * exactly (never: every JSON value maps) or TS_ENOMEM. */
int ts_json_pack(msgpack_packer *pk, const json_t *v);

#endif
