/* sidecar/keys.h: the daemon's signing keys: the keyring of --keys, reload and rotation (the
 * keys.* methods are in methods/keys.c).
 *
 * Loop thread only. A reload (SIGHUP) or rotation builds the new keyring completely before it
 * replaces the old one, so a failed reload leaves the keys in use untouched (and logs why).
 * keys_version is derived from the set of kids (a hash), so it changes exactly when the
 * published set does, and agrees across restarts. */
#ifndef TS_KEYS_H
#define TS_KEYS_H

#include "config.h"
#include "keyring.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct ts_keys {
  ts_keyring *ring;
  bool writable;
  int64_t version;
  int64_t max_lifetime; /* how long a retired key stays published */
  void (*on_change)(void *ctx, int64_t version); /* the events feed (set by main) */
  void *on_change_ctx;
} ts_keys;

/* Opens --keys (created 0700 when missing). Returns 0 or TS_E* after logging the reason. */
int ts_keys_open(ts_keys *k, const ts_config *cfg);
/* Reloads the directory; on error the old keys stay. Returns 0 or TS_E*. */
int ts_keys_reload(ts_keys *k, const ts_config *cfg);
void ts_keys_close(ts_keys *k);

/* keys.rotate: makes the next key active and publishes a new next key; previous receives
 * the kid that was active. Returns 0, or TS_E* (logged) with the keys in use untouched (keys
 * managed outside the daemon, k->ring->managed 0, always refuse). */
int ts_keys_rotate(ts_keys *k, char previous[TS_KID_LEN + 1]);

#endif
