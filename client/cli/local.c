/* client/cli/local.c: the CLI commands that never talk to the daemon.
 *
 *   token decode TOKEN  shows a token's header and claims WITHOUT verifying anything (a
 *                       debugging aid; it says so on stderr every time). Only the shape is
 *                       checked: three dot-separated base64url segments, the first two JSON
 *                       objects (duplicate members refused, as tesserad refuses them).
 *   keygen DIR          writes a new Ed25519 key as DIR/<kid>.jwk (mode 0600) with the
 *                       daemon's own keyring library (sidecar/keyring/), so the file is exactly
 *                       what tesserad loads: for a key directory managed outside tesserad (a
 *                       Kubernetes Secret), or to seed one.
 * Exit status as everywhere (cli.h): 1 when the operation failed, 2 for usage trouble. */
#include "cli.h"

#include "keyring.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- token decode ------------------------------------------------------------------------ */

/* Decodes one base64url segment (no padding expected; '=' is tolerated: this is a debugging
 * tool, tesserad itself is strict) into a JSON object. Returns NULL after reporting. */
static json_t *segment_object(const char *seg, size_t len, const char *what) {
  size_t cap = len / 4 * 3 + 3, n = 0;
  unsigned char *bin = malloc(cap);
  if (!bin) {
    fprintf(stderr, "tessera: token decode: out of memory\n");
    return NULL;
  }
  json_t *v = NULL;
  const char *end = NULL;
  if (sodium_base642bin(bin, cap, seg, len, "=", &n, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != seg + len) {
    fprintf(stderr, "tessera: token decode: the %s is not base64url\n", what);
  } else {
    json_error_t je;
    v = json_loadb((const char *)bin, n, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
      fprintf(stderr, "tessera: token decode: the %s is not JSON: %s\n", what, je.text);
    } else if (!json_is_object(v)) {
      fprintf(stderr, "tessera: token decode: the %s is not a JSON object\n", what);
      json_decref(v);
      v = NULL;
    }
  }
  sodium_memzero(bin, cap);
  free(bin);
  return v;
}

int cli_run_token_decode(cli *ctx, const cli_command *self, int argc, char **argv) {
  if (cli_wants_help(argc, argv)) {
    cli_print_usage(ctx, self);
    return CLI_OK;
  }
  int first = argc > 1 && strcmp(argv[1], "--") == 0 ? 2 : 1;
  if (argc - first < 1) return cli_usage_error(ctx, "missing TOKEN");
  if (argc - first > 1) return cli_usage_error(ctx, "unexpected argument '%s'", argv[first + 1]);
  if (first == 1 && argv[1][0] == '-' && argv[1][1] != '\0')
    return cli_usage_error(ctx, "unknown option '%s'", argv[1]);
  static char buf[65536 + 1];
  const char *tok = cli_positional_text(ctx, "TOKEN", argv[first], buf, sizeof(buf));
  if (!tok) return CLI_EUSAGE;

  const char *dot1 = strchr(tok, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
  if (!dot2 || strchr(dot2 + 1, '.')) {
    fprintf(stderr, "tessera: token decode: not a compact JWS (three segments separated by "
                    "'.')\n");
    return CLI_EREMOTE;
  }
  json_t *header = segment_object(tok, (size_t)(dot1 - tok), "header");
  json_t *claims = header ? segment_object(dot1 + 1, (size_t)(dot2 - dot1 - 1), "payload") : NULL;
  int status = CLI_EREMOTE;
  if (header && claims) {
    fprintf(stderr, "tessera: token decode: NOT verified: the signature, typ, issuer, "
                    "audience and times were not checked (use 'tessera token verify')\n");
    json_t *out = json_pack("{s:O, s:O}", "header", header, "claims", claims);
    status = out ? cli_print_json(out) : CLI_EUSAGE;
    json_decref(out);
  }
  json_decref(claims);
  json_decref(header);
  return status;
}

/* ---- keygen ------------------------------------------------------------------------------ */

int cli_run_keygen(cli *ctx, const cli_command *self, int argc, char **argv) {
  if (cli_wants_help(argc, argv)) {
    cli_print_usage(ctx, self);
    return CLI_OK;
  }
  int first = argc > 1 && strcmp(argv[1], "--") == 0 ? 2 : 1;
  if (argc - first < 1) return cli_usage_error(ctx, "missing DIR");
  if (argc - first > 1) return cli_usage_error(ctx, "unexpected argument '%s'", argv[first + 1]);
  const char *dir = argv[first];
  if (first == 1 && dir[0] == '-') return cli_usage_error(ctx, "unknown option '%s'", dir);
  if (!*dir) return cli_usage_error(ctx, "DIR is empty");
  if (sodium_init() < 0) {
    fprintf(stderr, "tessera: keygen: libsodium cannot be initialized\n");
    return CLI_EREMOTE;
  }
  /* A missing directory is created as tesserad creates its own: 0700. */
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    fprintf(stderr, "tessera: keygen: cannot create %s: %s\n", dir, strerror(errno));
    return CLI_EREMOTE;
  }
  ts_key key;
  char err[512] = "";
  if (ts_keyring_keygen(dir, &key, err, sizeof(err)) != 0) {
    fprintf(stderr, "tessera: keygen: %s\n", err[0] ? err : "cannot write the key");
    return CLI_EREMOTE;
  }
  char kid[TS_KID_LEN + 1], file[sizeof(key.file)];
  memcpy(kid, key.kid, sizeof(kid));
  memcpy(file, key.file, sizeof(file));
  sodium_memzero(&key, sizeof(key));
  fprintf(stderr, "tessera: keygen: wrote %s/%s (mode 0600)\n", dir, file);
  char state[4096];
  snprintf(state, sizeof(state), "%s/%s", dir, TS_KEYRING_STATE_FILE);
  if (access(state, F_OK) == 0)
    fprintf(stderr, "tessera: keygen: note: %s is managed by tesserad (%s): the new key is "
                    "published after a reload but signs only once %s names it\n",
            dir, TS_KEYRING_STATE_FILE, TS_KEYRING_STATE_FILE);
  if (printf("%s\n", kid) < 0) return CLI_EUSAGE;
  return CLI_OK;
}
