/* client/cli/cli.h: the tessera CLI's shared parts.
 *
 * tessera.c holds main (global options, help) and the helpers every command uses to talk to
 * the daemon and print; commands.c holds the command table. A command is either
 *   - a method command: a declarative row (RPC method, one positional param, options that map
 *     to params) run by one generic runner; most commands are one row of the table;
 *   - a group ("session"): a sub-table of commands, dispatched on the next word;
 *   - a custom command (call; the local token decode and keygen of local.c) with its own runner.
 * Exit status: 0 success, 1 the daemon answered with an error (a local command: the operation
 * failed, e.g. a token that cannot be decoded), 2 usage or connection trouble. */
#ifndef TS_CLI_H
#define TS_CLI_H

#include "tessera/tessera.h"

#include <stdbool.h>

enum { CLI_OK = 0, CLI_EREMOTE = 1, CLI_EUSAGE = 2 };

typedef struct cli {
  const char *socket;     /* --socket, else tessera_default_socket() */
  int timeout_ms;         /* for the library: -1 waits forever */
  tessera_client *client; /* connected on first use */
  char name[64];          /* the command being run, e.g. "session create" (for messages) */
} cli;

/* How an option's value becomes a param. */
enum cli_arg_type {
  CLI_ARG_STR,    /* a str */
  CLI_ARG_INT,    /* a base-10 integer */
  CLI_ARG_OBJECT, /* a JSON object */
  CLI_ARG_FLAG,   /* takes no value: true */
  CLI_ARG_STRS,   /* a str; given again, an array of every value in order (aud) */
};

typedef struct cli_opt {
  const char *flag; /* "--idle-ttl"; NULL ends a list */
  const char *key;  /* param key; "client.ip" nests one level: {client: {ip: ...}} */
  enum cli_arg_type type;
  bool required;    /* the command refuses to run without it (a usage error, not a call) */
} cli_opt;

/* cli_command.flags */
enum {
  /* The positional may be "-": it is then read from stdin (surrounding whitespace trimmed),
   * which keeps secrets such as tokens out of ps and the shell history. */
  CLI_POS_STDIN = 1u << 0,
};

typedef struct cli_command cli_command;
struct cli_command {
  const char *name;     /* NULL ends a table */
  const char *synopsis; /* arguments after the name, for usage lines */
  const char *summary;  /* one line for --help */
  /* argv[0] is the command's own name. Returns an exit status. */
  int (*run)(cli *ctx, const cli_command *self, int argc, char **argv);
  /* method commands (run == cli_run_method): */
  const char *method;   /* RPC method, e.g. "session.create" */
  const char *pos_key;  /* the positional argument's param key, or NULL when none is taken */
  const char *pos_alt;  /* an option flag that stands in for the positional (exactly one of the
                           two is then required), or NULL: the positional is required */
  const cli_opt *opts;  /* NULL or a list ended by a NULL flag */
  /* groups (run == cli_run_group): */
  const cli_command *sub;
  unsigned flags;       /* CLI_POS_* */
};

/* The top-level command table (commands.c), ended by a NULL name. */
extern const cli_command cli_commands[];

int cli_run_method(cli *ctx, const cli_command *self, int argc, char **argv);
int cli_run_group(cli *ctx, const cli_command *self, int argc, char **argv);

/* True when argv (argv[0] the command) asks for --help before any "--". */
bool cli_wants_help(int argc, char **argv);
/* The text of a positional argument: arg itself, or for "-" all of stdin (at most 64 KiB) with
 * surrounding whitespace trimmed, in buf (cap bytes). what names the argument for messages
 * ("TOKEN"). Returns the text (arg or buf), or NULL after reporting a usage error. */
const char *cli_positional_text(const cli *ctx, const char *what, const char *arg, char *buf,
                                size_t cap);

/* ---- local.c: commands that never talk to the daemon ---- */

/* token decode TOKEN */
int cli_run_token_decode(cli *ctx, const cli_command *self, int argc, char **argv);
/* keygen DIR */
int cli_run_keygen(cli *ctx, const cli_command *self, int argc, char **argv);
/* events: subscribes and prints {"method":..,"params":[..]} lines until the connection ends. */
int cli_run_events(cli *ctx, const cli_command *self, int argc, char **argv);

/* ---- tessera.c ---- */

/* Prints "tessera: NAME: message" and a hint to stderr; returns CLI_EUSAGE. */
int cli_usage_error(const cli *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the usage of one command (group: of each of its subcommands) to stdout. */
void cli_print_usage(const cli *ctx, const cli_command *cmd);
/* Calls method (params borrowed, NULL for none), prints the result on success. Reports every
 * failure itself. Returns an exit status. */
int cli_call_print(cli *ctx, const char *method, const json_t *params);
/* Prints v as JSON on stdout the way results are printed. Returns an exit status. */
int cli_print_json(const json_t *v);

#endif
