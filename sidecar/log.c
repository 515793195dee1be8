/* sidecar/log.c: structured logs (see log.h): one JSON object per line on stderr.
 *
 * Each line is built in full and written with a single write(2), so lines from the loop,
 * writer and sweeper threads never interleave. Callers pass key names and values chosen by
 * the code, never a secret (no sid, token or key material reaches a log line). */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int min_level = TS_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ts_log_set_level(int level) { min_level = level; }

int ts_log_parse_level(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

int ts_log_enabled(int level) { return level >= min_level; }

void ts_log(int level, const char *msg, const char *fields, ...) {
  if (level < min_level || level < 0 || level > TS_LOG_ERROR) return;
  json_t *line = NULL;
  if (fields) {
    va_list ap;
    va_start(ap, fields);
    line = json_vpack_ex(NULL, 0, fields, ap);
    va_end(ap);
  }
  if (!line) line = json_object();
  if (!line) return;

  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct tm tm;
  gmtime_r(&now.tv_sec, &tm);
  char ts[96];
  snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(now.tv_nsec / 1000000) % 1000);
  /* The fixed fields first: build a new object so they lead the line. */
  json_t *out = json_pack("{s:s, s:s, s:s}", "ts", ts, "level", level_names[level], "msg", msg);
  if (out) json_object_update_missing(out, line);
  char *text = out ? json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  if (text) {
    size_t n = strlen(text);
    char *buf = malloc(n + 1);
    if (buf) {
      memcpy(buf, text, n);
      buf[n] = '\n';
      ssize_t w = write(2, buf, n + 1);
      (void)w;
      free(buf);
    }
    free(text);
  }
  json_decref(out);
  json_decref(line);
}
