/* sidecar/audit.h: the audit stream: one JSON line per security event.
 *
 * Owner: the HTTP edge's engineer (issue 13). --audit-log PATH (appended, created 0640) or
 * `stderr`; off when empty. Every line is {"ts", "audit": true, "event", ...}: public or
 * hashed ids only, never a sid, a token or a cookie. Events come from observe.c (the reply of
 * each method; see there for what is covered). One write(2) per line. */
#ifndef TS_AUDIT_H
#define TS_AUDIT_H

#include <jansson.h>
#include <stdbool.h>

/* Opens the stream; path NULL or "" turns it off. Returns 0 or TS_ECONFIG (logged). */
int ts_audit_open(const char *path);
void ts_audit_close(void);
bool ts_audit_enabled(void);
/* Adds "ts", "audit": true and "event" to fields (stolen: may be NULL) and writes the line. */
void ts_audit_emit(const char *event, json_t *fields);

#endif
