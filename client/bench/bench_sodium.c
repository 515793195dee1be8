/* client/bench/bench_sodium.c: the token anchor: raw libsodium Ed25519 sign or verify of a
 * message (a real token's signing input when the daemon gave one), in a loop on this one
 * thread, for the same window as the other workloads. Owned by tessera-bench. */
#include "bench.h"

#include <sodium.h>
#include <stdio.h>

int bench_sodium_run(bool verify, const uint8_t *msg, size_t len, double seconds,
                     bench_result *r) {
  if (sodium_init() < 0) return -1;
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES],
      sig[crypto_sign_BYTES];
  crypto_sign_keypair(pk, sk);
  crypto_sign_detached(sig, NULL, msg, len, sk);
  double start = bench_now(), end = start + seconds, t = start;
  while (t < end) {
    int bad = 0;
    if (verify) bad = crypto_sign_verify_detached(sig, msg, len, pk) != 0;
    else crypto_sign_detached(sig, NULL, msg, len, sk);
    double t2 = bench_now();
    if (bad) r->errors++;
    else r->requests++;
    bench_lat_add(&r->lat, (t2 - t) * 1e6);
    t = t2;
  }
  sodium_memzero(sk, sizeof(sk));
  r->seconds = t - start;
  return 0;
}
