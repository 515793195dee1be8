// client.test.js: the connection against the real daemon: calls and typed helpers, errors with
// the wire code, pipelining, reconnect after the daemon restarts; per-call timeouts against a
// stand-in server that holds a reply back (deterministic).
import test from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { encode, decodeMultiStream } from '@msgpack/msgpack';
import { connect, Client, TesseraError, METHODS } from '../src/index.js';
import { Daemon } from './daemon.js';

const d = await Daemon.start();
test.after(() => d.cleanup());

test('sys.ping answers version and now', async () => {
  const c = await connect(d.socket);
  const r = await c.sysPing();
  assert.equal(typeof r.version, 'string');
  assert.ok(Math.abs(r.now - Date.now() / 1000) < 5);
  c.close();
});

test('a session round trip through the helpers', async () => {
  const c = await connect(d.socket);
  const s = await c.sessionCreate({ sub: 'alice', data: { role: 'admin' } });
  assert.equal(s.sid.length, 43);
  assert.match(s.cookie, /^__Host-sid=/);
  const v = await c.sessionValidate({ sid: s.sid });
  assert.equal(v.sub, 'alice');
  assert.deepEqual(v.data, { role: 'admin' });
  assert.deepEqual(await c.sessionRevoke({ sid: s.sid }), { revoked: 1 });
  await assert.rejects(c.sessionValidate({ sid: s.sid }), { name: 'TesseraError', code: 'unauthenticated' });
  c.close();
});

test('errors carry the wire code and never the secret', async () => {
  const c = await connect(d.socket);
  const secret = 'x'.repeat(43);
  const err = await c.sessionValidate({ sid: secret }).catch((e) => e);
  assert.ok(err instanceof TesseraError);
  assert.equal(err.code, 'unauthenticated');
  assert.ok(!err.message.includes(secret));
  await assert.rejects(c.call('no.such'), { code: 'unknown_method' });
  await assert.rejects(c.sessionCreate({ sub: 'a', bogus: 1 }), { code: 'bad_request' });
  await assert.rejects(c.call('sys.ping', 'nope'), TypeError);
  c.close();
});

test('every method of the protocol has a helper', async () => {
  const c = await connect(d.socket);
  const stats = await c.sysStats();
  const wire = Object.keys(stats).filter((k) => k.startsWith('method.')).map((k) => k.slice(7)).sort();
  assert.deepEqual(Object.values(METHODS).sort(), wire);
  for (const name of Object.keys(METHODS)) assert.equal(typeof c[name], 'function');
  c.close();
});

test('pipelined calls are matched by msgid', async () => {
  const c = await connect(d.socket);
  const subs = Array.from({ length: 200 }, (_, i) => `user-${i}`);
  const issued = await Promise.all(subs.map((sub) => c.tokenIssue({ sub, ttl: 60 })));
  const verified = await Promise.all(issued.map((t) => c.tokenVerify({ token: t.token })));
  assert.deepEqual(verified.map((v) => v.claims.sub), subs);
  c.close();
});

test('a call with no reply in time fails with timeout; a late reply is dropped; the connection goes on', async () => {
  // A stand-in server: answers 'fast' at once, 'slow' only after the next 'fast'.
  const path = `${d.dir}/stand-in.sock`;
  const server = net.createServer(async (sock) => {
    sock.on('error', () => {}); // the client may go away first
    let slow = null;
    for await (const [, msgid, method] of decodeMultiStream(sock)) {
      if (method === 'slow') slow = msgid;
      else {
        sock.write(encode([1, msgid, null, { method }]));
        if (slow !== null) sock.write(encode([1, slow, null, { late: true }]));
        slow = null;
      }
    }
  });
  await new Promise((r) => server.listen(path, r));
  const c = await connect(path);
  await assert.rejects(c.call('slow', {}, { timeoutMs: 50 }), { code: 'timeout' });
  assert.deepEqual(await c.call('fast'), { method: 'fast' });
  assert.deepEqual(await c.call('fast'), { method: 'fast' });
  c.close();
  server.close();
});

test('connect to a missing socket fails with code connect', async () => {
  await assert.rejects(connect(`${d.dir}/nothing.sock`), { code: 'connect' });
});

test('after the daemon restarts, the next call reconnects', async () => {
  const c = new Client(d.socket);
  await c.sysPing();
  await d.stop();
  await assert.rejects(c.sysPing(), (e) => ['closed', 'connect'].includes(e.code));
  await d.launch();
  assert.equal(typeof (await c.sysPing()).now, 'number');
  c.close();
});
