// bench/verify.js: local verification of a cached token, in microseconds per verify (printed,
// never asserted). Starts its own tesserad (test/daemon.js) unless TESSERA_SOCKET is set.
//   node bench/verify.js [N]
import { connect, Verifier } from '../src/index.js';
import { Daemon } from '../test/daemon.js';

const n = Number(process.argv[2] ?? 200000);
const d = process.env.TESSERA_SOCKET ? null : await Daemon.start();
const socket = d ? d.socket : process.env.TESSERA_SOCKET;
const c = await connect(socket);
const v = await Verifier.create(socket);
const { token } = await c.tokenIssue({ sub: 'bench' });
await v.verify(token);
for (let i = 0; i < 10000; i++) await v.verify(token); // warm up
let best = Infinity;
for (let round = 0; round < 5; round++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await v.verify(token);
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
  best = Math.min(best, us);
}
console.log(`node: local verify of a cached token: ${best.toFixed(3)} us (best of 5 x ${n}; goal < 5 us)`);
v.close();
c.close();
if (d) await d.cleanup();
