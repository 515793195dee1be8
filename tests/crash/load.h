/* tests/crash/load.h: the crash harness's write load (load.c): the records of what the daemon
 * acknowledged, and the load threads that make them. test_crash.c runs the cycles (load, kill,
 * restart) and checks the records through the API; stores.c does the backend's file checks. */
#ifndef CRASH_LOAD_H
#define CRASH_LOAD_H

#include "stores.h" /* TT_ASSERT: kills the daemon first */

#include <tessera/tessera.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WINDOW 8         /* requests in flight per load thread */
#define SLOTS 2          /* refresh chains per load thread */
#define LONG_TTL 604800  /* sessions, refresh tokens: a week; nothing expires during the test */
#define TOKEN_TTL 86400
#define CALL_MS 20000

/* ---- small helpers -------------------------------------------------------------------- */

/* A seeded PRNG (the seed replays a run): the next value; one below n. */
uint64_t splitmix(uint64_t *s);
unsigned rnd(uint64_t *s, unsigned n);
int64_t mono_ms(void);
char *xstrdup(const char *s);
/* p with room for need elements of size (doubling *cap). */
void *grow(void *p, size_t *cap, size_t need, size_t size);
/* The string member key of o, or "". */
const char *str_of(const json_t *o, const char *key);

/* ---- what the load acknowledged ------------------------------------------------------- */

typedef struct sess {
  char sid[48], handle[32];
  int sub;                 /* index into the test's subs */
  bool revoked;            /* a revoke was acknowledged (or, after a check, observed) */
  bool revoke_unacked;     /* a revoke was in flight at the kill */
  bool revoke_pending, validate_pending; /* load thread only */
} sess;

typedef struct tok {
  char *token, jti[40];
  bool revoked, revoke_unacked, revoke_sent;
} tok;

typedef struct fam {
  char id[48];
  char *latest, *prev;     /* the newest acknowledged refresh token and the one before it */
  bool refresh_unacked;    /* a refresh was in flight at the kill */
  bool gone;               /* relaxed durability only: lost, no longer checked */
  int chain_left;          /* load thread: refreshes still to do */
  int64_t rotated_ms;      /* when it last rotated (the grace window for `prev`) */
} fam;

typedef struct counts {
  int creates, revokes, issues, token_revokes, pairs, refreshes;
  int unacked_creates, unacked_revokes, unacked_token_revokes, unacked_pairs, unacked_refreshes;
} counts;

/* The records of the whole run (main thread), and of one load thread for one cycle. */
typedef struct book {
  sess *s;
  size_t ns, cs;
  tok *t;
  size_t nt, ct;
  fam *f;
  size_t nf, cf;
} book;

sess *book_sess(book *b);
tok *book_tok(book *b);
fam *book_fam(book *b);
/* Moves everything of src to the end of dst (src is emptied). */
void book_move(book *dst, book *src);
void book_free(book *b);

/* ---- the load: one thread, one client, a window of requests in flight ------------------ */

enum kind { K_CREATE, K_REVOKE, K_ISSUE, K_TREVOKE, K_PAIR, K_REFRESH, K_VALIDATE };

typedef struct pending {
  uint32_t msgid;
  enum kind kind;
  int idx; /* the record (session, token, family) or the slot (pair) */
} pending;

/* Load has started once the first write was acknowledged (every thread is connected by then):
 * the random kill delay counts from there. `running` counts threads still loading. */
struct started {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool acked;
  int running;
};

typedef struct worker {
  int id, sub;
  char subname[32];
  uint64_t rng;
  tessera_client *c;
  pthread_barrier_t *start;
  struct started *started;
  bool signalled;           /* this thread reported a first acknowledged write */
  book b;
  counts n;
  int slot[SLOTS];          /* family f idle, -1 free, -2 pair in flight, -3 - f refreshing */
  pending q[WINDOW];
  int qhead, qlen;
  bool dead;                /* the connection ended */
  char failure[512];        /* an unexpected answer (the main thread fails the test) */
} worker;

/* A load thread (pthread_create with a worker whose id, sub, subname, rng, c, start, started
 * and slots (-1) are set): waits at start, then keeps WINDOW writes in flight until its
 * connection ends, collects what had arrived, marks the rest unacknowledged, and counts itself
 * out of started->running. */
void *worker_main(void *arg);

#endif
