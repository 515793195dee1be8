/* tests/integration/test_feed.c: the revocation feed with cursors (PROTOCOL.md "events")
 * against the real daemon: cursors on every entry, resuming with `since` with no gap and no
 * duplicate, `reset` when the daemon cannot prove completeness (garbage, another store, a
 * restored data file), a subscriber that stops reading (small --max-write-queue, or its
 * process stopped with SIGSTOP) losing nothing, and the local verifier of libtessera refusing
 * a token revoked in the middle of a flood, across a daemon restart, and after a reset (which
 * also purges its cache).
 *
 * Notifications are read with libtessera's tessera_next_notification on a subscribed client.
 * Waits are for conditions with deadlines (feed counters, notifications), never blind sleeps. */
#include "calls.h"
#include "daemon.h"
#include "tt.h"

#include <tessera/tessera.h>
#include <tessera/verifier.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ----------------------------------------------------------------------------- */

/* events.subscribe {since?} on c; returns the reply's cursor (malloc'd). */
static char *subscribe(tessera_client *c, const char *since) {
  json_t *r = tc_call_ok(c, "events.subscribe", since ? json_pack("{s:s}", "since", since) : NULL);
  TT_ASSERT(json_is_true(json_object_get(r, "subscribed")));
  char *cur = strdup(tc_str(r, "cursor"));
  json_decref(r);
  return cur;
}

/* A "revoked" entry as the test keeps it. */
typedef struct seen {
  char kind[16], id[80], cursor[80];
} seen;

/* Reads notifications until n revocation entries arrived (or timeout_ms passed with nothing
 * new); appends them to out. Returns how many were read. A "reset" sets *reset when given,
 * and is an error otherwise. */
static size_t read_entries(tessera_client *c, seen *out, size_t n, int timeout_ms, bool *reset) {
  size_t got = 0;
  while (got < n) {
    char method[TESSERA_NOTIFY_METHOD_MAX];
    json_t *args = NULL;
    int rc = tessera_next_notification(c, timeout_ms, method, &args);
    if (rc == TESSERA_ETIMEDOUT) break;
    TT_ASSERT_MSG(rc == 0, "next_notification: %s", tessera_strerror(rc));
    if (strcmp(method, "reset") == 0) {
      TT_ASSERT_MSG(reset != NULL, "an unexpected reset");
      TT_ASSERT(json_is_string(json_object_get(json_array_get(args, 0), "cursor")));
      *reset = true;
    } else if (strcmp(method, "revoked") == 0) {
      size_t i;
      json_t *e;
      json_array_foreach(args, i, e) {
        TT_ASSERT_MSG(got < n, "more entries than expected");
        snprintf(out[got].kind, sizeof(out[got].kind), "%s", tc_str(e, "kind"));
        snprintf(out[got].id, sizeof(out[got].id), "%s", tc_str(e, "id"));
        snprintf(out[got].cursor, sizeof(out[got].cursor), "%s", tc_str(e, "cursor"));
        got++;
      }
    }
    json_decref(args);
  }
  return got;
}

/* token.revoke {jti, exp} for n made-up jtis "<prefix><i>", pipelined. */
static void revoke_jtis(tessera_client *c, const char *prefix, int from, int n) {
  enum { WINDOW = 512 };
  uint32_t ids[WINDOW];
  long long exp = (long long)time(NULL) + 600;
  for (int done = 0; done < n;) {
    int k = n - done < WINDOW ? n - done : WINDOW;
    for (int i = 0; i < k; i++) {
      char jti[64];
      snprintf(jti, sizeof(jti), "%s%d", prefix, from + done + i);
      json_t *p = json_pack("{s:s, s:I}", "jti", jti, "exp", (json_int_t)exp);
      TT_EQ_INT(tessera_send(c, "token.revoke", p, &ids[i]), 0);
      json_decref(p);
    }
    for (int i = 0; i < k; i++) {
      json_t *r = NULL;
      tessera_error err = {0};
      int rc = tessera_wait(c, ids[i], 120000, &r, &err);
      TT_ASSERT_MSG(rc == 0, "token.revoke: %s (%s)", tessera_strerror(rc), err.code);
      json_decref(r);
    }
    done += k;
  }
}

/* The number of revocations a flood test makes: smaller under sanitizers and valgrind, but
 * always well over what the kernel's socket buffers hold (~200 KiB), so that the daemon's
 * write queue fills. */
static int flood_size(void) {
  return getenv("TT_SANITIZED") || getenv("TT_VALGRIND") ? 5000 : 20000;
}

/* Stops the daemon, puts a copy of its data file in place of the file (what restoring a
 * backup does: the same bytes, another file) and starts it again. */
static void restart_on_restored_copy(td_daemon *d) {
  int st = td_stop(d);
  TT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  if (tr_env_redis()) { /* Redis: a store whose history is another one gets a new store id */
    char out[64];
    TT_EQ_INT(tr_cli(&d->redis, out, sizeof(out), (const char *[]){"DEL", "t:{rev}:id", NULL}), 0);
    td_launch(d, NULL);
    return;
  }
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "cp '%s/data.mdb' '%s/copy.mdb' && mv '%s/copy.mdb' '%s/data.mdb'",
           d->data, d->data, d->data, d->data);
  TT_EQ_INT(system(cmd), 0);
  td_launch(d, NULL);
}

/* ---- cursors and resuming ---------------------------------------------------------------- */

/* Each entry carries a cursor; cursors rise in commit order (byte order) and follow
 * subscribe's cursor. 40 revocations pipelined: with Redis many share one millisecond of the
 * stream, so its sequence numbers cross digit counts (f -> 10), which byte order must survive. */
static void entries_carry_rising_cursors(void) {
  enum { N = 40 };
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *sub = tc_client(&d);
  char *start = subscribe(sub, NULL);
  revoke_jtis(c, "rise", 0, N);
  json_t *s = tc_call_ok(c, "token.pair", json_pack("{s:s}", "sub", "ann"));
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "family", tc_str(s, "family"))));
  seen e[N + 1];
  TT_EQ_INT(read_entries(sub, e, N + 1, 10000, NULL), N + 1);
  const char *prev = start;
  for (int i = 0; i <= N; i++) {
    TT_ASSERT_MSG(strcmp(e[i].cursor, prev) > 0, "cursor %s after %s", e[i].cursor, prev);
    prev = e[i].cursor;
  }
  TT_EQ_STR(e[0].id, "rise0");
  TT_EQ_STR(e[N - 1].id, "rise39");
  TT_EQ_STR(e[N].kind, "family");
  TT_EQ_STR(e[N].id, tc_str(s, "family"));
  /* A later subscribe reports the latest cursor. */
  tessera_client *late = tc_client(&d);
  char *now = subscribe(late, NULL);
  TT_EQ_STR(now, e[N].cursor);
  free(now);
  free(start);
  json_decref(s);
  tessera_close(late);
  tessera_close(sub);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* since: what was committed after the cursor is sent first, in order, with no duplicate of
 * what came before it and no gap before the live feed. */
static void since_resumes_without_gap_or_duplicate(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d), *sub = tc_client(&d);
  free(subscribe(sub, NULL));
  revoke_jtis(c, "a", 0, 3);
  seen e[8];
  TT_EQ_INT(read_entries(sub, e, 3, 10000, NULL), 3);
  char resume[80];
  snprintf(resume, sizeof(resume), "%s", e[1].cursor); /* as if a1 was the last applied */
  tessera_close(sub);
  revoke_jtis(c, "b", 0, 2); /* while nobody listens */
  sub = tc_client(&d);
  char *cur = subscribe(sub, resume);
  revoke_jtis(c, "c", 0, 2); /* live, right after */
  size_t n = read_entries(sub, e, 8, 3000, NULL);
  TT_EQ_INT(n, 5);
  const char *want[] = {"a2", "b0", "b1", "c0", "c1"};
  for (int i = 0; i < 5; i++) TT_EQ_STR(e[i].id, want[i]);
  for (int i = 1; i < 5; i++) TT_ASSERT(strcmp(e[i].cursor, e[i - 1].cursor) > 0);
  TT_EQ_STR(cur, e[2].cursor); /* the reply's cursor: the latest committed at subscribe */
  free(cur);
  /* since "0": every revocation still in force, from the beginning. */
  tessera_client *all = tc_client(&d);
  free(subscribe(all, "0"));
  seen every[16];
  TT_EQ_INT(read_entries(all, every, 16, 3000, NULL), 7);
  TT_EQ_STR(every[0].id, "a0");
  TT_EQ_STR(every[6].id, "c1");
  tessera_close(all);
  tessera_close(sub);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Revocations no longer in force are not replayed: the feed is bounded by the store's own
 * expiry, like the revocation list. */
static void replay_skips_what_expired(void) {
  static const char *const args[] = {"--leeway", "0", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  long long soon = (long long)time(NULL) + 1, later = (long long)time(NULL) + 600;
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", "short", "exp", (json_int_t)soon)));
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s, s:I}", "jti", "long", "exp", (json_int_t)later)));
  while ((long long)time(NULL) <= soon + 1) { /* a condition on the clock, not a sleep */
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
  tessera_client *sub = tc_client(&d);
  free(subscribe(sub, "0"));
  seen e[4];
  TT_EQ_INT(read_entries(sub, e, 4, 2000, NULL), 1);
  TT_EQ_STR(e[0].id, "long");
  tessera_close(sub);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A cursor the daemon cannot resume from gets "reset" first, then everything in force. */
static void unknown_cursors_get_a_reset(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  revoke_jtis(c, "r", 0, 2);
  tessera_client *probe = tc_client(&d);
  char *latest = subscribe(probe, NULL);
  tessera_close(probe);
  char other_store[80], future[80];
  snprintf(other_store, sizeof(other_store), "%s", latest);
  other_store[0] = other_store[0] == 'f' ? '0' : 'f'; /* another store id */
  snprintf(future, sizeof(future), "%.16s%016llx", latest, 999999ull); /* never committed */
  const char *bad[] = {"garbage", other_store, future, "ffffffffffffffffffffffffffffffffff"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    tessera_client *sub = tc_client(&d);
    free(subscribe(sub, bad[i]));
    bool reset = false;
    seen e[4];
    TT_EQ_INT(read_entries(sub, e, 4, 2000, &reset), 2);
    TT_ASSERT_MSG(reset, "no reset for since=%s", bad[i]);
    TT_EQ_STR(e[0].id, "r0");
    tessera_close(sub);
  }
  /* A well-formed cursor of this store is resumed without a reset. */
  tessera_client *ok = tc_client(&d);
  free(subscribe(ok, latest));
  bool reset = false;
  seen e[2];
  TT_EQ_INT(read_entries(ok, e, 2, 1000, &reset), 0);
  TT_ASSERT(!reset);
  /* A wrong type is a bad request. */
  tessera_error err = {0};
  json_t *p = json_pack("{s:i}", "since", 5);
  TT_EQ_INT(tessera_call(ok, "events.subscribe", p, 10000, NULL, &err), TESSERA_EREMOTE);
  TT_EQ_STR(err.code, "bad_request");
  json_decref(p);
  free(latest);
  tessera_close(ok);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A data file that is not the one the cursors were made for (a restored backup: here a copy
 * put in its place) resets every subscriber that resumes with an old cursor. */
static void restored_data_file_resets(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  revoke_jtis(c, "old", 0, 1);
  tessera_client *sub = tc_client(&d);
  char *cur = subscribe(sub, NULL);
  tessera_close(sub);
  tessera_close(c);
  restart_on_restored_copy(&d);
  sub = tc_client(&d);
  free(subscribe(sub, cur));
  bool reset = false;
  seen e[2];
  TT_EQ_INT(read_entries(sub, e, 2, 2000, &reset), 1); /* then what is in force, again */
  TT_ASSERT(reset);
  TT_EQ_STR(e[0].id, "old0");
  free(cur);
  tessera_close(sub);
  tc_stop_clean(&d);
}

/* A subscriber that does not read is held at --max-write-queue, never cut off, and receives
 * every revocation, in order, once it reads. */
static void slow_subscriber_loses_nothing(void) {
  static const char *const args[] = {"--max-write-queue", "4K", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d), *sub = tc_client(&d);
  int small = 4096;
  setsockopt(tessera_fd(sub), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  free(subscribe(sub, NULL));
  int n = flood_size();
  revoke_jtis(c, "slow", 0, n);
  seen *e = calloc((size_t)n + 1, sizeof(*e));
  TT_EQ_INT(read_entries(sub, e, (size_t)n + 1, 5000, NULL), n);
  for (int i = 0; i < n; i++) {
    char want[64];
    snprintf(want, sizeof(want), "slow%d", i);
    TT_ASSERT_MSG(strcmp(e[i].id, want) == 0, "entry %d is %s", i, e[i].id);
  }
  free(e);
  TT_ASSERT_MSG(tc_stat(c, "feed_holds") > 0,
                "the subscriber's feed never waited for its queue: the test proves nothing");
  tessera_close(sub);
  tessera_close(c);
  tc_stop_clean(&d);
}


/* tessera events --since CURSOR: the CLI replays what followed the cursor, one JSON line per
 * notification, then follows the live feed. */
static void cli_events_since(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  revoke_jtis(c, "cli", 0, 2);
  seen e[2];
  tessera_client *probe = tc_client(&d);
  free(subscribe(probe, "0"));
  TT_EQ_INT(read_entries(probe, e, 2, 5000, NULL), 2);
  tessera_close(probe);
  char cmd[512], line[4096];
  snprintf(cmd, sizeof(cmd), "%s --socket %s events --since %s", TESSERA_CLI_PATH, d.socket,
           e[0].cursor);
  FILE *events = popen(cmd, "r");
  TT_ASSERT(events && fgets(line, sizeof(line), events));
  TT_ASSERT_MSG(strstr(line, "\"subscribed\":true") != NULL, "events printed: %s", line);
  TT_ASSERT(fgets(line, sizeof(line), events)); /* the replay: cli1 only */
  TT_ASSERT_MSG(strstr(line, "\"id\":\"cli1\"") && !strstr(line, "\"id\":\"cli0\"") &&
                    strstr(line, "\"cursor\":"),
                "events printed: %s", line);
  revoke_jtis(c, "live", 0, 1);
  TT_ASSERT(fgets(line, sizeof(line), events));
  TT_ASSERT_MSG(strstr(line, "\"id\":\"live0\""), "events printed: %s", line);
  tessera_close(c);
  td_stop(&d); /* the events command ends when the daemon goes */
  pclose(events);
  td_cleanup(&d);
}

/* ---- the local verifier ------------------------------------------------------------------- */

static tessera_verifier *verifier_of(const td_daemon *d, int policy) {
  tessera_verifier_options o;
  tessera_verifier_options_init(&o);
  o.socket_path = d->socket;
  o.subscribe = 1;
  o.feed_down_policy = policy;
  o.timeout_ms = 10000; /* a daemon under valgrind, just restarted, may take seconds */
  tessera_verifier *v = NULL;
  tessera_error err = {0};
  int rc = tessera_verifier_new(&o, &v, &err);
  TT_ASSERT_MSG(rc == 0, "verifier: %s (%s)", tessera_strerror(rc), err.message);
  return v;
}

/* Waits until the verifier holds want revocation entries or more. */
static void wait_applied(tessera_verifier *v, size_t want, int timeout_ms) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    tessera_verifier_stats st;
    tessera_verifier_stats_get(v, &st);
    if (st.revocations_applied >= want) return;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    TT_ASSERT_MSG(ms < timeout_ms, "the verifier applied %llu of %zu revocations",
                  (unsigned long long)st.revocations_applied, want);
    tessera_verifier_wait_feed(v, st.feed_events, 200);
  }
}

static int local_verify(tessera_verifier *v, const char *tok, tessera_error *err) {
  memset(err, 0, sizeof(*err));
  return tessera_verifier_verify(v, tok, strlen(tok), NULL, err);
}

/* The review's scenario: a cached access token, its jti revoked in the middle of a flood of
 * revocations through a 4K write queue. The local verifier must refuse it, as the daemon does. */
static void verifier_refuses_token_revoked_mid_flood(void) {
  static const char *const args[] = {"--max-write-queue", "4K", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "mallory"));
  const char *tok = tc_str(t, "token");
  tessera_verifier *v = verifier_of(&d, TESSERA_FEED_FAIL_CLOSED);
  tessera_error err;
  TT_EQ_INT(local_verify(v, tok, &err), 0); /* now cached */
  TT_EQ_INT(local_verify(v, tok, &err), 0);
  int n = flood_size();
  revoke_jtis(c, "flood", 0, n / 2);
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", tok)));
  revoke_jtis(c, "flood", n / 2, n - n / 2);
  wait_applied(v, (size_t)n + 1, 120000);
  TT_EQ_INT(local_verify(v, tok, &err), TESSERA_EREJECTED);
  TT_EQ_STR(err.code, "revoked");
  tessera_error derr = {0};
  json_t *p = json_pack("{s:s, s:b}", "token", tok, "check_revoked", 1);
  TT_EQ_INT(tessera_call(c, "token.verify", p, 10000, NULL, &derr), TESSERA_EREMOTE);
  TT_EQ_STR(derr.code, "revoked");
  json_decref(p);
  tessera_verifier_stats st;
  tessera_verifier_stats_get(v, &st);
  TT_EQ_INT(st.revocations_applied, n + 1);
  tessera_verifier_free(v);
  json_decref(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* A child process holding a verifier is stopped (SIGSTOP) while the flood and the revocation
 * happen and, to force a real disconnect, while the daemon restarts; once continued, it
 * reconnects with its cursor, the daemon replays what it missed, and it refuses the token. */
static void stopped_verifier_catches_up_after_reconnect(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "sleeper"));
  char *tok = strdup(tc_str(t, "token"));
  json_decref(t);
  int ready[2], verdict[2];
  TT_EQ_INT(pipe(ready), 0);
  TT_EQ_INT(pipe(verdict), 0);
  pid_t child = fork();
  TT_ASSERT(child >= 0);
  if (child == 0) {
    tessera_verifier *v = verifier_of(&d, TESSERA_FEED_FAIL_CLOSED);
    tessera_error err;
    char rc0 = (char)(local_verify(v, tok, &err) == 0 ? 'y' : 'n');
    if (write(ready[1], &rc0, 1) != 1) _exit(2);
    char go;
    if (read(verdict[0], &go, 1) != 1) _exit(2); /* the parent says: revoked by now */
    tessera_verifier_stats st;
    tessera_verifier_stats_get(v, &st);
    /* Wait for the reconnect and the replay, up to 30 s: each wait ends on a feed event. */
    int code = 3;
    for (int i = 0; i < 300 && code == 3; i++) {
      int rc = local_verify(v, tok, &err);
      if (rc == TESSERA_EREJECTED && strcmp(err.code, "revoked") == 0) code = 0;
      tessera_verifier_stats_get(v, &st);
      if (code == 3) tessera_verifier_wait_feed(v, st.feed_events, 100);
    }
    tessera_verifier_stats_get(v, &st);
    if (code == 0 && st.feed_resets != 0) code = 4; /* resumed, not reset */
    tessera_verifier_free(v);
    _exit(code);
  }
  char ok = 0;
  TT_EQ_INT(read(ready[0], &ok, 1), 1);
  TT_EQ_INT(ok, 'y');
  TT_EQ_INT(kill(child, SIGSTOP), 0);
  tessera_close(c);
  int st = td_stop(&d); /* the child's feed connection dies while it cannot notice */
  TT_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  td_launch(&d, NULL);
  c = tc_client(&d);
  revoke_jtis(c, "meanwhile", 0, 100);
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", tok)));
  TT_EQ_INT(kill(child, SIGCONT), 0);
  TT_EQ_INT(write(verdict[1], "g", 1), 1);
  int cst;
  TT_EQ_INT(waitpid(child, &cst, 0), child);
  TT_ASSERT_MSG(WIFEXITED(cst) && WEXITSTATUS(cst) == 0,
                "the verifier did not refuse the token revoked while it was stopped (exit %d)",
                WIFEXITED(cst) ? WEXITSTATUS(cst) : -1);
  free(tok);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* After a reset (here: the daemon came back on a restored data file), tokens issued before it
 * get the feed-down policy; tokens issued after it verify locally. */
static void verifier_after_reset_distrusts_older_tokens(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t1 = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "early"));
  tessera_verifier *closed = verifier_of(&d, TESSERA_FEED_FAIL_CLOSED);
  tessera_verifier *ask = verifier_of(&d, TESSERA_FEED_ASK_DAEMON);
  tessera_error err;
  TT_EQ_INT(local_verify(closed, tc_str(t1, "token"), &err), 0);
  TT_EQ_INT(local_verify(ask, tc_str(t1, "token"), &err), 0);
  revoke_jtis(c, "before", 0, 1); /* gives the verifiers a cursor of this data file */
  wait_applied(closed, 1, 10000);
  wait_applied(ask, 1, 10000);
  tessera_close(c);
  restart_on_restored_copy(&d);
  tessera_verifier *vs[2] = {closed, ask};
  for (int i = 0; i < 2; i++) { /* both reconnect and are told to reset */
    for (int k = 0;; k++) {
      tessera_verifier_stats vst;
      tessera_verifier_stats_get(vs[i], &vst);
      if (vst.feed_resets == 1) break;
      TT_ASSERT_MSG(k < 300, "no reset after the data file changed");
      tessera_verifier_wait_feed(vs[i], vst.feed_events, 100);
    }
  }
  TT_EQ_INT(local_verify(closed, tc_str(t1, "token"), &err), TESSERA_EUNAVAILABLE);
  tessera_verifier_stats ast0, ast1;
  tessera_verifier_stats_get(ask, &ast0);
  TT_EQ_INT(local_verify(ask, tc_str(t1, "token"), &err), 0);
  tessera_verifier_stats_get(ask, &ast1);
  TT_EQ_INT(ast1.daemon_fallbacks, ast0.daemon_fallbacks + 1);
  /* A token issued in a later second than the reset verifies locally again. */
  time_t reset_second = time(NULL);
  while (time(NULL) <= reset_second) {
    struct timespec ts = {0, 20 * 1000000};
    nanosleep(&ts, NULL);
  }
  c = tc_client(&d);
  json_t *t2 = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "late"));
  TT_EQ_INT(local_verify(closed, tc_str(t2, "token"), &err), 0);
  tessera_verifier_stats_get(ask, &ast0);
  TT_EQ_INT(local_verify(ask, tc_str(t2, "token"), &err), 0);
  tessera_verifier_stats_get(ask, &ast1);
  TT_EQ_INT(ast1.daemon_fallbacks, ast0.daemon_fallbacks);
  json_decref(t1);
  json_decref(t2);
  tessera_verifier_free(closed);
  tessera_verifier_free(ask);
  tessera_close(c);
  tc_stop_clean(&d);
}


/* A reset purges the verified-token cache: a token cached before it is checked afresh (a
 * signature check, not a cache hit) on its next verify, besides getting the feed-down policy
 * as a token issued before the reset. */
static void verifier_reset_purges_its_cache(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s}", "sub", "cached"));
  const char *tok = tc_str(t, "token");
  tessera_verifier *v = verifier_of(&d, TESSERA_FEED_ASK_DAEMON);
  tessera_error err;
  TT_EQ_INT(local_verify(v, tok, &err), 0);
  TT_EQ_INT(local_verify(v, tok, &err), 0);
  tessera_verifier_stats st0, st1;
  tessera_verifier_stats_get(v, &st0);
  TT_EQ_INT(st0.cached_tokens, 1);
  TT_EQ_INT(st0.cache_hits, 1); /* the second verify came from the cache */
  TT_EQ_INT(st0.signature_checks, 1);
  revoke_jtis(c, "before", 0, 1); /* gives the verifier a cursor of this data file */
  wait_applied(v, 1, 10000);
  tessera_close(c);
  restart_on_restored_copy(&d);
  for (int k = 0;; k++) {
    tessera_verifier_stats_get(v, &st0);
    if (st0.feed_resets == 1) break;
    TT_ASSERT_MSG(k < 300, "no reset after the data file changed");
    tessera_verifier_wait_feed(v, st0.feed_events, 100);
  }
  TT_EQ_INT(st0.cached_tokens, 0);
  TT_EQ_INT(local_verify(v, tok, &err), 0); /* the daemon is asked: issued before the reset */
  tessera_verifier_stats_get(v, &st1);
  TT_EQ_INT(st1.cache_hits, st0.cache_hits); /* not from the cache ... */
  TT_EQ_INT(st1.signature_checks, st0.signature_checks + 1); /* ... checked afresh */
  TT_EQ_INT(st1.daemon_fallbacks, st0.daemon_fallbacks + 1);
  tessera_verifier_free(v);
  json_decref(t);
  tc_stop_clean(&d);
}


/* A revocation entry that lapsed and is then widened again (the token revoked for good after a
 * short {jti, exp} entry ran out) must re-check the tokens cached meanwhile. */
static void widened_revocation_rechecks_cached_tokens(void) {
  static const char *const args[] = {"--leeway", "0", NULL};
  td_daemon d;
  td_start(&d, args);
  tessera_client *c = tc_client(&d);
  json_t *t = tc_call_ok(c, "token.issue", json_pack("{s:s, s:i}", "sub", "wid", "ttl", 300));
  const char *tok = tc_str(t, "token");
  tessera_verifier *v = verifier_of(&d, TESSERA_FEED_FAIL_CLOSED);
  /* Revoked until the end of the next second: made at the start of this one, so the entry is
   * in force when the daemon records it (with leeway 0, an exp already reached adds none). */
  long long short_until = (long long)tc_start_of_next_second() + 1;
  TT_EQ_INT(tc_revoke_with(c, json_pack("{s:s, s:I}", "jti", tc_str(t, "jti"), "exp",
                                        (json_int_t)short_until)), 1);
  wait_applied(v, 1, 10000);
  tc_wait_wall_until(short_until + 1); /* until the short entry lapsed */
  tessera_error err;
  TT_EQ_INT(local_verify(v, tok, &err), 0); /* accepted and cached while nothing is in force */
  TT_EQ_INT(local_verify(v, tok, &err), 0);
  json_decref(tc_call_ok(c, "token.revoke", json_pack("{s:s}", "token", tok)));
  wait_applied(v, 2, 10000);
  TT_EQ_INT(local_verify(v, tok, &err), TESSERA_EREJECTED);
  TT_EQ_STR(err.code, "revoked");
  tessera_verifier_free(v);
  json_decref(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(entries_carry_rising_cursors),
    TT_CASE(since_resumes_without_gap_or_duplicate),
    TT_CASE(replay_skips_what_expired),
    TT_CASE(unknown_cursors_get_a_reset),
    TT_CASE(restored_data_file_resets),
    TT_CASE(slow_subscriber_loses_nothing),
    TT_CASE(cli_events_since),
    TT_CASE(verifier_refuses_token_revoked_mid_flood),
    TT_CASE(stopped_verifier_catches_up_after_reconnect),
    TT_CASE(verifier_after_reset_distrusts_older_tokens),
    TT_CASE(verifier_reset_purges_its_cache),
    TT_CASE(widened_revocation_rechecks_cached_tokens),
};
TT_MAIN(cases)
