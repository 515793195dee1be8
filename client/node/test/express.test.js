// express.test.js: an Express app behind tesseraExpress over real HTTP: a session cookie and a
// bearer token put the identity on the request; a revoked session is refused on the very next
// request (and its cookie cleared); a fresh login works; a revoked bearer token is refused by
// the local verifier; rotateAfter renews the cookie; optional hands over; an outage is 503.
import test from 'node:test';
import assert from 'node:assert/strict';
import express from 'express';
import { connect, Verifier } from '../src/index.js';
import { tesseraExpress } from '../src/express.js';
import { Daemon, waitFor } from './daemon.js';

const d = await Daemon.start();
const c = await connect(d.socket);
const verifier = await Verifier.create(d.socket);

function listen(app) {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function makeApp(options = {}) {
  const app = express();
  app.post('/login/:sub', async (req, res) => {
    const s = await c.sessionCreate({ sub: req.params.sub, client: { ua: req.headers['user-agent'] ?? '' } });
    res.append('Set-Cookie', s.cookie).json({ ok: true });
  });
  app.use(tesseraExpress({ client: c, verifier, ...options }));
  app.get('/me', (req, res) => res.json(req.tessera));
  return app;
}

const server = await listen(makeApp());
const base = `http://127.0.0.1:${server.address().port}`;
test.after(async () => {
  server.close();
  verifier.close();
  c.close();
  await d.cleanup();
});

const cookieOf = (res) => res.headers.get('set-cookie')?.split(';')[0];
const me = (headers) => fetch(`${base}/me`, { headers });

test('a session cookie reaches the app as req.tessera', async () => {
  const login = await fetch(`${base}/login/alice`, { method: 'POST' });
  const cookie = cookieOf(login);
  const res = await me({ cookie });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.kind, 'session');
  assert.equal(body.sub, 'alice');
});

test('a revoked session is refused on the very next request; a fresh login is accepted', async () => {
  const cookie = cookieOf(await fetch(`${base}/login/bob`, { method: 'POST' }));
  assert.equal((await me({ cookie })).status, 200);
  await c.sessionRevoke({ sid: cookie.split('=')[1] });
  const res = await me({ cookie });
  assert.equal(res.status, 401);
  assert.deepEqual(await res.json(), { error: 'unauthenticated' });
  assert.match(res.headers.get('set-cookie'), /^__Host-sid=; Path=\/; Max-Age=0/);
  const again = cookieOf(await fetch(`${base}/login/bob`, { method: 'POST' }));
  assert.equal((await me({ cookie: again })).status, 200);
});

test('no credential is 401; a bearer token is checked by the local verifier', async () => {
  assert.equal((await me({})).status, 401);
  const t = await c.tokenIssue({ sub: 'carol' });
  const res = await me({ authorization: `Bearer ${t.token}` });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.kind, 'token');
  assert.equal(body.claims.sub, 'carol');
  await c.tokenRevoke({ token: t.token });
  await waitFor(async () => (await me({ authorization: `Bearer ${t.token}` })).status === 401, 1000, 'the revoked token refused');
  const refused = await me({ authorization: `Bearer ${t.token}` });
  assert.match(refused.headers.get('www-authenticate'), /invalid_token/);
  assert.deepEqual(await refused.json(), { error: 'revoked' });
});

test('rotateAfter renews the cookie; the old sid is dead', async () => {
  const app = makeApp({ rotateAfter: 1 });
  const s2 = await listen(app);
  const url = `http://127.0.0.1:${s2.address().port}`;
  const s = await c.sessionCreate({ sub: 'dora' });
  const cookie = `__Host-sid=${s.sid}`;
  const patient = await listen(makeApp({ rotateAfter: 3600 }));
  const young = await fetch(`http://127.0.0.1:${patient.address().port}/me`, { headers: { cookie } });
  assert.equal(young.status, 200);
  assert.equal(young.headers.get('set-cookie'), null, 'a young session keeps its cookie');
  patient.close();
  await waitFor(() => Date.now() / 1000 >= s.expires_at - s.expires_in + 1, 3000, 'the session to age a second');
  const old = await fetch(`${url}/me`, { headers: { cookie } });
  assert.equal(old.status, 200);
  const renewed = cookieOf(old);
  assert.ok(renewed && renewed !== cookie);
  assert.equal((await fetch(`${url}/me`, { headers: { cookie } })).status, 401);
  assert.equal((await fetch(`${url}/me`, { headers: { cookie: renewed } })).status, 200);
  s2.close();
});

test('optional hands over with req.tessera null; an outage is 503, not 401', async () => {
  const opt = await listen(makeApp({ optional: true }));
  const url = `http://127.0.0.1:${opt.address().port}`;
  const res = await fetch(`${url}/me`);
  assert.equal(res.status, 200);
  assert.equal(await res.json(), null);
  opt.close();
  const down = await connect(d.socket);
  const app = express();
  app.use(tesseraExpress({ client: down }));
  app.get('/me', (req, res) => res.json(req.tessera));
  const s3 = await listen(app);
  down.close(); // every call now fails on this side: the daemon cannot be asked
  const r = await fetch(`http://127.0.0.1:${s3.address().port}/me`, { headers: { cookie: '__Host-sid=abc' } });
  assert.equal(r.status, 503);
  s3.close();
});
