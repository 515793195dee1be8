/* tests/crash/load.c: the write load of the crash harness (load.h).
 *
 * Design: each load thread owns one tessera_client and its own book (records of the writes
 * the daemon acknowledged to it, in this process, which is never killed); nothing is shared
 * between threads but the `started` signal, so no lock guards the records. A write is
 * recorded only once its reply arrived; when the connection ends (the kill), the replies that
 * had already arrived are still taken (waiting 0 ms) and whatever was left in flight is marked
 * unacknowledged: it may or may not have been applied, and the checks of test_crash.c accept
 * either, but only all or nothing. The thread picks its writes from its own records (a
 * session it created, a token it issued, a family it paired), so what a check expects of a
 * record depends on that one thread's replies alone. Any unexpected answer is kept in
 * `failure` for the main thread, which fails the test after the kill. */
#include "load.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

unsigned rnd(uint64_t *s, unsigned n) { return (unsigned)(splitmix(s) % n); }

int64_t mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

char *xstrdup(const char *s) {
  char *d = strdup(s ? s : "");
  TT_ASSERT(d != NULL);
  return d;
}

void *grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return p;
  size_t n = *cap ? *cap * 2 : 64;
  while (n < need) n *= 2;
  p = realloc(p, n * size);
  TT_ASSERT(p != NULL);
  *cap = n;
  return p;
}

const char *str_of(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "";
}

sess *book_sess(book *b) {
  b->s = grow(b->s, &b->cs, b->ns + 1, sizeof(*b->s));
  memset(&b->s[b->ns], 0, sizeof(*b->s));
  return &b->s[b->ns++];
}

tok *book_tok(book *b) {
  b->t = grow(b->t, &b->ct, b->nt + 1, sizeof(*b->t));
  memset(&b->t[b->nt], 0, sizeof(*b->t));
  return &b->t[b->nt++];
}

fam *book_fam(book *b) {
  b->f = grow(b->f, &b->cf, b->nf + 1, sizeof(*b->f));
  memset(&b->f[b->nf], 0, sizeof(*b->f));
  return &b->f[b->nf++];
}

void book_move(book *dst, book *src) {
  for (size_t i = 0; i < src->ns; i++) *book_sess(dst) = src->s[i];
  for (size_t i = 0; i < src->nt; i++) *book_tok(dst) = src->t[i];
  for (size_t i = 0; i < src->nf; i++) *book_fam(dst) = src->f[i];
  free(src->s);
  free(src->t);
  free(src->f);
  memset(src, 0, sizeof(*src));
}

void book_free(book *b) {
  for (size_t i = 0; i < b->nt; i++) free(b->t[i].token);
  for (size_t i = 0; i < b->nf; i++) free(b->f[i].latest), free(b->f[i].prev);
  free(b->s);
  free(b->t);
  free(b->f);
}

/* ---- the load thread ---------------------------------------------------------------- */

static void worker_fail(worker *w, const char *what, int rc, const tessera_error *err) {
  if (!w->failure[0])
    snprintf(w->failure, sizeof(w->failure), "thread %d: %s: %s (%s: %s)", w->id, what,
             tessera_strerror(rc), err ? err->code : "", err ? err->message : "");
  w->dead = true;
}

static bool send_req(worker *w, enum kind k, int idx, const char *method, json_t *params) {
  uint32_t id;
  int rc = tessera_send(w->c, method, params, &id);
  json_decref(params);
  if (rc == TESSERA_ECLOSED || rc == TESSERA_EIO) { /* never sent: as if never asked */
    w->dead = true;
    return false;
  }
  if (rc) {
    worker_fail(w, method, rc, NULL);
    return false;
  }
  w->q[(w->qhead + w->qlen) % WINDOW] = (pending){id, k, idx};
  w->qlen++;
  return true;
}

/* A live session of this thread that nothing else is in flight for, or -1. */
static int pick_session(worker *w) {
  if (!w->b.ns) return -1;
  size_t start = rnd(&w->rng, (unsigned)w->b.ns);
  for (size_t k = 0; k < w->b.ns && k < 16; k++) {
    sess *s = &w->b.s[(start + k) % w->b.ns];
    if (!s->revoked && !s->revoke_pending && !s->validate_pending)
      return (int)((start + k) % w->b.ns);
  }
  return -1;
}

static bool send_create(worker *w) {
  return send_req(w, K_CREATE, 0, "session.create",
                  json_pack("{s:s, s:i, s:i, s:{s:s}}", "sub", w->subname, "ttl", LONG_TTL,
                            "idle_ttl", LONG_TTL, "client", "ua", "crash-test"));
}

static bool send_family_step(worker *w, int slot) {
  int f = w->slot[slot];
  if (f == -1) {
    w->slot[slot] = -2;
    return send_req(w, K_PAIR, slot, "token.pair",
                    json_pack("{s:s, s:i, s:i}", "sub", w->subname, "access_ttl", 3600,
                              "refresh_ttl", LONG_TTL));
  }
  w->slot[slot] = -3 - f; /* refresh in flight for family f */
  return send_req(w, K_REFRESH, f, "token.refresh",
                  json_pack("{s:s}", "refresh_token", w->b.f[f].latest));
}

/* Sends one request of a random kind. */
static bool send_next(worker *w) {
  for (size_t i = 0; i < w->b.nt; i++) { /* issued tokens are revoked first */
    tok *t = &w->b.t[w->b.nt - 1 - i];
    if (i > 4) break;
    if (!t->revoke_sent) {
      t->revoke_sent = true;
      return send_req(w, K_TREVOKE, (int)(w->b.nt - 1 - i), "token.revoke",
                      json_pack("{s:s}", "token", t->token));
    }
  }
  unsigned r = rnd(&w->rng, 100);
  if (r < 15) {
    int s = pick_session(w);
    if (s >= 0) {
      sess *x = &w->b.s[s];
      x->revoke_pending = true;
      return send_req(w, K_REVOKE, s, "session.revoke",
                      rnd(&w->rng, 2) ? json_pack("{s:s}", "sid", x->sid)
                                      : json_pack("{s:s}", "handle", x->handle));
    }
  } else if (r < 30) {
    return send_req(w, K_ISSUE, 0, "token.issue",
                    json_pack("{s:s, s:i}", "sub", w->subname, "ttl", TOKEN_TTL));
  } else if (r < 60) {
    for (int k = 0; k < SLOTS; k++)
      if (w->slot[k] >= -1) return send_family_step(w, k);
  } else if (r < 65) {
    int s = pick_session(w);
    if (s >= 0) {
      w->b.s[s].validate_pending = true;
      return send_req(w, K_VALIDATE, s, "session.validate", json_pack("{s:s}", "sid", w->b.s[s].sid));
    }
  }
  return send_create(w);
}

static void on_pair(worker *w, int slot, const json_t *res) {
  fam *f = book_fam(&w->b);
  snprintf(f->id, sizeof(f->id), "%s", str_of(res, "family"));
  f->latest = xstrdup(str_of(res, "refresh_token"));
  f->chain_left = 1 + (int)rnd(&w->rng, 6);
  w->slot[slot] = (int)(w->b.nf - 1);
  w->n.pairs++;
}

static void on_refresh(worker *w, int fi, const json_t *res) {
  fam *f = &w->b.f[fi];
  free(f->prev);
  f->prev = f->latest;
  f->latest = xstrdup(str_of(res, "refresh_token"));
  f->rotated_ms = mono_ms();
  w->n.refreshes++;
  for (int k = 0; k < SLOTS; k++)
    if (w->slot[k] == -3 - fi) w->slot[k] = --f->chain_left > 0 ? fi : -1;
}

/* A reply (rc 0 or TESSERA_EREMOTE) to an acknowledged request. */
static void on_reply(worker *w, const pending *p, int rc, json_t *res, const tessera_error *err) {
  static const char *const names[] = {"session.create", "session.revoke", "token.issue",
                                      "token.revoke", "token.pair", "token.refresh",
                                      "session.validate"};
  if (rc) {
    worker_fail(w, names[p->kind], rc, err);
    return;
  }
  if (!w->signalled && p->kind != K_ISSUE && p->kind != K_VALIDATE) {
    w->signalled = true;
    pthread_mutex_lock(&w->started->lock);
    w->started->acked = true;
    pthread_cond_broadcast(&w->started->cond);
    pthread_mutex_unlock(&w->started->lock);
  }
  switch (p->kind) {
  case K_CREATE: {
    sess *s = book_sess(&w->b);
    snprintf(s->sid, sizeof(s->sid), "%s", str_of(res, "sid"));
    snprintf(s->handle, sizeof(s->handle), "%s", str_of(res, "handle"));
    s->sub = w->sub;
    w->n.creates++;
    break;
  }
  case K_REVOKE:
    w->b.s[p->idx].revoke_pending = false;
    w->b.s[p->idx].revoked = true;
    w->n.revokes++;
    if (json_integer_value(json_object_get(res, "revoked")) != 1)
      worker_fail(w, "session.revoke of a live session did not answer {revoked: 1}", 0, NULL);
    break;
  case K_ISSUE: {
    tok *t = book_tok(&w->b);
    t->token = xstrdup(str_of(res, "token"));
    snprintf(t->jti, sizeof(t->jti), "%s", str_of(res, "jti"));
    t->revoke_sent = rnd(&w->rng, 5) == 0; /* one in five stays unrevoked: the control */
    w->n.issues++;
    break;
  }
  case K_TREVOKE:
    w->b.t[p->idx].revoked = true;
    w->n.token_revokes++;
    break;
  case K_PAIR: on_pair(w, p->idx, res); break;
  case K_REFRESH: on_refresh(w, p->idx, res); break;
  case K_VALIDATE:
    w->b.s[p->idx].validate_pending = false;
    if (strcmp(str_of(res, "handle"), w->b.s[p->idx].handle) != 0)
      worker_fail(w, "session.validate answered another session", 0, NULL);
    break;
  }
}

/* The connection ended with p still in flight: it may or may not have been applied. */
static void on_unacked(worker *w, const pending *p) {
  switch (p->kind) {
  case K_CREATE: w->n.unacked_creates++; break;
  case K_REVOKE:
    w->b.s[p->idx].revoke_pending = false;
    w->b.s[p->idx].revoke_unacked = true;
    w->n.unacked_revokes++;
    break;
  case K_TREVOKE:
    w->b.t[p->idx].revoke_unacked = true;
    w->n.unacked_token_revokes++;
    break;
  case K_PAIR: w->n.unacked_pairs++; break;
  case K_REFRESH:
    w->b.f[p->idx].refresh_unacked = true;
    w->n.unacked_refreshes++;
    break;
  case K_ISSUE: case K_VALIDATE: break; /* not writes */
  }
}

/* Takes the oldest request's reply; after the connection ended, collects what had already
 * arrived (waiting 0 ms) and marks the rest unacknowledged. */
static void take_oldest(worker *w) {
  pending p = w->q[w->qhead];
  w->qhead = (w->qhead + 1) % WINDOW;
  w->qlen--;
  json_t *res = NULL;
  tessera_error err = {{0}, {0}};
  int rc = tessera_wait(w->c, p.msgid, w->dead ? 0 : CALL_MS, &res, &err);
  if (rc == 0 || rc == TESSERA_EREMOTE) {
    on_reply(w, &p, rc, res, &err);
  } else if (rc == TESSERA_ECLOSED || rc == TESSERA_EIO) {
    w->dead = true;
    on_unacked(w, &p);
  } else if (w->dead) {
    on_unacked(w, &p);
  } else {
    worker_fail(w, "waiting for a reply", rc, NULL);
    on_unacked(w, &p);
  }
  json_decref(res);
}

void *worker_main(void *arg) {
  worker *w = arg;
  pthread_barrier_wait(w->start);
  while (!w->dead) {
    while (w->qlen < WINDOW && !w->dead && send_next(w)) {}
    if (w->qlen) take_oldest(w);
  }
  while (w->qlen) take_oldest(w);
  pthread_mutex_lock(&w->started->lock);
  w->started->running--;
  pthread_cond_broadcast(&w->started->cond);
  pthread_mutex_unlock(&w->started->lock);
  return NULL;
}
