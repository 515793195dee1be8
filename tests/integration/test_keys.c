/* tests/integration/test_keys.c: signing keys against the real daemon (PROTOCOL.md "keys";
 * SECURITY.md "Tokens"): keys.jwks and keys.rotate (old tokens stay valid; admin only;
 * unavailable for keys managed outside), key directories (the RFC 8037 key published with its
 * thumbprint, a group-readable key refuses the start, SIGHUP reloads the directory).
 *
 * Waiting: replies are the signal. A SIGHUP reload answers nothing; its signal is the
 * [2, "keys", ...] notification an events.subscribe connection receives when the key set
 * changed. A reload that fails changes nothing and notifies nobody: that one is awaited in the
 * log, in a bounded loop (td_await_log). */
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

/* ---- keys ---------------------------------------------------------------------------------- */

/* RFC 8037 A.1 and A.3. */
#define RFC8037_D "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
#define RFC8037_X "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
#define RFC8037_KID "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

static bool jwks_has(const json_t *set, const char *kid) {
  size_t i;
  json_t *k;
  json_array_foreach(json_object_get(set, "keys"), i, k) {
    if (strcmp(tc_str(k, "kid"), kid) == 0) return true;
  }
  return false;
}

/* A raw connection subscribed to the daemon's events (PROTOCOL.md "events"). */
typedef struct keys_feed {
  int fd;
  tw_reader rd;
} keys_feed;

static void feed_open(keys_feed *f, const td_daemon *d) {
  f->fd = tw_connect(d->socket);
  tw_reader_init(&f->rd, f->fd);
  TT_ASSERT(tw_send_request(f->fd, 1, "events.subscribe"));
  uint32_t id;
  char code[32];
  TT_ASSERT(tw_read_response(&f->rd, 10000, &id, code, sizeof(code)));
  TT_ASSERT_MSG(id == 1 && code[0] == 0, "events.subscribe: '%s'", code);
}

static void feed_close(keys_feed *f) {
  tw_reader_destroy(&f->rd);
  close(f->fd);
}

/* SIGHUP, then waits for the "keys" notification the reload sends; returns its keys_version. */
static long long sighup_and_await_keys(const td_daemon *d, keys_feed *f) {
  TT_ASSERT(kill(d->pid, SIGHUP) == 0);
  for (;;) {
    const msgpack_object *o = tw_next(&f->rd, 10000);
    TT_ASSERT_MSG(o != NULL, "no \"keys\" notification within 10 s of SIGHUP");
    TT_ASSERT(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 3);
    const msgpack_object *m = &o->via.array.ptr[1], *args = &o->via.array.ptr[2];
    TT_EQ_INT(o->via.array.ptr[0].via.u64, 2);
    if (m->type != MSGPACK_OBJECT_STR || m->via.str.size != 4 || memcmp(m->via.str.ptr, "keys", 4))
      continue; /* another kind of event */
    TT_ASSERT(args->type == MSGPACK_OBJECT_ARRAY && args->via.array.size == 1);
    const msgpack_object *map = &args->via.array.ptr[0];
    TT_ASSERT(map->type == MSGPACK_OBJECT_MAP && map->via.map.size == 1);
    TT_ASSERT(map->via.map.ptr[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    return (long long)map->via.map.ptr[0].val.via.u64;
  }
}

static void keys_rotate_keeps_old_tokens_valid(void) {
  td_daemon d;
  td_start(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *old = tc_issue_sub(c, "alice");
  char *active = tc_kid_of(c, old);
  json_t *before = tc_jwks(c);
  TT_EQ_INT(tc_jwks_count(before), 2);
  const char *next = NULL;
  size_t i;
  json_t *k;
  json_array_foreach(json_object_get(before, "keys"), i, k) {
    if (strcmp(tc_str(k, "kid"), active) != 0) next = tc_str(k, "kid");
  }
  TT_ASSERT(next != NULL);

  keys_feed feed; /* subscribers hear of the new set */
  feed_open(&feed, &d);
  json_t *r = tc_call_ok(c, "keys.rotate", NULL);
  TT_EQ_STR(tc_str(r, "kid"), next);
  TT_EQ_STR(tc_str(r, "previous"), active);

  char *fresh = tc_issue_sub(c, "bob");
  char *fresh_kid = tc_kid_of(c, fresh);
  TT_EQ_STR(fresh_kid, next);
  json_t *v = tc_verify_ok(c, "a token signed before the rotation", old, NULL, NULL);
  TT_EQ_STR(tc_str(v, "kid"), active);
  json_decref(v);
  json_t *after = tc_jwks(c);
  TT_EQ_INT(tc_jwks_count(after), 3);
  TT_ASSERT(jwks_has(after, active) && jwks_has(after, next));
  TT_ASSERT(tc_int(after, "keys_version") != tc_int(before, "keys_version"));
  const msgpack_object *note = tw_next(&feed.rd, 10000);
  TT_ASSERT_MSG(note && note->type == MSGPACK_OBJECT_ARRAY && note->via.array.size == 3 &&
                    note->via.array.ptr[1].type == MSGPACK_OBJECT_STR &&
                    note->via.array.ptr[1].via.str.size == 4 &&
                    memcmp(note->via.array.ptr[1].via.str.ptr, "keys", 4) == 0,
                "no \"keys\" notification after keys.rotate");
  TT_EQ_INT(note->via.array.ptr[2].via.array.ptr[0].via.map.ptr[0].val.via.u64,
            tc_int(after, "keys_version"));
  feed_close(&feed);
  /* The new next key is published before it signs. */
  const char *new_next = NULL;
  json_array_foreach(json_object_get(after, "keys"), i, k) {
    if (strcmp(tc_str(k, "kid"), active) && strcmp(tc_str(k, "kid"), next))
      new_next = tc_str(k, "kid");
  }
  TT_ASSERT(new_next != NULL);

  /* A second rotation: the new next signs; both older keys still verify. */
  json_t *r2 = tc_call_ok(c, "keys.rotate", NULL);
  TT_EQ_STR(tc_str(r2, "kid"), new_next);
  TT_EQ_STR(tc_str(r2, "previous"), next);
  char *third = tc_issue_sub(c, "carol");
  char *third_kid = tc_kid_of(c, third);
  TT_EQ_STR(third_kid, new_next);
  json_decref(tc_verify_ok(c, "two rotations old", old, NULL, NULL));
  json_decref(tc_verify_ok(c, "one rotation old", fresh, NULL, NULL));

  /* The state survives a restart. */
  json_t *set_before = tc_jwks(c);
  tessera_close(c);
  TT_ASSERT(WIFEXITED(td_stop(&d)));
  td_launch(&d, NULL);
  c = tc_client(&d);
  json_t *set_after = tc_jwks(c);
  TT_ASSERT(json_equal(json_object_get(set_before, "keys"), json_object_get(set_after, "keys")));
  json_decref(tc_verify_ok(c, "after a restart", old, NULL, NULL));
  char *fourth = tc_issue_sub(c, "dave");
  char *fourth_kid = tc_kid_of(c, fourth);
  TT_EQ_STR(fourth_kid, new_next);

  json_decref(set_after), json_decref(set_before), json_decref(r2), json_decref(after);
  json_decref(r), json_decref(before);
  free(fourth_kid), free(fourth), free(third_kid), free(third), free(fresh_kid), free(fresh);
  free(active), free(old);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void keys_rotate_needs_admin(void) {
  td_daemon d;
  const struct passwd *nobody = tc_start_for_nobody(&d);
  char uid[32];
  snprintf(uid, sizeof(uid), "%u", (unsigned)nobody->pw_uid);
  tessera_client *c = tc_client(&d);
  json_t *before = tc_jwks(c);
  /* nobody is let in (keys.jwks), but keys.rotate is for admins. */
  TT_EQ_STR(tc_call_as_nobody(&d, "keys.jwks", "keys.rotate"), "forbidden");
  json_t *after = tc_jwks(c);
  TT_EQ_INT(tc_int(after, "keys_version"), tc_int(before, "keys_version"));
  /* root, the daemon's own uid, is the default admin. */
  json_decref(tc_call_ok(c, "keys.rotate", NULL));
  json_decref(after), json_decref(before);
  tessera_close(c);
  tc_stop_clean(&d);

  /* --admin-uid names someone else: root is refused too. */
  const char *args2[] = {"--admin-uid", uid, NULL};
  td_start(&d, args2);
  c = tc_client(&d);
  tc_expect_error(c, "keys.rotate", NULL, "forbidden", NULL);
  json_decref(tc_jwks(c)); /* reading keys is for everyone */
  tessera_close(c);
  tc_stop_clean(&d);
}

/* Keys made by `tessera keygen`, no keys.json: keys managed outside; rotation is not ours. */
static void keys_rotate_unavailable_when_unmanaged(void) {
  td_daemon d;
  td_init(&d);
  char kid[TS_KID_LEN + 1], path[512];
  tf_keygen(&d, d.keys, kid);
  tf_key_path(d.keys, kid, path, sizeof(path));
  struct stat st;
  TT_ASSERT(stat(path, &st) == 0 && S_ISREG(st.st_mode));
  TT_EQ_INT(st.st_mode & 0777, 0600);
  TT_ASSERT(stat(d.keys, &st) == 0);
  TT_EQ_INT(st.st_mode & 0777, 0700);
  td_launch(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *set = tc_jwks(c);
  TT_EQ_INT(tc_jwks_count(set), 1);
  TT_ASSERT(jwks_has(set, kid));
  char *t = tc_issue_sub(c, "alice");
  char *signed_by = tc_kid_of(c, t);
  TT_EQ_STR(signed_by, kid);
  tc_expect_error(c, "keys.rotate", NULL, "unavailable", NULL);
  json_t *again = tc_jwks(c);
  TT_ASSERT(json_equal(set, again));
  char state[512];
  snprintf(state, sizeof(state), "%s/keys.json", d.keys);
  TT_ASSERT_MSG(access(state, F_OK) != 0, "the daemon wrote keys.json into an unmanaged dir");
  json_decref(again), json_decref(set);
  free(signed_by), free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

static void group_readable_key_refuses_start(void) {
  static const mode_t modes[] = {0640, 0604, 0660, 0620};
  for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
    td_daemon d;
    td_init(&d);
    char kid[TS_KID_LEN + 1], good[TS_KID_LEN + 1], path[512];
    tf_keygen(&d, d.keys, good); /* a sound key beside it does not help */
    tf_keygen(&d, d.keys, kid);
    tf_key_path(d.keys, kid, path, sizeof(path));
    TT_ASSERT(chmod(path, modes[i]) == 0);
    int st = td_launch_refused(&d);
    TT_ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) != 0, "mode %04o: exit status %d",
                  (unsigned)modes[i], st);
    char *log = td_read_log(&d);
    char name[64];
    snprintf(name, sizeof(name), "%s.jwk", kid);
    TT_ASSERT_MSG(log && strstr(log, name), "mode %04o: the log does not name %s:\n%s",
                  (unsigned)modes[i], name, log ? log : "");
    /* ...and no key material. */
    TT_ASSERT(strstr(log, "\"d\"") == NULL);
    free(log);
    td_cleanup(&d);
  }
}

static void rfc8037_key_is_published_with_its_thumbprint(void) {
  td_daemon d;
  td_init(&d);
  TT_ASSERT(mkdir(d.keys, 0700) == 0);
  char path[512];
  snprintf(path, sizeof(path), "%s/rfc8037.jwk", d.keys);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  TT_ASSERT(fd >= 0);
  const char *jwk = "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"" RFC8037_D "\",\"x\":\""
                    RFC8037_X "\"}\n";
  TT_EQ_INT(write(fd, jwk, strlen(jwk)), (long long)strlen(jwk));
  close(fd);
  td_launch(&d, NULL);
  tessera_client *c = tc_client(&d);
  json_t *set = tc_jwks(c);
  TT_EQ_INT(tc_jwks_count(set), 1);
  json_t *k = json_array_get(json_object_get(set, "keys"), 0);
  TT_EQ_STR(tc_str(k, "kid"), RFC8037_KID);
  TT_EQ_STR(tc_str(k, "x"), RFC8037_X);
  TT_EQ_STR(tc_str(k, "kty"), "OKP");
  TT_EQ_STR(tc_str(k, "crv"), "Ed25519");
  TT_ASSERT(json_object_get(k, "d") == NULL);
  char *t = tc_issue_sub(c, "alice");
  json_t *hdr = tf_segment_json(t, 0);
  TT_EQ_STR(tc_str(hdr, "kid"), RFC8037_KID);
  json_decref(tc_verify_ok(c, "signed by the RFC key", t, NULL, NULL));
  tc_expect_error(c, "keys.rotate", NULL, "unavailable", NULL); /* a key of its own: unmanaged */
  json_decref(hdr), json_decref(set);
  free(t);
  tessera_close(c);
  tc_stop_clean(&d);
}

/* SIGHUP reloads the key directory: in an unmanaged dir the newest key signs; in a managed dir
 * a dropped-in key is published but the roles stay; a reload that fails keeps the keys. */
static void sighup_reloads_the_key_dir(void) {
  td_daemon d;
  td_init(&d);
  char k1[TS_KID_LEN + 1], k2[TS_KID_LEN + 1], path[512];
  tf_keygen(&d, d.keys, k1);
  tf_key_path(d.keys, k1, path, sizeof(path));
  /* k1 an hour old, so that k2 is the newest by mtime whatever second it is born in. */
  struct timespec times[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
  TT_ASSERT(utimensat(AT_FDCWD, path, times, 0) == 0);
  td_launch(&d, NULL);
  tessera_client *c = tc_client(&d);
  char *t1 = tc_issue_sub(c, "alice");
  char *kid1 = tc_kid_of(c, t1);
  TT_EQ_STR(kid1, k1);
  json_t *before = tc_jwks(c);
  TT_EQ_INT(tc_jwks_count(before), 1);

  tf_keygen(&d, d.keys, k2);
  keys_feed feed;
  feed_open(&feed, &d);
  long long version = sighup_and_await_keys(&d, &feed);
  json_t *after = tc_jwks(c);
  TT_EQ_INT(tc_int(after, "keys_version"), version);
  TT_ASSERT(version != tc_int(before, "keys_version"));
  TT_EQ_INT(tc_jwks_count(after), 2);
  TT_ASSERT(jwks_has(after, k1) && jwks_has(after, k2));
  char *t2 = tc_issue_sub(c, "bob");
  char *kid2 = tc_kid_of(c, t2);
  TT_EQ_STR(kid2, k2);
  json_decref(tc_verify_ok(c, "signed before the reload", t1, NULL, NULL));

  /* A key file too open: the reload fails, the keys in use stay, the daemon serves on. */
  char k3[TS_KID_LEN + 1];
  tf_keygen(&d, d.keys, k3);
  tf_key_path(d.keys, k3, path, sizeof(path));
  TT_ASSERT(chmod(path, 0644) == 0);
  TT_ASSERT(kill(d.pid, SIGHUP) == 0);
  td_await_log(&d, "key reload failed");
  json_t *kept = tc_jwks(c);
  TT_ASSERT(json_equal(json_object_get(kept, "keys"), json_object_get(after, "keys")));
  TT_EQ_INT(tc_int(kept, "keys_version"), version);
  TT_ASSERT(tw_next(&feed.rd, 0) == NULL); /* and no "keys" notification */
  feed_close(&feed);
  char *t3 = tc_issue_sub(c, "carol");
  json_decref(tc_verify_ok(c, "after a failed reload", t3, NULL, NULL));
  json_decref(tc_verify_ok(c, "after a failed reload, the first", t1, NULL, NULL));
  json_decref(kept), json_decref(after), json_decref(before);
  free(t3), free(kid2), free(t2), free(kid1), free(t1);
  tessera_close(c);
  tc_stop_clean(&d);

  /* Managed (the daemon made the keys and keys.json): a dropped-in key is published, the
   * active key stays. */
  td_start(&d, NULL);
  c = tc_client(&d);
  char *m1 = tc_issue_sub(c, "alice");
  char *active = tc_kid_of(c, m1);
  char extra[TS_KID_LEN + 1];
  tf_keygen(&d, d.keys, extra);
  feed_open(&feed, &d);
  version = sighup_and_await_keys(&d, &feed);
  feed_close(&feed);
  json_t *set = tc_jwks(c);
  TT_EQ_INT(tc_int(set, "keys_version"), version);
  TT_ASSERT(jwks_has(set, extra));
  TT_EQ_INT(tc_jwks_count(set), 3);
  char *m2 = tc_issue_sub(c, "bob");
  char *still = tc_kid_of(c, m2);
  TT_EQ_STR(still, active);
  json_decref(set);
  free(still), free(m2), free(active), free(m1);
  tessera_close(c);
  tc_stop_clean(&d);
}

static const tt_case cases[] = {
    TT_CASE(keys_rotate_keeps_old_tokens_valid),
    TT_CASE(keys_rotate_needs_admin),
    TT_CASE(keys_rotate_unavailable_when_unmanaged),
    TT_CASE(group_readable_key_refuses_start),
    TT_CASE(rfc8037_key_is_published_with_its_thumbprint),
    TT_CASE(sighup_reloads_the_key_dir),
};

TT_MAIN(cases)
