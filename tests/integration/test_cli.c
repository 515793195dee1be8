/* tests/integration/test_cli.c: the tessera CLI against the real daemon (README "Try it"):
 * every shortcut prints the method's result as JSON and exits 0, 1 on an error the daemon
 * answered, 2 on a usage error; commands that take a token read `-` from stdin (keeping it out
 * of ps). Token commands (issue, verify, decode, consume, session exchange, jwks, keys rotate),
 * keygen (a key the daemon loads), session commands (create, validate, list, rotate, revoke)
 * and the refresh flow (token pair | refresh | revoke, user revoke, events). The CLI runs
 * through td_cli (tests/lib/daemon.c), its stdout and stderr captured. */
#include "calls.h"
#include "forge.h"
#include "daemon.h"
#include "tt.h"
#include "wire.h"

#include "jws.h"
#include "keyring.h"

#include <tessera/tessera.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PURPOSE_TTL_DEFAULT 86400 /* --purpose-ttl 24h */

/* ---- the CLI ------------------------------------------------------------------------------- */

static json_t *parse_out(const char *out) {
  json_error_t je;
  json_t *v = json_loads(out, 0, &je);
  TT_ASSERT_MSG(v != NULL, "not JSON: '%s' (%s)", out, je.text);
  return v;
}

static void cli_token_commands(void) {
  td_daemon d;
  td_start(&d, NULL);
  static char out[16384], err[4096];
  const char *issue_args[] = {"token", "issue", "alice", "--aud", "api", "--aud=web", "--scope",
                              "read", "--claims", "{\"role\":\"admin\"}", "--ttl", "120", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), issue_args), 0);
  json_t *r = parse_out(out);
  char *tok = strdup(tc_str(r, "token"));
  TT_EQ_INT(tc_int(r, "expires_in") <= 120 && tc_int(r, "expires_in") >= 119, 1);
  json_decref(r);

  /* verify: the token from stdin (out of ps), and as an argument. */
  char input[TS_JWS_MAX_TOKEN + 8];
  snprintf(input, sizeof(input), "%s\n", tok);
  const char *verify_stdin[] = {"token", "verify", "-", "--aud", "web", NULL};
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), verify_stdin), 0);
  r = parse_out(out);
  json_t *cl = json_object_get(r, "claims");
  TT_EQ_STR(tc_str(cl, "sub"), "alice");
  TT_EQ_STR(tc_str(cl, "role"), "admin");
  TT_EQ_STR(tc_str(cl, "scope"), "read");
  TT_EQ_INT(json_array_size(json_object_get(cl, "aud")), 2);
  TT_ASSERT(json_is_string(json_object_get(r, "kid")));
  json_decref(r);
  const char *verify_arg[] = {"token", "verify", tok, "--aud", "api", "--check-revoked", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), verify_arg), 0);
  const char *verify_noaud[] = {"token", "verify", tok, NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), verify_noaud), 1);
  TT_ASSERT_MSG(strstr(err, "unauthenticated") != NULL, "stderr: %s", err);
  TT_EQ_STR(out, "");
  const char *verify_empty[] = {"token", "verify", "-", NULL};
  TT_EQ_INT(td_cli(&d, "\n", out, sizeof(out), err, sizeof(err), verify_empty), 2);

  /* decode: no daemon, no verification, and it says so. */
  const char *decode[] = {"token", "decode", "-", NULL};
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), decode), 0);
  TT_ASSERT_MSG(strstr(err, "NOT verified") != NULL, "stderr: %s", err);
  r = parse_out(out);
  TT_EQ_STR(tc_str(json_object_get(r, "header"), "typ"), "at+jwt");
  TT_EQ_STR(tc_str(json_object_get(r, "header"), "alg"), "EdDSA");
  TT_EQ_STR(tc_str(json_object_get(r, "claims"), "sub"), "alice");
  json_decref(r);
  char *tampered = tf_replace_segment(tok, 1, "{\"sub\":\"admin\"}");
  const char *decode_t[] = {"token", "decode", tampered, NULL};
  /* It decodes (unverified) what would never verify. */
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), decode_t), 0);
  TT_ASSERT(strstr(err, "NOT verified") != NULL);
  const char *decode_bad[] = {"token", "decode", "abc.def", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), decode_bad), 1);
  const char *decode_dup[] = {"token", "decode", "eyJhIjoxLCJhIjoyfQ.eyJhIjoxfQ.", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), decode_dup), 1); /* {"a":1,"a":2} */
  free(tampered);

  /* jwks and keys rotate. */
  const char *jwks_args[] = {"jwks", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), jwks_args), 0);
  r = parse_out(out);
  TT_EQ_INT(tc_jwks_count(r), 2);
  json_decref(r);
  const char *rotate[] = {"keys", "rotate", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), rotate), 0);
  r = parse_out(out);
  TT_ASSERT(json_is_string(json_object_get(r, "kid")) &&
            json_is_string(json_object_get(r, "previous")));
  json_decref(r);
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), jwks_args), 0);
  r = parse_out(out);
  TT_EQ_INT(tc_jwks_count(r), 3);
  json_decref(r);

  /* Purpose tokens: exchange once from stdin; consume needs --purpose. */
  const char *issue_p[] = {"token", "issue", "bob", "--purpose", "email", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), issue_p), 0);
  r = parse_out(out);
  snprintf(input, sizeof(input), "%s", tc_str(r, "token"));
  TT_ASSERT(tc_int(r, "expires_in") >= PURPOSE_TTL_DEFAULT - 1);
  json_decref(r);
  const char *consume_nopurpose[] = {"token", "consume", "-", NULL};
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), consume_nopurpose), 2);
  TT_ASSERT_MSG(strstr(err, "--purpose") != NULL, "stderr: %s", err);
  const char *exchange[] = {"session", "exchange", "-", "--purpose", "email", NULL};
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), exchange), 0);
  r = parse_out(out);
  TT_EQ_INT(strlen(tc_str(r, "sid")), 43);
  json_decref(r);
  TT_EQ_INT(td_cli(&d, input, out, sizeof(out), err, sizeof(err), exchange), 1);
  TT_ASSERT_MSG(strstr(err, "revoked") != NULL, "stderr: %s", err);
  const char *consume[] = {"token", "consume", input, "--purpose", "email", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), consume), 1);

  /* Usage trouble is 2 and never reaches the daemon. */
  const char *bad_ttl[] = {"token", "issue", "alice", "--ttl", "soon", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), bad_ttl), 2);
  const char *bad_claims[] = {"token", "issue", "alice", "--claims", "[1]", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), bad_claims), 2);
  const char *bad_opt[] = {"token", "verify", tok, "--bogus", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), bad_opt), 2);
  /* The daemon's bad_request is 1. */
  const char *over[] = {"token", "issue", "alice", "--ttl", "99999999", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), over), 1);
  TT_ASSERT_MSG(strstr(err, "bad_request") != NULL, "stderr: %s", err);
  free(tok);
  tc_stop_clean(&d);
}

static void cli_keygen_writes_a_loadable_key(void) {
  td_daemon d;
  td_init(&d);
  char dir[256], kid[TS_KID_LEN + 1], path[512];
  snprintf(dir, sizeof(dir), "%s/fresh", d.dir);
  tf_keygen(&d, dir, kid); /* creates the directory */
  tf_key_path(dir, kid, path, sizeof(path));
  struct stat st;
  TT_ASSERT(stat(path, &st) == 0);
  TT_EQ_INT(st.st_mode & 0777, 0600);
  TT_ASSERT(stat(dir, &st) == 0);
  TT_EQ_INT(st.st_mode & 0777, 0700);
  /* The file is a private JWK whose kid is the thumbprint of its x. */
  TT_ASSERT(sodium_init() >= 0);
  FILE *f = fopen(path, "r");
  char text[TS_KEYRING_FILE_MAX];
  size_t n = fread(text, 1, sizeof(text), f);
  fclose(f);
  ts_key k;
  const char *why = NULL;
  TT_ASSERT_MSG(ts_keyring_jwk_import(text, n, &k, &why) == 0, "import: %s", why);
  TT_ASSERT(k.has_sk);
  TT_EQ_STR(k.kid, kid);
  sodium_memzero(&k, sizeof(k));
  /* A second key is another file; bad directories are errors (exit 1), usage is 2. */
  char kid2[TS_KID_LEN + 1];
  tf_keygen(&d, dir, kid2);
  TT_ASSERT(strcmp(kid, kid2) != 0);
  char out[256], err[1024];
  const char *bad[] = {"keygen", "/proc/no/such/dir", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), bad), 1);
  TT_EQ_STR(out, "");
  const char *none[] = {"keygen", NULL};
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), err, sizeof(err), none), 2);
  td_cleanup(&d);
}

/* ---- session commands ---------------------------------------------------------------- */

/* Sids and handles are base64url: one in 64 starts with '-', so they follow "--" here (the CLI
 * would take such a word for an option). */
static void cli_session_commands(void) {
  td_daemon d;
  td_start(&d, NULL);
  char out[8192], err[4096];
  json_t *c1 =
      tc_cli_json(&d, (const char *const[]){"session", "create", "pat", "--ttl", "600", "--idle-ttl",
                                         "300", "--data", "{\"tier\":\"gold\"}", "--ip",
                                         "192.0.2.5", "--ua", "cli-test", NULL});
  const char *sid = tc_str(c1, "sid"), *handle = tc_str(c1, "handle");
  TT_ASSERT(tc_is_b64url(sid, TC_SID_CHARS) && tc_is_b64url(handle, TC_HANDLE_CHARS));
  long long in = tc_int(c1, "expires_in");
  TT_ASSERT(in >= 599 && in <= 600);
  TT_ASSERT(tc_int(c1, "idle_expires_at") <= tc_int(c1, "expires_at"));
  TT_ASSERT(strncmp(tc_str(c1, "cookie"), "__Host-sid=", 11) == 0);
  json_t *v = tc_cli_json(
      &d, (const char *const[]){"session", "validate", "--ua", "cli-test", "--", sid, NULL});
  TT_EQ_STR(tc_str(v, "sub"), "pat");
  TT_EQ_STR(tc_str(v, "handle"), handle);
  TT_EQ_STR(tc_str(json_object_get(v, "data"), "tier"), "gold");
  TT_EQ_INT(json_array_size(json_object_get(v, "anomalies")), 0);
  TT_ASSERT(json_is_integer(json_object_get(v, "created_at")));
  TT_ASSERT(json_is_integer(json_object_get(v, "expires_in")));
  json_decref(v);
  v = tc_cli_json(
      &d, (const char *const[]){"session", "validate", "--ua", "other-agent", "--", sid, NULL});
  TT_EQ_STR(json_string_value(json_array_get(json_object_get(v, "anomalies"), 0)), "ua_changed");
  json_decref(v);
  v = tc_cli_json(&d, (const char *const[]){"session", "list", "pat", NULL});
  json_t *arr = json_object_get(v, "sessions");
  TT_EQ_INT(json_array_size(arr), 1);
  TT_EQ_STR(tc_str(json_array_get(arr, 0), "handle"), handle);
  TT_EQ_STR(tc_str(json_object_get(json_array_get(arr, 0), "client"), "ip"), "192.0.2.5");
  char *text = json_dumps(v, JSON_COMPACT);
  TT_ASSERT(strstr(text, sid) == NULL && strstr(text, "\"sid\"") == NULL);
  free(text);
  json_decref(v);
  json_t *rot = tc_cli_json(&d, (const char *const[]){"session", "rotate", "--", sid, NULL});
  const char *sid2 = tc_str(rot, "sid");
  TT_ASSERT(strcmp(sid2, sid) != 0);
  TT_EQ_STR(tc_str(rot, "handle"), handle);
  /* The old sid: exit 1 and the error code on stderr. */
  int st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
                  (const char *const[]){"session", "validate", "--", sid, NULL});
  TT_EQ_INT(st, 1);
  TT_ASSERT_MSG(strstr(err, "unauthenticated") != NULL, "stderr: %s", err);
  TT_EQ_STR(out, "");
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
              (const char *const[]){"session", "validate", "bogus", NULL});
  TT_EQ_INT(st, 1);
  TT_ASSERT_MSG(strstr(err, "unauthenticated") != NULL, "stderr: %s", err);
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
              (const char *const[]){"session", "rotate", "--", sid, NULL});
  TT_EQ_INT(st, 1);
  TT_ASSERT_MSG(strstr(err, "unauthenticated") != NULL, "stderr: %s", err);
  /* The daemon's bad_request reaches the user. */
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
              (const char *const[]){"session", "create", "pat", "--ttl", "0", NULL});
  TT_EQ_INT(st, 1);
  TT_ASSERT_MSG(strstr(err, "bad_request") != NULL && strstr(err, "ttl") != NULL, "stderr: %s",
                err);
  /* revoke by sid, revoke-all with --except, revoke by handle. */
  json_t *c2 = tc_cli_json(&d, (const char *const[]){"session", "create", "pat", NULL});
  json_t *c3 = tc_cli_json(&d, (const char *const[]){"session", "create", "pat", NULL});
  json_t *r = tc_cli_json(&d, (const char *const[]){"session", "revoke", "--", sid2, NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  r = tc_cli_json(&d, (const char *const[]){"session", "revoke", "--", sid2, NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 0);
  json_decref(r);
  r = tc_cli_json(&d, (const char *const[]){"session", "revoke-all", "pat", "--except",
                                         tc_str(c3, "handle"), NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
              (const char *const[]){"session", "validate", "--", tc_str(c2, "sid"), NULL});
  TT_EQ_INT(st, 1);
  v = tc_cli_json(&d, (const char *const[]){"session", "validate", "--", tc_str(c3, "sid"), NULL});
  json_decref(v);
  r = tc_cli_json(&d,
               (const char *const[]){"session", "revoke", "--handle", tc_str(c3, "handle"), NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 1);
  json_decref(r);
  r = tc_cli_json(&d, (const char *const[]){"session", "revoke-all", "pat", NULL});
  TT_EQ_INT(tc_int(r, "revoked"), 0);
  json_decref(r);
  v = tc_cli_json(&d, (const char *const[]){"session", "list", "pat", NULL});
  TT_EQ_INT(json_array_size(json_object_get(v, "sessions")), 0);
  json_decref(v);
  /* Usage errors are the CLI's own (exit 2), never sent. */
  st = td_cli(&d, NULL, out, sizeof(out), err, sizeof(err),
              (const char *const[]){"session", "revoke", "--handle", "x", "--", sid2, NULL});
  TT_EQ_INT(st, 2);
  json_decref(c1);
  json_decref(rot);
  json_decref(c2);
  json_decref(c3);
  tc_stop_clean(&d);
}

/* ---- refresh-flow commands -------------------------------------------------------------- */

/* The CLI's refresh-flow commands: token pair | refresh | revoke, user revoke, and events,
 * which prints each notification as a JSON line. */
static void cli_refresh_commands(void) {
  td_daemon d;
  td_start(&d, NULL);
  char cmd[512], line[4096];
  snprintf(cmd, sizeof(cmd), "%s --socket %s events", TESSERA_CLI_PATH, d.socket);
  FILE *events = popen(cmd, "r");
  TT_ASSERT(events && fgets(line, sizeof(line), events));
  TT_ASSERT_MSG(strstr(line, "\"subscribed\":true") != NULL, "events printed: %s", line);
  json_t *pair = tc_cli_json(&d, (const char *const[]){"token", "pair", "dana", "--scope", "read", NULL});
  const char *rt = json_string_value(json_object_get(pair, "refresh_token"));
  TT_ASSERT(rt && json_is_string(json_object_get(pair, "family")));
  json_t *next = tc_cli_json(&d, (const char *const[]){"token", "refresh", rt, NULL});
  TT_ASSERT(json_is_string(json_object_get(next, "refresh_token")));
  json_t *r = tc_cli_json(&d, (const char *const[]){"token", "revoke", "garbage", NULL});
  TT_EQ_INT(json_integer_value(json_object_get(r, "revoked")), 0);
  json_decref(r);
  r = tc_cli_json(&d, (const char *const[]){"user", "revoke", "dana", NULL});
  TT_EQ_INT(json_integer_value(json_object_get(r, "families")), 1);
  json_decref(r);
  /* events saw the revocation, as one JSON line */
  TT_ASSERT(fgets(line, sizeof(line), events));
  json_t *ev = json_loads(line, 0, NULL);
  TT_ASSERT_MSG(ev && strcmp(json_string_value(json_object_get(ev, "method")), "revoked") == 0,
                "events printed: %s", line);
  TT_ASSERT(strstr(line, "\"kind\":\"sub\"") && strstr(line, "\"id\":\"dana\""));
  json_decref(ev);
  static char out[8192];
  TT_EQ_INT(td_cli(&d, NULL, out, sizeof(out), NULL, 0,
                   (const char *const[]){"token", "refresh",
                                         json_string_value(json_object_get(next, "refresh_token")),
                                         NULL}),
            1); /* revoked */
  json_decref(pair);
  json_decref(next);
  td_stop(&d); /* the events command ends when the daemon goes */
  pclose(events);
  td_cleanup(&d);
}

static const tt_case cases[] = {
    TT_CASE(cli_token_commands),
    TT_CASE(cli_keygen_writes_a_loadable_key),
    TT_CASE(cli_session_commands),
    TT_CASE(cli_refresh_commands),
};

TT_MAIN(cases)
