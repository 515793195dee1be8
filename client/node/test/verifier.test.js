// verifier.test.js: the local Verifier against the real daemon: valid tokens and their cache,
// every refusal with its code, revocations by jti, family and user reaching the verifier
// through the feed (also after a feed reconnect; how fast is a benchmark's business, so the
// deadline is a generous 5 s), the replay of what was
// revoked while the feed was down, the fail-closed policy and the feed reset.
import test from 'node:test';
import assert from 'node:assert/strict';
import { connect, Verifier } from '../src/index.js';
import { Daemon, waitFor } from './daemon.js';

const d = await Daemon.start(['--access-ttl', '10m']);
const c = await connect(d.socket);
test.after(async () => {
  c.close();
  await d.cleanup();
});

/** Resolves to the rejection code of verify(token), or 'ok'. */
const outcome = (v, token) => v.verify(token).then(() => 'ok', (e) => e.code);

/** Revokes with fn, then waits (deadline 5 s from the revoking call's reply) for verify to refuse. */
async function refusedSoon(v, token, fn) {
  await fn();
  await waitFor(async () => (await outcome(v, token)) === 'revoked', 5000, 'the revocation to reach the verifier');
}

test('a valid token verifies; the second time it comes from the cache', async () => {
  const v = await Verifier.create(d.socket);
  const t = await c.tokenIssue({ sub: 'alice', scope: 'read', claims: { org: 'acme' } });
  const claims = await v.verify(t.token);
  assert.equal(claims.sub, 'alice');
  assert.equal(claims.org, 'acme');
  assert.ok(Object.isFrozen(claims));
  await v.verify(t.token);
  const st = v.stats();
  assert.equal(st.signatureChecks, 1);
  assert.equal(st.cacheHits, 1);
  assert.equal(st.feedUp, true);
  v.close();
});

test('refusals carry the same codes as token.verify', async () => {
  const v = await Verifier.create(d.socket, { leeway: 0 });
  const t = (await c.tokenIssue({ sub: 'bob' })).token;
  const [h, p, s] = t.split('.');
  const flip = (x) => (x[0] === 'A' ? 'B' : 'A') + x.slice(1);
  assert.equal(await outcome(v, `${h}.${flip(p)}.${s}`), 'unauthenticated');
  assert.equal(await outcome(v, `${h}.${p}.${flip(s)}`), 'unauthenticated');
  assert.equal(await outcome(v, `${h}.${p}`), 'unauthenticated');
  assert.equal(await outcome(v, ''), 'unauthenticated');
  assert.equal(await outcome(v, 'a'.repeat(9000)), 'unauthenticated');
  const pair = await c.tokenPair({ sub: 'bob' });
  assert.equal(await outcome(v, pair.refresh_token), 'unauthenticated', 'a refresh token is not an access token');
  const withAud = (await c.tokenIssue({ sub: 'bob', aud: 'billing' })).token;
  assert.equal(await outcome(v, withAud), 'unauthenticated', 'aud present, none expected');
  const va = await Verifier.create(d.socket, { audience: 'billing', subscribe: false });
  assert.equal(await outcome(va, withAud), 'ok');
  assert.equal(await outcome(va, t), 'unauthenticated', 'aud expected, none present');
  va.close();
  const short = (await c.tokenIssue({ sub: 'bob', ttl: 1 })).token;
  await waitFor(async () => (await outcome(v, short)) === 'expired', 3000, 'the 1 s token to expire');
  await assert.rejects(v.verify(42), TypeError);
  v.close();
});

test('a revoked access token is refused once the feed brings it, cached or not', async () => {
  const v = await Verifier.create(d.socket);
  const t = await c.tokenIssue({ sub: 'carol' });
  assert.equal(await outcome(v, t.token), 'ok');
  await refusedSoon(v, t.token, () => c.tokenRevoke({ token: t.token }));
  const fresh = await c.tokenIssue({ sub: 'carol' });
  await c.tokenRevoke({ jti: fresh.jti, exp: fresh.expires_at });
  await waitFor(async () => (await outcome(v, fresh.token)) === 'revoked', 5000, 'the jti revocation');
  v.close();
});

test('a revoked family and a user cut-off reach the verifier', async () => {
  const v = await Verifier.create(d.socket);
  const pair = await c.tokenPair({ sub: 'dave' });
  assert.equal(await outcome(v, pair.access_token), 'ok');
  await refusedSoon(v, pair.access_token, () => c.tokenRevoke({ token: pair.refresh_token }));
  const t = await c.tokenIssue({ sub: 'erin' });
  assert.equal(await outcome(v, t.token), 'ok');
  await refusedSoon(v, t.token, () => c.userRevoke({ sub: 'erin' }));
  const after = await c.tokenIssue({ sub: 'erin' });
  assert.equal(await outcome(v, after.token), 'ok', 'a login after the cut-off works');
  v.close();
});

test('after a feed reconnect revocations still arrive; missed ones are replayed', async () => {
  const v = await Verifier.create(d.socket);
  const missed = await c.tokenIssue({ sub: 'frank' });
  assert.equal(await outcome(v, missed.token), 'ok');
  const connects = v.stats().feedConnects;
  await d.stop();
  await waitFor(() => !v.stats().feedUp, 2000, 'the feed to notice the daemon is gone');
  await d.launch();
  await waitFor(() => v.stats().feedConnects > connects, 10000, 'the feed to resubscribe');
  const t = await c.tokenIssue({ sub: 'frank' });
  assert.equal(await outcome(v, t.token), 'ok');
  await refusedSoon(v, t.token, () => c.tokenRevoke({ token: t.token }));

  // Revoked while the feed is down: the resubscribe from the cursor replays it.
  const up = v.stats().feedConnects;
  v._feed.disconnect();
  await c.tokenRevoke({ token: missed.token });
  await waitFor(() => v.stats().feedConnects > up, 10000, 'the feed to resubscribe');
  assert.equal(await outcome(v, missed.token), 'revoked');
  v.close();
});

test('fail-closed: once the feed has been down feedStaleMs, every verify is unavailable', async () => {
  const v = await Verifier.create(d.socket, { feedStaleMs: 50 });
  const t = await c.tokenIssue({ sub: 'gina' });
  assert.equal(await outcome(v, t.token), 'ok');
  await d.stop();
  await waitFor(async () => (await outcome(v, t.token)) === 'unavailable', 3000, 'fail-closed');
  await d.launch();
  await waitFor(async () => (await outcome(v, t.token)) === 'ok', 10000, 'the feed to come back');
  v.close();
});

test('ask-daemon: with the feed down and the daemon gone, no verdict (unavailable)', async () => {
  const v = await Verifier.create(d.socket, { feedStaleMs: 50, feedDownPolicy: 'ask-daemon' });
  const t = await c.tokenIssue({ sub: 'hank' });
  await d.stop();
  await waitFor(async () => (await outcome(v, t.token)) === 'unavailable', 3000, 'no verdict');
  await d.launch();
  await waitFor(async () => (await outcome(v, t.token)) === 'ok', 10000, 'the feed to come back');
  v.close();
});

test('reset: a daemon on another store cannot resume the cursor; older tokens get the policy', async () => {
  const v = await Verifier.create(d.socket);
  const asks = await Verifier.create(d.socket, { feedDownPolicy: 'ask-daemon' });
  const old = await c.tokenIssue({ sub: 'ivy' });
  await c.tokenRevoke({ token: (await c.tokenIssue({ sub: 'ivy' })).token }); // a cursor to resume from
  await waitFor(() => v.stats().revocationsApplied > 0, 2000, 'the revocation');
  assert.equal(await outcome(v, old.token), 'ok');
  await d.stop();
  d.swapData();
  await d.launch();
  await waitFor(() => v.stats().feedResets === 1, 10000, 'the reset');
  assert.equal(await outcome(v, old.token), 'unavailable');
  await waitFor(() => asks.stats().feedResets === 1, 10000, 'the reset (ask-daemon)');
  assert.equal(await outcome(asks, old.token), 'ok', 'ask-daemon: the daemon vouches for it');
  assert.equal(asks.stats().daemonFallbacks, 1);
  asks.close();
  // A token the daemon issued after the reset second (its clock, not ours: iat is its).
  const iat = (t) => JSON.parse(Buffer.from(t.split('.')[1], 'base64url')).iat;
  let fresh;
  await waitFor(async () => {
    fresh = (await c.tokenIssue({ sub: 'ivy' })).token;
    return iat(fresh) > v._resetAt;
  }, 3000, 'a token issued after the reset second');
  assert.equal(await outcome(v, fresh), 'ok');
  v.close();
});

test('keys.rotate: tokens of the new key verify at once; the keys notification refetches', async () => {
  const v = await Verifier.create(d.socket);
  const before = v.stats();
  const r = await c.keysRotate();
  const t = await c.tokenIssue({ sub: 'jack' });
  assert.equal(await outcome(v, t.token), 'ok', 'the next key was published before it signed');
  await waitFor(() => v.stats().keysVersion === r.keys_version, 2000, 'the new key set');
  assert.ok(v.stats().keysNotifications > before.keysNotifications);
  assert.equal(v.stats().unknownKidRefused, 0);
  v.close();
});
