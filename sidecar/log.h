/* sidecar/log.h: structured logs, one JSON object per line on stderr.
 *
 * Every line is {"ts": ISO-8601 UTC, "level": ..., "msg": ..., fields...}. Fields are given as
 * a jansson json_pack format and its arguments, e.g.
 *   ts_log(TS_LOG_INFO, "listening", "{s:s, s:i}", "socket", path, "max_connections", n);
 * Never pass a sid, token or key: logs are read by people who must not hold them.
 * Thread-safe (one write(2) per line). */
#ifndef TS_LOG_H
#define TS_LOG_H

#include <jansson.h> /* json_int_t for "I" fields */

enum ts_log_level { TS_LOG_DEBUG = 0, TS_LOG_INFO, TS_LOG_WARN, TS_LOG_ERROR };

/* Sets the lowest level written (default TS_LOG_INFO). */
void ts_log_set_level(int level);
/* Parses "debug" | "info" | "warn" | "error"; returns the level or -1. */
int ts_log_parse_level(const char *name);
/* True when a line of this level would be written (skip building costly fields). */
int ts_log_enabled(int level);
/* Writes one line. fields: a json_pack format producing an object, or NULL. */
void ts_log(int level, const char *msg, const char *fields, ...);

#endif
