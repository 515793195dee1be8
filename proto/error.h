/* proto/error.h: the one error table of tessera.
 *
 * Every function in proto/ and sidecar/ returns 0 or a negative TS_E* code. The X-macro below
 * also gives each code its wire name (the first element of a msgpack-rpc error array, as
 * PROTOCOL.md names it) and a human message. The codes after the "internal codes" line (from
 * TS_ENOMEM on) are internal: on the wire they travel as the code named in their second
 * column. */
#ifndef TS_PROTO_ERROR_H
#define TS_PROTO_ERROR_H

/*  name             wire code          message */
#define TS_ERROR_MAP(X)                                                                     \
  X(BAD_REQUEST,     "bad_request",     "bad request")                                      \
  X(UNKNOWN_METHOD,  "unknown_method",  "unknown method")                                   \
  X(UNAUTHENTICATED, "unauthenticated", "unauthenticated")                                  \
  X(EXPIRED,         "expired",         "expired")                                          \
  X(REVOKED,         "revoked",         "revoked")                                          \
  X(REUSED,          "reused",          "refresh token reused; its family is revoked")       \
  X(FORBIDDEN,       "forbidden",       "this peer may not call this method")               \
  X(OVERLOADED,      "overloaded",      "overloaded")                                       \
  X(UNAVAILABLE,     "unavailable",     "storage unavailable; nothing was written")         \
  X(INTERNAL,        "internal",        "internal error")                                   \
  /* internal codes; never a reply of their own */                                          \
  X(NOMEM,           "internal",        "out of memory")                                    \
  X(MSGSIZE,         "bad_request",     "message larger than the limit")                    \
  X(DEPTH,           "bad_request",     "nesting deeper than the limit")                    \
  X(EXT,             "bad_request",     "msgpack ext types are not allowed")                \
  X(LENGTH,          "bad_request",     "length header larger than the message limit")      \
  X(BADBYTE,         "bad_request",     "invalid msgpack byte")                             \
  X(ENVELOPE,        "bad_request",     "not a msgpack-rpc request or notification")        \
  X(MSGID,           "bad_request",     "msgid is not a uint32")                            \
  X(IO,              "unavailable",     "input/output error")                               \
  X(MAPFULL,         "unavailable",     "store full")                                       \
  X(NOTFOUND,        "unauthenticated", "not found")                                        \
  X(CONFIG,          "internal",        "invalid configuration")

enum ts_error {
  TS_OK = 0,
#define TS_ERROR_ENUM_(name, wire, msg) TS_E##name,
  TS_ERROR_FIRST_ = -1000,
  TS_ERROR_MAP(TS_ERROR_ENUM_)
#undef TS_ERROR_ENUM_
  TS_ERROR_END_
};

/* The wire code ("bad_request", ...) of a TS_E* value; "internal" for anything unknown.
 * Returns a static string. */
const char *ts_err_code(int err);

/* A human message for a TS_E* value; static string, never NULL, never holds a secret. */
const char *ts_strerror(int err);

#endif
