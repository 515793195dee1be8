/* tests/lib/fallocate_unsupported.c: an LD_PRELOAD shim for one test (test_faults
 * store_without_fallocate_keeps_the_cap): fallocate fails with EOPNOTSUPP, as on a file system
 * that cannot allocate ahead, so the daemon's disk reserve is off and the store's cap alone
 * bounds it. */
#include <errno.h>
#include <sys/types.h>

int fallocate(int fd, int mode, off_t offset, off_t len);
int fallocate64(int fd, int mode, off_t offset, off_t len);

int fallocate(int fd, int mode, off_t offset, off_t len) {
  (void)fd, (void)mode, (void)offset, (void)len;
  errno = EOPNOTSUPP;
  return -1;
}

int fallocate64(int fd, int mode, off_t offset, off_t len) {
  return fallocate(fd, mode, offset, len);
}
