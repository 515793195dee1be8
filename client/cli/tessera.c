/* client/cli/tessera.c: the tessera CLI's main: global options, help, and the call/print
 * helpers the commands share (commands.c holds the command table; cli.h the design).
 *
 * Output: a result is printed as JSON on stdout, indented when stdout is a terminal and one
 * compact line otherwise (for scripts and jq). Everything else goes to stderr. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000

/* ---- messages ------------------------------------------------------------------------- */

int cli_usage_error(const cli *ctx, const char *fmt, ...) {
  va_list ap;
  fputs("tessera: ", stderr);
  if (ctx && ctx->name[0]) fprintf(stderr, "%s: ", ctx->name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (ctx && ctx->name[0])
    fprintf(stderr, "\nTry 'tessera %s --help'.\n", ctx->name);
  else
    fputs("\nTry 'tessera --help'.\n", stderr);
  return CLI_EUSAGE;
}

/* One command in a listing: "  PREFIX NAME SYNOPSIS" and its summary below. */
static void print_entry(const char *prefix, const cli_command *c) {
  printf("  %s%s%s%s%s\n      %s\n", prefix, prefix[0] ? " " : "", c->name,
         c->synopsis[0] ? " " : "", c->synopsis, c->summary);
}

void cli_print_usage(const cli *ctx, const cli_command *cmd) {
  if (!cmd->sub) {
    printf("usage: tessera %s%s%s\n  %s\n", ctx->name, cmd->synopsis[0] ? " " : "",
           cmd->synopsis, cmd->summary);
    return;
  }
  printf("usage: tessera %s COMMAND ...\n  %s\n\ncommands:\n", ctx->name, cmd->summary);
  for (const cli_command *s = cmd->sub; s->name; s++) print_entry(cmd->name, s);
}

static void print_help(void) {
  printf("usage: tessera [--socket PATH] [--timeout MS] COMMAND [ARGS...]\n"
         "\n"
         "Talks to tesserad, the authentication sidecar, over its Unix socket. Results are\n"
         "printed as JSON (one compact line unless stdout is a terminal).\n"
         "\n"
         "options:\n"
         "  --socket PATH  the daemon's socket (default: $TESSERA_SOCKET, else %s)\n"
         "  --timeout MS   how long to wait for a reply (default %d; 0 waits forever)\n"
         "  -h, --help     show this help; 'tessera COMMAND --help' shows a command's\n"
         "  -V, --version  show the version\n"
         "\n"
         "commands:\n",
         TESSERA_DEFAULT_SOCKET, DEFAULT_TIMEOUT_MS);
  for (const cli_command *c = cli_commands; c->name; c++) {
    if (!c->sub) print_entry("", c);
    for (const cli_command *s = c->sub; s && s->name; s++) print_entry(c->name, s);
  }
  printf("\nexit status: 0 success, 1 the daemon answered with an error (for token decode and\n"
         "keygen: the token could not be decoded, the key not written), 2 usage or connection\n"
         "trouble (the message on stderr says which).\n");
}

/* ---- talking to the daemon ------------------------------------------------------------ */

static int report_connect_error(const cli *ctx, int saved_errno) {
  const char *hint = "Is tesserad running? Set TESSERA_SOCKET or pass --socket.";
  if (saved_errno == EACCES || saved_errno == EPERM)
    hint = "Is this user allowed to use the socket (its directory and group)?";
  else if (saved_errno == ENAMETOOLONG)
    hint = "Unix socket paths are limited to 107 bytes.";
  fprintf(stderr, "tessera: cannot connect to %s: %s. %s\n", ctx->socket, strerror(saved_errno),
          hint);
  return CLI_EUSAGE;
}

static int report_call_error(const cli *ctx, const char *method, int rc,
                             const tessera_error *err) {
  switch (rc) {
  case TESSERA_EREMOTE:
    if (err->message[0])
      fprintf(stderr, "tessera: %s: %s\n", err->code, err->message);
    else
      fprintf(stderr, "tessera: %s\n", err->code);
    return CLI_EREMOTE;
  case TESSERA_ETIMEDOUT:
    fprintf(stderr, "tessera: %s: no reply from tesserad within %d ms (see --timeout)\n", method,
            ctx->timeout_ms);
    return CLI_EUSAGE;
  default:
    fprintf(stderr, "tessera: %s: %s\n", method, tessera_strerror(rc));
    return CLI_EUSAGE;
  }
}

int cli_print_json(const json_t *v) {
  size_t flags = JSON_ENCODE_ANY | (isatty(STDOUT_FILENO) ? JSON_INDENT(2) : JSON_COMPACT);
  if (json_dumpf(v, stdout, flags) != 0 || putchar('\n') == EOF) {
    fprintf(stderr, "tessera: cannot write the result: %s\n", strerror(errno));
    return CLI_EUSAGE;
  }
  return CLI_OK;
}

int cli_call_print(cli *ctx, const char *method, const json_t *params) {
  if (!ctx->client) {
    int rc = tessera_connect(ctx->socket, &ctx->client);
    if (rc == TESSERA_ECONNECT) return report_connect_error(ctx, errno);
    if (rc < 0) return report_call_error(ctx, method, rc, NULL);
  }
  json_t *result = NULL;
  tessera_error err;
  int rc = tessera_call(ctx->client, method, params, ctx->timeout_ms, &result, &err);
  if (rc < 0) return report_call_error(ctx, method, rc, &err);
  int status = cli_print_json(result);
  json_decref(result);
  return status;
}

int cli_run_events(cli *ctx, const cli_command *self, int argc, char **argv) {
  if (cli_wants_help(argc, argv)) {
    cli_print_usage(ctx, self);
    return CLI_OK;
  }
  const char *since = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) since = argv[++i];
    else if (strncmp(argv[i], "--since=", 8) == 0) since = argv[i] + 8;
    else return cli_usage_error(ctx, "unexpected argument '%s'", argv[i]);
  }
  fflush(stdout);
  setvbuf(stdout, NULL, _IOLBF, 0); /* one line per notification, as it arrives */
  json_t *params = since ? json_pack("{s:s}", "since", since) : NULL;
  if (since && !params) return cli_usage_error(ctx, "--since: not a valid string");
  int status = cli_call_print(ctx, "events.subscribe", params);
  json_decref(params);
  if (status != CLI_OK) return status;
  for (;;) {
    char method[TESSERA_NOTIFY_METHOD_MAX];
    json_t *args = NULL;
    int rc = tessera_next_notification(ctx->client, -1, method, &args);
    if (rc == TESSERA_EOVERFLOW) {
      fprintf(stderr, "tessera: events: notifications were lost (queue full)\n");
      continue;
    }
    if (rc < 0) return report_call_error(ctx, "events", rc, NULL);
    json_t *line = json_pack("{s:s, s:o}", "method", method, "params", args);
    if (!line || json_dumpf(line, stdout, JSON_COMPACT) != 0 || putchar('\n') == EOF) {
      json_decref(line);
      return CLI_EUSAGE;
    }
    json_decref(line);
  }
}

/* ---- main ----------------------------------------------------------------------------- */

/* Matches "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past what it used. Returns
 * 1 with *value set, 0 when argv[*i] is another option, -1 when the value is missing. */
static int take_value(int argc, char **argv, int *i, const char *name, const char **value) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return 0;
  if (a[n] == '=') {
    *value = a + n + 1;
    return 1;
  }
  if (a[n] != '\0') return 0;
  if (*i + 1 >= argc) return -1;
  *value = argv[++*i];
  return 1;
}

static int parse_timeout(const char *s, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < 0 || v > INT_MAX) return -1;
  *out = v == 0 ? -1 : (int)v;
  return 0;
}

/* Parses the global options. Returns the index of the command word, or -(exit status + 1)
 * when main should stop (help, version, usage error). */
static int parse_globals(cli *ctx, int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i], *v = NULL;
    int r;
    if (strcmp(a, "--") == 0) return i + 1;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      print_help();
      return -(CLI_OK + 1);
    }
    if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
      printf("tessera %s\n", TESSERA_VERSION);
      return -(CLI_OK + 1);
    }
    if ((r = take_value(argc, argv, &i, "--socket", &v)) != 0) {
      if (r < 0 || !*v) return -(cli_usage_error(ctx, "--socket needs a PATH") + 1);
      ctx->socket = v;
    } else if ((r = take_value(argc, argv, &i, "--timeout", &v)) != 0) {
      if (r < 0 || parse_timeout(v, &ctx->timeout_ms) < 0)
        return -(cli_usage_error(ctx, "--timeout needs a number of milliseconds (0: forever)") + 1);
    } else {
      return -(cli_usage_error(ctx, "unknown option '%s'", a) + 1);
    }
  }
  return i;
}

int main(int argc, char **argv) {
  cli ctx = {.socket = tessera_default_socket(), .timeout_ms = DEFAULT_TIMEOUT_MS};
  int i = parse_globals(&ctx, argc, argv);
  if (i < 0) return -i - 1;
  if (i >= argc) return cli_usage_error(&ctx, "missing COMMAND");
  if (strcmp(argv[i], "help") == 0) {
    print_help();
    return CLI_OK;
  }
  const cli_command *cmd = cli_commands;
  while (cmd->name && strcmp(cmd->name, argv[i]) != 0) cmd++;
  if (!cmd->name) return cli_usage_error(&ctx, "unknown command '%s'", argv[i]);
  snprintf(ctx.name, sizeof(ctx.name), "%s", cmd->name);

  int status = cmd->run(&ctx, cmd, argc - i, argv + i);
  tessera_close(ctx.client);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "tessera: cannot write to stdout: %s\n", strerror(errno));
    return CLI_EUSAGE;
  }
  return status;
}
