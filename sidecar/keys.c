/* sidecar/keys.c: the daemon's signing keys (see keys.h): open, reload, rotate, close.
 *
 * Loop thread only. A reload or a rotation builds the new keyring before it replaces the old
 * one; keys_version is a hash of the published kids, and a change of it is announced to
 * subscribers through on_change. The key directory's trust checks are the keyring's. */
#include "keys.h"

#include "error.h"
#include "log.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int64_t version_of(const ts_keyring *kr) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, 8);
  for (size_t i = 0; i < kr->n; i++)
    crypto_generichash_update(&st, (const unsigned char *)kr->keys[i].kid, TS_KID_LEN + 1);
  uint8_t h[8];
  crypto_generichash_final(&st, h, sizeof(h));
  int64_t v = 0;
  for (int i = 0; i < 6; i++) v = (v << 8) | h[i]; /* 48 bits: exact in every JSON parser */
  return v;
}

static int open_ring(ts_keys *k, const ts_config *cfg, ts_keyring **out) {
  if (mkdir(cfg->keys_dir, 0700) != 0 && errno != EEXIST) {
    ts_log(TS_LOG_ERROR, "cannot create the keys directory", "{s:s, s:s}", "keys", cfg->keys_dir,
           "error", strerror(errno));
    return TS_ECONFIG;
  }
  k->writable = access(cfg->keys_dir, W_OK) == 0;
  char err[512] = "";
  int rc = ts_keyring_load(out, cfg->keys_dir, k->writable, (int64_t)time(NULL), err, sizeof(err));
  if (rc) ts_log(TS_LOG_ERROR, "cannot load the signing keys", "{s:s, s:s}", "keys",
                 cfg->keys_dir, "error", err);
  return rc;
}

static void log_keys(const char *msg, const ts_keys *k) {
  const ts_key *next = ts_keyring_next(k->ring);
  ts_log(TS_LOG_INFO, msg, "{s:s, s:s?, s:i, s:b, s:I}", "active", ts_keyring_active(k->ring)->kid,
         "next", next ? next->kid : NULL, "published", (int)k->ring->n, "managed",
         k->ring->managed, "keys_version", (json_int_t)k->version);
}

int ts_keys_open(ts_keys *k, const ts_config *cfg) {
  k->max_lifetime = ts_config_longest_ttl(cfg) + cfg->leeway;
  int rc = open_ring(k, cfg, &k->ring);
  if (rc) return rc;
  k->version = version_of(k->ring);
  log_keys("keys loaded", k);
  return 0;
}

static void changed(ts_keys *k) {
  int64_t v = version_of(k->ring);
  if (v == k->version) return;
  k->version = v;
  if (k->on_change) k->on_change(k->on_change_ctx, v);
}

int ts_keys_reload(ts_keys *k, const ts_config *cfg) {
  ts_keyring *fresh;
  int rc = open_ring(k, cfg, &fresh);
  if (rc) {
    ts_log(TS_LOG_WARN, "key reload failed; the keys in use stay", NULL);
    return rc;
  }
  ts_keyring_free(k->ring);
  k->ring = fresh;
  changed(k);
  log_keys("keys reloaded", k);
  return 0;
}

void ts_keys_close(ts_keys *k) {
  ts_keyring_free(k->ring);
  k->ring = NULL;
}

int ts_keys_rotate(ts_keys *k, char previous[TS_KID_LEN + 1]) {
  snprintf(previous, TS_KID_LEN + 1, "%s", ts_keyring_active(k->ring)->kid);
  char err[512] = "";
  int rc = ts_keyring_rotate(k->ring, (int64_t)time(NULL), k->max_lifetime, err, sizeof(err));
  if (rc) {
    ts_log(TS_LOG_WARN, "key rotation refused", "{s:s}", "error", err);
    return rc;
  }
  changed(k);
  log_keys("keys rotated", k);
  return 0;
}
