/* sidecar/http/health.c: /healthz (alive) and /readyz (ready to serve).
 *
 * Owner: the HTTP edge. /healthz answers 200 "ok" whenever the loop answers at all. /readyz
 * answers 200 "ready", or 503 with the first reason that holds: draining (SIGTERM), no
 * signing key, the store unreachable (the backend's ready(): Redis down), the LMDB data
 * directory not writable, the store's last commits failing (commits
 * failed since the previous probe and none succeeded), the store at its size cap. The store
 * is read through ts_domain_stats only, so another backend reports through the same names. */
#include "hconn.h"

#include "backend.h"
#include "domain.h"

#include <string.h>
#include <unistd.h>

static void text(ts_hconn *c, int status, const char *body) {
  ts_hbuf hd = {0};
  ts_hbuf_str(&hd, "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n");
  ts_hconn_send(c, status, &hd, body, strlen(body));
  ts_hbuf_free(&hd);
}

void ts_http_healthz(ts_hconn *c) { text(c, 200, "ok\n"); }

static uint64_t stat_of(const ts_stat_list *l, const char *name, bool *found) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->items[i].name, name) == 0) {
      if (found) *found = true;
      return l->items[i].value;
    }
  return 0;
}

void ts_http_readyz(ts_hconn *c) {
  ts_http *h = c->http;
  ts_domain *d = h->server->domain;
  if (h->draining || h->server->draining) return text(c, 503, "draining\n");
  if (!d->keys.ring || !ts_keyring_active(d->keys.ring)) return text(c, 503, "no signing key\n");
  if (!d->backend->ops->ready(d->backend)) return text(c, 503, "store unreachable\n");
  if (strcmp(h->cfg->store, "lmdb") == 0 && access(h->cfg->data_dir, W_OK) != 0)
    return text(c, 503, "data directory not writable\n");
  static ts_stat_list l; /* loop thread only */
  l.n = 0;
  ts_domain_stats(d, &l);
  uint64_t commits = stat_of(&l, "store_commits", NULL);
  uint64_t failed = stat_of(&l, "store_failed_commits", NULL);
  bool failing = failed > h->ready_failed && commits == h->ready_commits;
  h->ready_commits = commits;
  h->ready_failed = failed;
  if (failing) return text(c, 503, "store commits failing\n");
  bool has_max = false;
  uint64_t max = stat_of(&l, "store_max_bytes", &has_max);
  if (has_max && max && stat_of(&l, "store_bytes", NULL) >= max)
    return text(c, 503, "store full\n");
  text(c, 200, "ready\n");
}
