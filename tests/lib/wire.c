/* tests/lib/wire.c: raw msgpack-rpc over a Unix socket, with deadlines (wire.h). */
#include "wire.h"

#include "tt.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int tw_connect(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  TT_ASSERT(fd >= 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  TT_ASSERT(strlen(path) < sizeof(sa.sun_path));
  memcpy(sa.sun_path, path, strlen(path) + 1);
  TT_ASSERT_MSG(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s", path,
                strerror(errno));
  return fd;
}

bool tw_send(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= (size_t)n;
  }
  return true;
}

/* [0, msgid, method, [params]] into sb (initialised here); params: one packed msgpack object or
 * NULL for []. */
static void pack_request(msgpack_sbuffer *sb, uint32_t msgid, const char *method,
                         size_t method_len, const void *params, size_t params_len) {
  msgpack_sbuffer_init(sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 4);
  msgpack_pack_uint8(&pk, 0);
  msgpack_pack_uint32(&pk, msgid);
  msgpack_pack_str_with_body(&pk, method, method_len);
  msgpack_pack_array(&pk, params ? 1 : 0);
  if (params) msgpack_sbuffer_write(sb, params, params_len);
}

bool tw_send_request(int fd, uint32_t msgid, const char *method) {
  msgpack_sbuffer sb;
  pack_request(&sb, msgid, method, strlen(method), NULL, 0);
  bool ok = tw_send(fd, sb.data, sb.size);
  msgpack_sbuffer_destroy(&sb);
  return ok;
}

bool tw_closed_within(int fd, int timeout_ms) {
  char buf[4096];
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0 && errno != EINTR && errno != EAGAIN) return true;
  }
}

void tw_reader_init(tw_reader *r, int fd) {
  r->fd = fd;
  TT_ASSERT(msgpack_unpacker_init(&r->up, 65536));
  msgpack_unpacked_init(&r->msg);
}

void tw_reader_destroy(tw_reader *r) {
  msgpack_unpacked_destroy(&r->msg);
  msgpack_unpacker_destroy(&r->up);
}

const msgpack_object *tw_next(tw_reader *r, int timeout_ms) {
  for (;;) {
    msgpack_unpack_return ret = msgpack_unpacker_next(&r->up, &r->msg);
    if (ret == MSGPACK_UNPACK_SUCCESS) return &r->msg.data;
    TT_ASSERT_MSG(ret == MSGPACK_UNPACK_CONTINUE, "bad msgpack from the daemon");
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    int pr = poll(&p, 1, timeout_ms);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return NULL;
    if (msgpack_unpacker_buffer_capacity(&r->up) < 65536)
      TT_ASSERT(msgpack_unpacker_reserve_buffer(&r->up, 65536));
    ssize_t n = recv(r->fd, msgpack_unpacker_buffer(&r->up), msgpack_unpacker_buffer_capacity(&r->up), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return NULL;
    msgpack_unpacker_buffer_consumed(&r->up, (size_t)n);
  }
}

bool tw_read_response(tw_reader *r, int timeout_ms, uint32_t *msgid, char *code, size_t cap) {
  const msgpack_object *o = tw_next(r, timeout_ms);
  if (!o) return false;
  TT_ASSERT(o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 4);
  TT_ASSERT(o->via.array.ptr[0].via.u64 == 1);
  *msgid = (uint32_t)o->via.array.ptr[1].via.u64;
  const msgpack_object *e = &o->via.array.ptr[2];
  if (cap) code[0] = 0;
  if (e->type == MSGPACK_OBJECT_ARRAY && cap) {
    TT_ASSERT(e->via.array.size == 2 && e->via.array.ptr[0].type == MSGPACK_OBJECT_STR);
    snprintf(code, cap, "%.*s", (int)e->via.array.ptr[0].via.str.size, e->via.array.ptr[0].via.str.ptr);
  }
  return true;
}

void tw_call_raw(const char *socket_path, const char *method, size_t method_len,
                 const void *params, size_t params_len, char *code, size_t cap) {
  msgpack_sbuffer sb;
  pack_request(&sb, 4242, method, method_len, params, params_len);
  int fd = tw_connect(socket_path);
  tw_reader rd;
  tw_reader_init(&rd, fd);
  TT_ASSERT(tw_send(fd, sb.data, sb.size));
  uint32_t id = 0;
  TT_ASSERT_MSG(tw_read_response(&rd, 10000, &id, code, cap), "no reply to a raw %.*s",
                (int)method_len, method);
  TT_EQ_INT(id, 4242);
  /* The connection stays usable. */
  TT_ASSERT(tw_send_request(fd, 4243, "sys.ping"));
  char c2[32];
  TT_ASSERT(tw_read_response(&rd, 10000, &id, c2, sizeof(c2)));
  TT_EQ_INT(id, 4243);
  TT_EQ_STR(c2, "");
  tw_reader_destroy(&rd);
  close(fd);
  msgpack_sbuffer_destroy(&sb);
}
