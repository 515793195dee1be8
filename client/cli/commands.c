/* client/cli/commands.c: the tessera CLI's command table and the runners (design in cli.h).
 *
 * Adding a command that maps onto one method is one table row: its method, its positional
 * param and its options (see the session rows). A new group ("token", "keys", "user") is a
 * sub-table plus one row in cli_commands. Only commands that do more than one call (events,
 * which will stream notifications) need a runner of their own.
 *
 * Method-command arguments: one positional and the options, in any order; "--" ends the
 * options; an option's value may be the next word or follow '='. Values are checked for type
 * here (an integer, a JSON object, UTF-8); ranges and everything else are the daemon's job, so
 * its bad_request message is what the user sees. */
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
  default: {
    json_t *v = json_string(text);
    if (!v) cli_usage_error(ctx, "%s is not valid UTF-8", o->flag);
    return v;
  }
  }
}

/* Sets params[key] (or params[a][b] for key "a.b") to v, stealing v. Returns -1 when the
 * param was already set (the option was given twice). */
static int set_param(json_t *params, const char *key, json_t *v) {
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
  if (!obj || json_object_get(obj, key)) {
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
  if (set_param(params, o->key, v) < 0) return cli_usage_error(ctx, "%s given twice", o->flag);
  return CLI_OK;
}

/* True when the option flagged name was given (its param is set). */
static bool opt_given(const cli_command *self, const json_t *params, const char *name) {
  const cli_opt *o = find_opt(self->opts, name, strlen(name));
  return o && json_object_get(params, o->key) != NULL;
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
  json_t *v = json_string(pos);
  if (!v) return cli_usage_error(ctx, "'%s' is not valid UTF-8", pos);
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
  if (status == CLI_OK) status = add_positional(ctx, self, params, pos);
  if (status != CLI_OK) {
    json_decref(params);
    return status;
  }
  *out = params;
  return CLI_OK;
}

static bool wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) return false;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
  }
  return false;
}

/* ---- runners -------------------------------------------------------------------------- */

int cli_run_method(cli *ctx, const cli_command *self, int argc, char **argv) {
  if (wants_help(argc, argv)) {
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
  if (wants_help(argc, argv)) {
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

#define METHOD_CMD(name_, synopsis_, summary_, method_, pos_key_, pos_alt_, opts_) \
  {name_, synopsis_, summary_, cli_run_method, method_, pos_key_, pos_alt_, opts_, NULL}
#define GROUP_CMD(name_, summary_, sub_) \
  {name_, "COMMAND ...", summary_, cli_run_group, NULL, NULL, NULL, NULL, sub_}

static const cli_opt client_opts[] = {
    {"--ip", "client.ip", CLI_ARG_STR},
    {"--ua", "client.ua", CLI_ARG_STR},
    {NULL, NULL, CLI_ARG_STR},
};

static const cli_opt session_create_opts[] = {
    {"--ttl", "ttl", CLI_ARG_INT},
    {"--idle-ttl", "idle_ttl", CLI_ARG_INT},
    {"--data", "data", CLI_ARG_OBJECT},
    {"--ip", "client.ip", CLI_ARG_STR},
    {"--ua", "client.ua", CLI_ARG_STR},
    {NULL, NULL, CLI_ARG_STR},
};

static const cli_opt session_revoke_opts[] = {
    {"--handle", "handle", CLI_ARG_STR},
    {NULL, NULL, CLI_ARG_STR},
};

static const cli_opt session_revoke_all_opts[] = {
    {"--except", "except", CLI_ARG_STR},
    {NULL, NULL, CLI_ARG_STR},
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
    METHOD_CMD("list", "SUB", "list SUB's sessions (handles, never sids)", "session.list", "sub",
               NULL, NULL),
    METHOD_CMD("revoke-all", "SUB [--except HANDLE]", "end every session of SUB (but the one --except names)",
               "session.revoke_all", "sub", NULL, session_revoke_all_opts),
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};

const cli_command cli_commands[] = {
    METHOD_CMD("ping", "", "check that tesserad answers; prints its version and time",
               "sys.ping", NULL, NULL, NULL),
    METHOD_CMD("stats", "", "print the daemon's counters and gauges", "sys.stats", NULL, NULL,
               NULL),
    {"call", "METHOD [JSON_PARAMS | -]",
     "call any method; params are a JSON object (-: read it from stdin)", run_call, NULL, NULL,
     NULL, NULL, NULL},
    GROUP_CMD("session", "opaque server-side sessions (the cookie flow)", session_commands),
    {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL},
};
