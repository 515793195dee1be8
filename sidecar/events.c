#include "events.h"

#include "domain.h"
#include "error.h"
#include "log.h"
#include "params.h"
#include "rpc.h"

#include <stdlib.h>
#include <string.h>

void ts_event_list_add(ts_event_list *l, const char *kind, const char *id, size_t idlen,
                       int64_t until, int64_t before) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    ts_event *e = realloc(l->items, cap * sizeof(*e));
    if (!e) return;
    l->items = e;
    l->cap = cap;
  }
  ts_event *e = &l->items[l->n++];
  e->kind = kind;
  if (idlen >= sizeof(e->id)) idlen = sizeof(e->id) - 1;
  memcpy(e->id, id, idlen);
  e->id[idlen] = 0;
  e->until = until;
  e->before = before;
}

void ts_event_list_free(ts_event_list *l) {
  free(l->items);
  l->items = NULL;
  l->n = l->cap = 0;
}

typedef struct note_write {
  uv_write_t req;
  uv_buf_t buf;
} note_write;

static void on_note_written(uv_write_t *w, int status) {
  (void)status;
  note_write *n = (note_write *)w;
  free(n->buf.base);
  free(n);
}

static void send_to_subscribers(ts_server *s, const msgpack_sbuffer *msg) {
  for (ts_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (!c->subscribed || c->closing) continue;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > s->cfg->max_write_queue) {
      ts_log(TS_LOG_WARN, "subscriber does not read; disconnected", "{s:I}", "conn",
             (json_int_t)c->id);
      ts_conn_close(c, "subscriber too slow");
      continue;
    }
    note_write *n = malloc(sizeof(*n));
    char *copy = n ? malloc(msg->size) : NULL;
    if (!copy) {
      free(n);
      continue;
    }
    memcpy(copy, msg->data, msg->size);
    n->buf = uv_buf_init(copy, (unsigned)msg->size);
    if (uv_write(&n->req, (uv_stream_t *)&c->pipe, &n->buf, 1, on_note_written) != 0) {
      free(copy);
      free(n);
    }
  }
}

static bool any_subscriber(const ts_server *s) {
  for (const ts_conn *c = s->conns; c; c = c->next)
    if (c->subscribed && !c->closing) return true;
  return false;
}

void ts_events_revoked(ts_server *s, const ts_event *ev, size_t n) {
  if (n == 0 || !any_subscriber(s)) return;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  ts_rpc_pack_notification_head(&pk, "revoked");
  msgpack_pack_array(&pk, n);
  for (size_t i = 0; i < n; i++) {
    bool sub = strcmp(ev[i].kind, "sub") == 0;
    msgpack_pack_map(&pk, sub ? 4 : 3);
    ts_pack_cstr(&pk, "kind");
    ts_pack_cstr(&pk, ev[i].kind);
    ts_pack_cstr(&pk, "id");
    ts_pack_cstr(&pk, ev[i].id);
    ts_pack_cstr(&pk, "until");
    msgpack_pack_int64(&pk, ev[i].until);
    if (sub) {
      ts_pack_cstr(&pk, "before");
      msgpack_pack_int64(&pk, ev[i].before);
    }
  }
  send_to_subscribers(s, &sb);
  msgpack_sbuffer_destroy(&sb);
}

void ts_events_keys(ts_server *s, int64_t keys_version) {
  if (!any_subscriber(s)) return;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  ts_rpc_pack_notification_head(&pk, "keys");
  msgpack_pack_array(&pk, 1);
  msgpack_pack_map(&pk, 1);
  ts_pack_cstr(&pk, "keys_version");
  msgpack_pack_int64(&pk, keys_version);
  send_to_subscribers(s, &sb);
  msgpack_sbuffer_destroy(&sb);
}

void ts_events_subscribe(ts_req *r, const msgpack_object *params) {
  char why[160];
  if (ts_params_parse(params, NULL, 0, NULL, why, sizeof(why)) != 0) {
    ts_req_fail(r, TS_EBAD_REQUEST, why);
    return;
  }
  r->conn->subscribed = true;
  ts_domain *d = r->conn->server->domain;
  msgpack_packer *pk = ts_req_result(r);
  msgpack_pack_map(pk, 2);
  ts_pack_cstr(pk, "subscribed");
  msgpack_pack_true(pk);
  ts_pack_cstr(pk, "keys_version");
  msgpack_pack_int64(pk, d->keys.version);
  ts_req_send(r);
}
