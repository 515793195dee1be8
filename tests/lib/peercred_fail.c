/* tests/lib/peercred_fail.c: an LD_PRELOAD shim for one test (test_server
 * unreadable_peer_credentials_reject): getsockopt(SOL_SOCKET, SO_PEERCRED) fails with EACCES, as
 * it might under a restrictive security module; every other getsockopt goes to libc. Nothing
 * else can make the daemon's SO_PEERCRED fail on a connected Unix socket. */
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>

int getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
  if (level == SOL_SOCKET && name == SO_PEERCRED) {
    errno = EACCES;
    return -1;
  }
  int (*real)(int, int, int, void *, socklen_t *) =
      (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  return real(fd, level, name, val, len);
}
