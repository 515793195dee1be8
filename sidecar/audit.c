/* sidecar/audit.c: the audit stream (see audit.h).
 *
 * Owner: the HTTP edge's engineer. A process-wide fd opened once at start (O_APPEND, so
 * lines from one write(2) each never interleave, also with log rotation by copytruncate).
 * A failed write is counted in the daemon log, never retried: auditing never blocks a reply. */
#include "audit.h"

#include "error.h"
#include "log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int audit_fd = -1;
static bool audit_own_fd;

int ts_audit_open(const char *path) {
  ts_audit_close();
  if (!path || !*path) return 0;
  if (strcmp(path, "stderr") == 0) {
    audit_fd = 2;
    audit_own_fd = false;
    return 0;
  }
  audit_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (audit_fd < 0) {
    ts_log(TS_LOG_ERROR, "cannot open the audit log", "{s:s}", "path", path);
    return TS_ECONFIG;
  }
  audit_own_fd = true;
  return 0;
}

void ts_audit_close(void) {
  if (audit_fd >= 0 && audit_own_fd) close(audit_fd);
  audit_fd = -1;
}

bool ts_audit_enabled(void) { return audit_fd >= 0; }

void ts_audit_emit(const char *event, json_t *fields) {
  if (audit_fd < 0) {
    json_decref(fields);
    return;
  }
  json_t *o = json_object();
  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[40];
  size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));
  json_object_set_new(o, "ts", json_string(ts));
  json_object_set_new(o, "audit", json_true());
  json_object_set_new(o, "event", json_string(event));
  if (fields) json_object_update(o, fields);
  json_decref(fields);
  char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!line) return;
  size_t len = strlen(line);
  line[len] = '\n'; /* json_dumps leaves room for its NUL: reuse it */
  ssize_t w = write(audit_fd, line, len + 1);
  if (w != (ssize_t)(len + 1)) ts_log(TS_LOG_WARN, "audit line not written", NULL);
  free(line);
}
