// fastify.test.js: a Fastify app behind the tesseraFastify hook (app.inject): identity on the
// request, a revoked session refused on the very next request, a bearer token, 401 without one.
import test from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { connect, Verifier } from '../src/index.js';
import { tesseraFastify } from '../src/fastify.js';
import { Daemon } from './daemon.js';

const d = await Daemon.start();
const c = await connect(d.socket);
const verifier = await Verifier.create(d.socket);
const app = Fastify();
app.decorateRequest('tessera', null);
app.addHook('onRequest', tesseraFastify({ client: c, verifier }));
app.get('/me', async (request) => request.tessera);
await app.ready();
test.after(async () => {
  await app.close();
  verifier.close();
  c.close();
  await d.cleanup();
});

const me = (headers) => app.inject({ method: 'GET', url: '/me', headers });

test('a session cookie reaches the route; revoked, it is refused on the next request', async () => {
  const s = await c.sessionCreate({ sub: 'alice' });
  const cookie = `__Host-sid=${s.sid}`;
  const ok = await me({ cookie });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json().sub, 'alice');
  await c.sessionRevoke({ handle: s.handle });
  const refused = await me({ cookie });
  assert.equal(refused.statusCode, 401);
  assert.deepEqual(refused.json(), { error: 'unauthenticated' });
  const fresh = await c.sessionCreate({ sub: 'alice' });
  assert.equal((await me({ cookie: `__Host-sid=${fresh.sid}` })).statusCode, 200);
});

test('a bearer token is accepted; none is 401', async () => {
  const t = await c.tokenIssue({ sub: 'bob' });
  const ok = await me({ authorization: `Bearer ${t.token}` });
  assert.equal(ok.statusCode, 200);
  assert.equal(ok.json().claims.sub, 'bob');
  assert.equal((await me({})).statusCode, 401);
  assert.equal((await me({ authorization: 'Bearer nope' })).statusCode, 401);
});
