/* client/cli/commands.c: the tessera CLI's command table and the runners (design in cli.h).
 *
 * Adding a command that maps onto one method is one table row: its method, its positional
 * param and its options (see the session rows). A new group ("token", "keys", "user") is a
 * sub-table plus one row in cli_commands. Only commands that do more than one call (events,
 * which will stream notifications) or none at all (local.c: token decode, keygen) need a
 * runner of their own. A row whose positional is a secret (a token) sets CLI_POS_STDIN so
 * that "-" reads it from stdin.
 *
 * Method-command arguments: one positional and the options, in any order; "--" ends the
 * options; an option's value may be the next word or follow '='. Values are checked for type
 * here (an integer, a JSON object, UTF-8) and required options for presence; ranges and
 * everything else are the daemon's job, so its bad_request message is what the user sees. */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- argument parsing for method commands --------------------------------------------- */

/* Converts an option's text to its JSON value; NULL (after reporting) when it is not valid. */
static json_t *opt_value(const cli *ctx, const cli_opt *o, const char *text) {
  switch (o->type) {
  case CLI_ARG_FLAG: return json_true();
  case CLI_ARG_INT: {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end) {
      cli_usage_error(ctx, "%s needs an integer, not '%s'", o->flag, text);
      return NULL;
    }
    return json_integer((json_int_t)v);
  }
  case CLI_ARG_OBJECT: {
    json_error_t je;
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!v) {
      cli_usage_error(ctx, "%s: invalid JSON: %s (column %d)", o->flag, je.text, je.column);
      return NULL;
    }
    if (!json_is_object(v)) {
      json_decref(v);
      cli_usage_error(ctx, "%s needs a JSON object", o->flag);
      return NULL;
    }
    return v;
  }
  case CLI_ARG_STR:
  case CLI_ARG_STRS:
  default: {
    json_t *v = json_string(text);
    if (!v) cli_usage_error(ctx, "%s is not valid UTF-8", o->flag);
    return v;
  }
  }
}

/* Sets params[key] (or params[a][b] for key "a.b") to v, stealing v. append: a param already
 * set becomes (or grows) an array of the values. Returns -1 when the param was already set
 * and !append (the option was given twice). */
static int set_param(json_t *params, const char *key, json_t *v, bool append) {
  const char *dot = strchr(key, '.');
  json_t *obj = params;
  if (dot) {
    char outer[32];
    snprintf(outer, sizeof(outer), "%.*s", (int)(dot - key), key);
    obj = json_object_get(params, outer);
    if (!obj) {
      obj = json_object();
      if (json_object_set_new(params, outer, obj) != 0) obj = NULL;
    }
    key = dot + 1;
  }
  json_t *old = obj ? json_object_get(obj, key) : NULL;
  if (old && append) {
    if (json_is_array(old)) return json_array_append_new(old, v);
    return json_object_set_new(obj, key, json_pack("[O, o]", old, v)); /* o steals v */
  }
  if (!obj || old) {
    json_decref(v);
    return -1;
  }
  return json_object_set_new(obj, key, v);
}

static const cli_opt *find_opt(const cli_opt *opts, const char *arg, size_t len) {
  for (const cli_opt *o = opts; o && o->flag; o++)
    if (strlen(o->flag) == len && strncmp(o->flag, arg, len) == 0) return o;
  return NULL;
}

/* Parses the option at argv[*i] into params, advancing *i past its value. Returns CLI_OK or the
 * exit status of the usage error it reported. */
static int parse_option(const cli *ctx, const cli_command *self, json_t *params, int argc,
                        char **argv, int *i) {
  const char *a = argv[*i];
  const char *eq = strchr(a, '=');
  size_t len = eq ? (size_t)(eq - a) : strlen(a);
  const cli_opt *o = find_opt(self->opts, a, len);
  if (!o) return cli_usage_error(ctx, "unknown option '%.*s'", (int)len, a);
  const char *text = eq ? eq + 1 : NULL;
  if (o->type == CLI_ARG_FLAG && text) return cli_usage_error(ctx, "%s takes no value", o->flag);
  if (o->type != CLI_ARG_FLAG && !text) {
    if (*i + 1 >= argc) return cli_usage_error(ctx, "%s needs a value", o->flag);
    text = argv[++*i];
  }
  json_t *v = opt_value(ctx, o, text);
  if (!v) return CLI_EUSAGE;
  if (set_param(params, o->key, v, o->type == CLI_ARG_STRS) < 0)
    return cli_usage_error(ctx, "%s given twice", o->flag);
  return CLI_OK;
}

/* True when the option flagged name was given (its param is set). */
static bool opt_given(const cli_command *self, const json_t *params, const char *name) {
  const cli_opt *o = find_opt(self->opts, name, strlen(name));
  return o && json_object_get(params, o->key) != NULL;
}

#define STDIN_MAX 65536

const char *cli_positional_text(const cli *ctx, const char *what, const char *arg, char *buf,
                                size_t cap) {
  if (strcmp(arg, "-") != 0) return arg;
  size_t n = 0;
  while (n < cap) {
    size_t k = fread(buf + n, 1, cap - n, stdin);
    if (k == 0) break;
    n += k;
  }
  if (ferror(stdin)) {
    cli_usage_error(ctx, "cannot read %s from stdin: %s", what, strerror(errno));
    return NULL;
  }
  if (n == cap) {
    cli_usage_error(ctx, "%s on stdin is longer than %zu bytes", what, cap - 1);
    return NULL;
  }
  while (n > 0 && isspace((unsigned char)buf[n - 1])) n--;
  buf[n] = '\0';
  const char *text = buf;
  while (isspace((unsigned char)*text)) text++;
  if (!*text) {
    cli_usage_error(ctx, "no %s on stdin", what);
    return NULL;
  }
  if (strlen(text) != (size_t)(buf + n - text)) {
    cli_usage_error(ctx, "%s on stdin holds a NUL byte", what);
    return NULL;
  }
  return text;
}

/* Checks and adds the positional argument (pos may be NULL). Returns an exit status. */
static int add_positional(const cli *ctx, const cli_command *self, json_t *params,
                          const char *pos) {
  if (!self->pos_key) return CLI_OK;
  char name[32]; /* the positional as usage lines show it: "sid" -> "SID" */
  size_t n = 0;
  for (; self->pos_key[n] && n < sizeof(name) - 1; n++)
    name[n] = (char)toupper((unsigned char)self->pos_key[n]);
  name[n] = '\0';
  if (self->pos_alt) {
    bool alt = opt_given(self, params, self->pos_alt);
    if (pos && alt) return cli_usage_error(ctx, "give %s or %s, not both", name, self->pos_alt);
    if (!pos && !alt) return cli_usage_error(ctx, "missing %s (or %s)", name, self->pos_alt);
    if (!pos) return CLI_OK;
  } else if (!pos) {
    return cli_usage_error(ctx, "missing %s", name);
  }
  static char stdin_buf[STDIN_MAX + 1];
  if (self->flags & CLI_POS_STDIN) {
    pos = cli_positional_text(ctx, name, pos, stdin_buf, sizeof(stdin_buf));
    if (!pos) return CLI_EUSAGE;
  }
  json_t *v = json_string(pos);
  if (!v) return cli_usage_error(ctx, "%s is not valid UTF-8", name);
  return json_object_set_new(params, self->pos_key, v) == 0
             ? CLI_OK
             : cli_usage_error(ctx, "out of memory");
}

/* Builds the params from argv (argv[0] is the command name). Returns an exit status; on
 * CLI_OK, *out holds the params (an object, possibly empty). */
static int build_params(const cli *ctx, const cli_command *self, int argc, char **argv,
                        json_t **out) {
  json_t *params = json_object();
  const char *pos = NULL;
  bool options = true;
  int status = CLI_OK;
  for (int i = 1; i < argc && status == CLI_OK; i++) {
    const char *a = argv[i];
    if (options && strcmp(a, "--") == 0) {
      options = false;
    } else if (options && a[0] == '-' && a[1] != '\0') {
      status = parse_option(ctx, self, params, argc, argv, &i);
    } else if (!self->pos_key || pos) {
      status = cli_usage_error(ctx, "unexpected argument '%s'", a);
    } else {
      pos = a;
    }
  }
  for (const cli_opt *o = self->opts; status == CLI_OK && o && o->flag; o++)
    if (o->required && !opt_given(self, params, o->flag))
      status = cli_usage_error(ctx, "missing %s", o->flag);
  if (status == CLI_OK) status = add_positional(ctx, self, params, pos);
  if (status != CLI_OK) {
    json_decref(params);
    return status;
  }
  *out = params;
  return CLI_OK;
}

bool cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) return false;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
  }
  return false;
}

/* ---- runners -------------------------------------------------------------------------- */

int cli_run_method(cli *ctx, const cli_command *self, int argc, char **argv) {
  if (cli_wants_help(argc, argv)) {
    cli_print_usage(ctx, self);
    return CLI_OK;
  }
  json_t *params = NULL;
  int status = build_params(ctx, self, argc, argv, &params);
  if (status != CLI_OK) return status;
  /* An empty map and no map mean the same to the daemon; send [] for the plain case. */
  status = cli_call_print(ctx, self->method, json_object_size(params) ? params : NULL);
  json_decref(params);
  return status;
}

int cli_run_group(cli *ctx, const cli_command *self, int argc, char **argv) {
  if (argc < 2) return cli_usage_error(ctx, "missing COMMAND");
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    cli_print_usage(ctx, self);
    return CLI_OK;
  }
  const cli_command *s = self->sub;
  while (s->name && strcmp(s->name, argv[1]) != 0) s++;
  if (!s->name) return cli_usage_error(ctx, "unknown command '%s'", argv[1]);
  snprintf(ctx->name, sizeof(ctx->name), "%s %s", self->name, s->name);
  return s->run(ctx, s, argc - 1, argv + 1);
}

/* call METHOD [JSON_PARAMS | -] */
static int run_call(cli *ctx, const cli_command *self, int argc, char **argv) {
  if (cli_wants_help(argc, argv)) {
    cli_print_usage(ctx, self);
    return CLI_OK;
  }
  int first = argc > 1 && strcmp(argv[1], "--") == 0 ? 2 : 1;
  if (argc - first < 1) return cli_usage_error(ctx, "missing METHOD");
  if (argc - first > 2) return cli_usage_error(ctx, "unexpected argument '%s'", argv[first + 2]);
  const char *method = argv[first];
  json_t *params = NULL;
  if (argc - first == 2) {
    const char *text = argv[first + 1];
    json_error_t je;
    params = strcmp(text, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &je)
                                    : json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!params)
      return cli_usage_error(ctx, "invalid JSON params: %s (line %d, column %d)", je.text,
                             je.line, je.column);
    if (!json_is_object(params)) {
      json_decref(params);
      return cli_usage_error(ctx, "JSON_PARAMS must be an object");
    }
  }
  int status = cli_call_print(ctx, method, params);
  json_decref(params);
  return status;
}

/* ---- the table ------------------------------------------------------------------------ */

#define METHOD_CMD_F(name_, synopsis_, summary_, method_, pos_key_, pos_alt_, opts_, flags_) \
  {name_, synopsis_, summary_, cli_run_method, method_, pos_key_, pos_alt_, opts_, NULL, flags_}
#define METHOD_CMD(name_, synopsis_, summary_, method_, pos_key_, pos_alt_, opts_) \
  METHOD_CMD_F(name_, synopsis_, summary_, method_, pos_key_, pos_alt_, opts_, 0)
/* A command whose positional is a token: "-" reads it from stdin. */
#define TOKEN_CMD(name_, synopsis_, summary_, method_, opts_) \
  METHOD_CMD_F(name_, synopsis_, summary_, method_, "token", NULL, opts_, CLI_POS_STDIN)
/* A command with a runner of its own. */
#define RUNNER_CMD(name_, synopsis_, summary_, run_) \
  {name_, synopsis_, summary_, run_, NULL, NULL, NULL, NULL, NULL, 0}
#define GROUP_CMD(name_, summary_, sub_) \
  {name_, "COMMAND ...", summary_, cli_run_group, NULL, NULL, NULL, NULL, sub_, 0}
#define END_CMD {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0}
#define END_OPT {NULL, NULL, CLI_ARG_STR, false}

static const cli_opt client_opts[] = {
    {"--ip", "client.ip", CLI_ARG_STR},
    {"--ua", "client.ua", CLI_ARG_STR},
    END_OPT,
};

static const cli_opt session_create_opts[] = {
    {"--ttl", "ttl", CLI_ARG_INT},
    {"--idle-ttl", "idle_ttl", CLI_ARG_INT},
    {"--data", "data", CLI_ARG_OBJECT},
    {"--ip", "client.ip", CLI_ARG_STR},
    {"--ua", "client.ua", CLI_ARG_STR},
    END_OPT,
};

static const cli_opt session_revoke_opts[] = {
    {"--handle", "handle", CLI_ARG_STR},
    END_OPT,
};

static const cli_opt session_list_opts[] = {
    {"--limit", "limit", CLI_ARG_INT},
    {"--after", "after", CLI_ARG_STR},
    END_OPT,
};

static const cli_opt session_revoke_all_opts[] = {
    {"--except", "except", CLI_ARG_STR},
    END_OPT,
};

/* --purpose, required: the purpose a single-use token must carry. */
static const cli_opt purpose_opts[] = {
    {"--purpose", "purpose", CLI_ARG_STR, true},
    END_OPT,
};

static const cli_command session_commands[] = {
    METHOD_CMD("create", "SUB [--ttl N] [--idle-ttl N] [--data JSON] [--ip IP] [--ua UA]",
               "create a session for SUB; prints its sid, handle and Set-Cookie value",
               "session.create", "sub", NULL, session_create_opts),
    METHOD_CMD("validate", "SID [--ip IP] [--ua UA]",
               "look a session up (slides its idle timeout)", "session.validate", "sid", NULL,
               client_opts),
    METHOD_CMD("rotate", "SID", "give a session a new sid; the old one dies at once",
               "session.rotate", "sid", NULL, NULL),
    METHOD_CMD("revoke", "(SID | --handle HANDLE)", "end one session", "session.revoke", "sid",
               "--handle", session_revoke_opts),
    METHOD_CMD("list", "SUB [--limit N] [--after C]",
               "list SUB's sessions (handles, never sids), a page at a time: --after the `next` "
               "of the previous page",
               "session.list", "sub", NULL, session_list_opts),
    METHOD_CMD("revoke-all", "SUB [--except HANDLE]", "end every session of SUB (but the one --except names)",
               "session.revoke_all", "sub", NULL, session_revoke_all_opts),
    TOKEN_CMD("exchange", "(TOKEN | -) --purpose P",
              "turn a single-use purpose token into a session, once (-: TOKEN from stdin)",
              "session.exchange", purpose_opts),
    END_CMD,
};

static const cli_opt token_issue_opts[] = {
    {"--ttl", "ttl", CLI_ARG_INT},
    {"--aud", "aud", CLI_ARG_STRS},
    {"--scope", "scope", CLI_ARG_STR},
    {"--claims", "claims", CLI_ARG_OBJECT},
    {"--purpose", "purpose", CLI_ARG_STR},
    END_OPT,
};

static const cli_opt token_verify_opts[] = {
    {"--aud", "aud", CLI_ARG_STR},
    {"--purpose", "purpose", CLI_ARG_STR},
    {"--check-revoked", "check_revoked", CLI_ARG_FLAG},
    END_OPT,
};

static const cli_opt token_pair_opts[] = {
    {"--aud", "aud", CLI_ARG_STRS},
    {"--scope", "scope", CLI_ARG_STR},
    {"--claims", "claims", CLI_ARG_OBJECT},
    {"--access-ttl", "access_ttl", CLI_ARG_INT},
    {"--refresh-ttl", "refresh_ttl", CLI_ARG_INT},
    END_OPT,
};

static const cli_opt token_revoke_opts[] = {
    {"--family", "family", CLI_ARG_STR},
    END_OPT,
};

static const cli_command token_commands[] = {
    METHOD_CMD("issue",
               "SUB [--ttl N] [--aud A]... [--scope S] [--claims JSON] [--purpose P]",
               "issue an access token for SUB (--purpose: a single-use purpose token)",
               "token.issue", "sub", NULL, token_issue_opts),
    TOKEN_CMD("verify", "(TOKEN | -) [--aud A] [--purpose P] [--check-revoked]",
              "verify a token; prints its claims and kid (-: TOKEN from stdin)", "token.verify",
              token_verify_opts),
    RUNNER_CMD("decode", "(TOKEN | -)",
               "print a token's header and claims WITHOUT verifying it (no daemon needed)",
               cli_run_token_decode),
    TOKEN_CMD("consume", "(TOKEN | -) --purpose P",
              "use a single-use purpose token: its claims once, then revoked (-: TOKEN from stdin)",
              "token.consume", purpose_opts),
    METHOD_CMD("pair",
               "SUB [--aud A]... [--scope S] [--claims JSON] [--access-ttl N] [--refresh-ttl N]",
               "issue an access token and a rotating refresh token (a new family) for SUB",
               "token.pair", "sub", NULL, token_pair_opts),
    METHOD_CMD_F("refresh", "(REFRESH_TOKEN | -)",
                 "rotate a refresh token: a new pair; presenting the old one again is reuse",
                 "token.refresh", "refresh_token", NULL, NULL, CLI_POS_STDIN),
    METHOD_CMD_F("revoke", "(TOKEN | - | --family F)",
                 "revoke a refresh token's family or an access token's jti (garbage: revoked 0)",
                 "token.revoke", "token", "--family", token_revoke_opts, CLI_POS_STDIN),
    END_CMD,
};

static const cli_command user_commands[] = {
    METHOD_CMD("revoke", "SUB",
               "log SUB out everywhere: every session and refresh family, and a cut-off for its "
               "access tokens",
               "user.revoke", "sub", NULL, NULL),
    END_CMD,
};

static const cli_command keys_commands[] = {
    METHOD_CMD("rotate", "",
               "the next key starts signing and a new next key is published (admin)",
               "keys.rotate", NULL, NULL, NULL),
    END_CMD,
};

const cli_command cli_commands[] = {
    METHOD_CMD("ping", "", "check that tesserad answers; prints its version and time",
               "sys.ping", NULL, NULL, NULL),
    METHOD_CMD("stats", "", "print the daemon's counters and gauges", "sys.stats", NULL, NULL,
               NULL),
    RUNNER_CMD("call", "METHOD [JSON_PARAMS | -]",
               "call any method; params are a JSON object (-: read it from stdin)", run_call),
    GROUP_CMD("session", "opaque server-side sessions (the cookie flow)", session_commands),
    GROUP_CMD("token", "JWTs: access and single-use purpose tokens", token_commands),
    GROUP_CMD("keys", "the daemon's signing keys", keys_commands),
    GROUP_CMD("user", "everything a user holds", user_commands),
    RUNNER_CMD("events", "[--since CURSOR]",
               "subscribe to revocations and key changes; print each notification as a JSON line "
               "until interrupted (--since: first replay what followed CURSOR; 0: everything "
               "still in force)",
               cli_run_events),
    METHOD_CMD("jwks", "", "print the public keys tokens verify with (a JWK Set)", "keys.jwks",
               NULL, NULL, NULL),
    RUNNER_CMD("keygen", "DIR",
               "write a new Ed25519 key to DIR/<kid>.jwk (mode 0600) and print its kid (no "
               "daemon needed)",
               cli_run_keygen),
    END_CMD,
};
