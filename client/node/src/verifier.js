// verifier.js: the local verifier, libtessera's (client/include/tessera/verifier.h) in Node.
// Access tokens are checked in-process (jws.js) against the daemon's keys.jwks:
//   keys     fetched at start, refetched once older than max_age (the old set stays in use if
//            that fails), on a "keys" notification with another keys_version, and once for an
//            unknown kid (single flight, at most once per refetchCooldownMs). A set that drops
//            a kid empties the token cache.
//   cache    verified tokens (claims frozen) until exp + leeway; FIFO eviction at cacheEntries.
//            Every hit is checked against the revocation set again, so a revocation applies
//            to the very next verify of a cached token.
//   feed     (subscribe, the default) a second connection on events.subscribe, resumed from
//            the cursor of the last entry applied ("0" at first: every revocation in force);
//            "revoked" jti/family/sub entries held until their `until`; "reset" empties the
//            cache and every token issued at or before it gets the feed-down policy; after a
//            disconnect it reconnects with jittered backoff (50 ms doubling to 5 s),
//            resubscribes with its cursor and refetches the keys.
//   policy   once the feed has been down feedStaleMs: 'fail-closed' refuses every verify with
//            code 'unavailable'; 'ask-daemon' asks token.verify {check_revoked: true}.
// verify() resolves to the claims or rejects with a TesseraError whose code is
// 'unauthenticated' | 'expired' | 'revoked' (as token.verify answers) or 'unavailable'.
import { EventEmitter } from 'node:events';
import { Client, defaultSocket } from './client.js';
import { TesseraError } from './errors.js';
import { parse, verifySignature, checkClaims, keyOf, Refusal, MAX_TOKEN } from './jws.js';

const BACKOFF_MIN = 50;
const BACKOFF_MAX = 5000;
const BACKOFF_RESET_MS = 10000;
const PRUNE_MS = 30000;
const MAX_AGE_CAP = 86400;
const MAX_AGE_DEFAULT = 300;
const POLICIES = ['fail-closed', 'ask-daemon'];

const MESSAGES = {
  unauthenticated: 'token not valid',
  expired: 'token expired or not yet valid',
  revoked: 'token revoked',
};
const refuse = (code) => new TesseraError(code, MESSAGES[code]);
const unavailable = (why) => new TesseraError('unavailable', why);
const nowSec = () => Math.floor(Date.now() / 1000);
const mono = () => performance.now();

function deepFreeze(o) {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

function checkOptions(o) {
  const int = (v, name, min) => {
    if (!Number.isInteger(v) || v < min) throw new TypeError(`${name} must be an integer >= ${min}`);
  };
  int(o.leeway, 'leeway', 0);
  int(o.cacheEntries, 'cacheEntries', 0);
  int(o.refetchCooldownMs, 'refetchCooldownMs', 0);
  int(o.feedStaleMs, 'feedStaleMs', 0);
  if (!POLICIES.includes(o.feedDownPolicy)) throw new TypeError(`feedDownPolicy must be one of ${POLICIES.join(', ')}`);
  if (typeof o.issuer !== 'string' || o.issuer === '') throw new TypeError('issuer must be a non-empty string');
  if (o.audience != null && (typeof o.audience !== 'string' || o.audience === ''))
    throw new TypeError('audience must be a non-empty string or null');
}

export class Verifier extends EventEmitter {
  /**
   * Creates a verifier: fetches the keys and (with subscribe) starts the feed before
   * resolving, so a verifier that exists has keys and a live feed.
   */
  static async create(socketPath, options = {}) {
    const v = new Verifier(socketPath, options);
    try {
      if (v.subscribe) await v._feedConnect();
      else await v._refetch();
    } catch (err) {
      v.close();
      throw err;
    }
    if (v.subscribe) v._pruner = setInterval(() => v._prune(), PRUNE_MS).unref();
    return v;
  }

  /** Use Verifier.create (this does not connect). */
  constructor(socketPath = defaultSocket(), options = {}) {
    super();
    const o = {
      issuer: 'tessera',
      audience: null,
      leeway: 60,
      cacheEntries: 10000,
      refetchCooldownMs: 1000,
      timeoutMs: 2000,
      subscribe: true,
      feedDownPolicy: 'fail-closed',
      feedStaleMs: 5000,
      ...options,
    };
    checkOptions(o);
    this.socketPath = socketPath;
    this.issuer = o.issuer;
    this.audience = o.audience ?? null;
    this.leeway = o.leeway;
    this.cacheEntries = o.cacheEntries;
    this.cooldownMs = o.refetchCooldownMs;
    this.timeoutMs = o.timeoutMs;
    this.subscribe = o.subscribe !== false;
    this.policy = o.feedDownPolicy;
    this.staleMs = o.feedStaleMs;

    this._call = new Client(socketPath, { timeoutMs: this.timeoutMs });
    this._keys = new Map();
    this._keysVersion = null;
    this._keysFetchedAt = -Infinity;
    this._maxAgeMs = MAX_AGE_DEFAULT * 1000;
    this._fetching = null;
    this._lastKidFetch = -Infinity;
    this._lastStaleTry = -Infinity;
    this._cache = new Map();
    this._revJti = new Map();
    this._revFam = new Map();
    this._revSub = new Map();
    this._feed = null;
    this._feedUp = false;
    this._feedDownSince = mono();
    this._cursor = '0';
    this._resetAt = 0;
    this._closed = false;
    this._retry = null;
    this._backoff = BACKOFF_MIN;
    this._st = {
      verifies: 0, accepted: 0, cacheHits: 0, signatureChecks: 0, jwksFetches: 0, jwksFetchFailures: 0,
      unknownKidRefused: 0, revocationsApplied: 0, keysNotifications: 0, feedConnects: 0,
      feedDisconnects: 0, feedEvents: 0, feedResets: 0, daemonFallbacks: 0,
    };
  }

  /** Verifies an access token; resolves to its claims (frozen), or rejects with a TesseraError. */
  async verify(token) {
    if (typeof token !== 'string') throw new TypeError('token must be a string');
    this._st.verifies++;
    let mode = this._feedMode();
    if (mode === 'fail-closed') throw unavailable('the revocation feed is down (fail-closed policy)');
    if (token.length > MAX_TOKEN) throw refuse('unauthenticated');
    const now = nowSec();
    let claims = null;
    const hit = this._cache.get(token);
    if (hit !== undefined) {
      if (now >= hit.validUntil) this._cache.delete(token);
      else {
        if (this._isRevoked(hit.claims, now)) {
          this._cache.delete(token);
          throw refuse('revoked');
        }
        this._st.cacheHits++;
        claims = hit.claims;
      }
    }
    if (claims === null) claims = await this._fresh(token, now);
    if (mode === 'ok' && this._resetAt !== 0 && (claims.iat ?? 0) <= this._resetAt) mode = this.policy;
    if (mode === 'fail-closed') throw unavailable('issued before the revocation feed was reset (fail-closed policy)');
    if (mode === 'ask-daemon') await this._askDaemon(token);
    this._st.accepted++;
    return claims;
  }

  /** Counters and state, for tests and metrics. */
  stats() {
    return {
      ...this._st,
      cachedTokens: this._cache.size,
      revocationEntries: this._revJti.size + this._revFam.size + this._revSub.size,
      keysVersion: this._keysVersion,
      feedUp: this._feedUp,
    };
  }

  /**
   * Resolves true once stats().feedEvents exceeds seen (the feed applied a revocation, a keys
   * change, a reset, a reconnect or a disconnect), false after timeoutMs.
   */
  waitFeed(seen, timeoutMs = 5000) {
    if (this._st.feedEvents > seen) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok) => {
        clearTimeout(timer);
        this.off('feed', onFeed);
        resolve(ok);
      };
      const onFeed = () => this._st.feedEvents > seen && done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.on('feed', onFeed);
    });
  }

  /** Stops the feed and closes both connections. */
  close() {
    this._closed = true;
    clearTimeout(this._retry);
    clearInterval(this._pruner);
    this._feed?.close();
    this._call.close();
  }

  // ---- the verify path ----

  _feedMode() {
    if (!this.subscribe || this._feedUp) return 'ok';
    return mono() - this._feedDownSince >= this.staleMs ? this.policy : 'ok';
  }

  _isRevoked(c, now) {
    if (this._revJti.size + this._revFam.size + this._revSub.size === 0) return false;
    const j = this._revJti.get(c.jti);
    if (j !== undefined && now <= j) return true;
    if (c.fam !== undefined) {
      const f = this._revFam.get(c.fam);
      if (f !== undefined && now <= f) return true;
    }
    const s = this._revSub.get(c.sub);
    return s !== undefined && now <= s.until && (c.iat ?? 0) <= s.before;
  }

  async _fresh(token, now) {
    if (mono() - this._keysFetchedAt >= this._maxAgeMs && !this._fetching && mono() - this._lastStaleTry >= 1000) {
      this._lastStaleTry = mono();
      await this._refetch().catch(() => {}); // the old set stays in use
    }
    const p = parse(token, 'at+jwt');
    if (p instanceof Refusal) throw refuse(p.code);
    let key = this._keys.get(p.kid);
    if (key === undefined) {
      await this._refetchFor(p.kid);
      key = this._keys.get(p.kid);
      if (key === undefined) throw refuse('unauthenticated');
    }
    this._st.signatureChecks++;
    const claims = verifySignature(p, key);
    if (claims instanceof Refusal) throw refuse(claims.code);
    const bad = checkClaims(claims, { now, leeway: this.leeway, issuer: this.issuer, audience: this.audience });
    if (bad) throw refuse(bad.code);
    deepFreeze(claims);
    if (this._isRevoked(claims, now)) throw refuse('revoked');
    if (this.cacheEntries > 0) {
      if (this._cache.size >= this.cacheEntries) this._evict(now);
      this._cache.set(token, { claims, validUntil: claims.exp + this.leeway });
    }
    return claims;
  }

  _evict(now) {
    for (const [t, e] of this._cache) { // insertion order: oldest first
      if (now >= e.validUntil || this._cache.size >= this.cacheEntries) this._cache.delete(t);
      else break;
    }
  }

  async _refetchFor(kid) {
    if (this._fetching) await this._fetching.catch(() => {});
    if (this._keys.has(kid)) return;
    if (mono() - this._lastKidFetch < this.cooldownMs) {
      this._st.unknownKidRefused++;
      return;
    }
    this._lastKidFetch = mono();
    try {
      await this._refetch();
    } catch {
      throw unavailable('unknown kid and the key set could not be refetched');
    }
  }

  async _askDaemon(token) {
    this._st.daemonFallbacks++;
    const params = { token, check_revoked: true };
    if (this.audience) params.aud = this.audience;
    try {
      await this._call.tokenVerify(params);
    } catch (err) {
      if (['expired', 'revoked', 'unauthenticated'].includes(err.code)) throw refuse(err.code);
      throw unavailable('the revocation feed is down and tesserad could not be asked');
    }
  }

  // ---- keys ----

  /** Fetches keys.jwks on the call connection (single flight). */
  _refetch() {
    if (!this._fetching) {
      this._fetching = this._fetchKeys(this._call).finally(() => {
        this._fetching = null;
      });
    }
    return this._fetching;
  }

  async _fetchKeys(client) {
    this._st.jwksFetches++;
    let r;
    try {
      r = await client.keysJwks();
    } catch (err) {
      this._st.jwksFetchFailures++;
      throw err;
    }
    const keys = new Map();
    for (const jwk of Array.isArray(r?.keys) ? r.keys : []) {
      const k = keyOf(jwk);
      if (k) keys.set(jwk.kid, k);
    }
    if (keys.size === 0 || !Number.isInteger(r.keys_version)) {
      this._st.jwksFetchFailures++;
      throw new TesseraError('protocol', 'keys.jwks: no usable key in the set');
    }
    for (const kid of this._keys.keys()) if (!keys.has(kid)) this._cache.clear();
    this._keys = keys;
    this._keysVersion = r.keys_version;
    const maxAge = Number.isInteger(r.max_age) && r.max_age >= 0 ? Math.min(r.max_age, MAX_AGE_CAP) : MAX_AGE_DEFAULT;
    this._maxAgeMs = maxAge * 1000;
    this._keysFetchedAt = mono();
  }

  // ---- the feed ----

  _fed(counter, n = 1) {
    if (n === 0) return;
    if (counter) this._st[counter] += n;
    this._st.feedEvents += n;
    this.emit('feed');
  }

  /** Connects, subscribes from the cursor, fetches the keys on that connection; marks the feed up. */
  async _feedConnect() {
    const feedTimeout = Math.min(this.timeoutMs < 0 ? 10000 : this.timeoutMs, 10000);
    const feed = new Client(this.socketPath, { timeoutMs: feedTimeout });
    this._feed = feed;
    feed.on('notification', (method, args) => this._onNotification(feed, method, args));
    try {
      await feed.open();
      const r = await feed.eventsSubscribe({ since: this._cursor });
      if (r?.subscribed !== true) throw new TesseraError('protocol', 'events.subscribe: unexpected reply');
      await this._fetchKeys(feed);
    } catch (err) {
      feed.close();
      throw err;
    }
    if (this._closed || feed.connected === false) {
      feed.close();
      throw new TesseraError('closed', 'feed connection lost while subscribing');
    }
    feed.unref(); // once subscribed, the feed alone never keeps the process alive
    const upAt = mono();
    feed.once('disconnect', () => this._feedLost(feed, upAt));
    this._feedUp = true;
    this._fed('feedConnects');
  }

  _feedLost(feed, upAt) {
    feed.close();
    if (this._feed !== feed) return;
    this._feedUp = false;
    this._feedDownSince = mono();
    this._fed('feedDisconnects');
    if (mono() - upAt >= BACKOFF_RESET_MS) this._backoff = BACKOFF_MIN;
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this._closed) return;
    const wait = this._backoff / 2 + Math.random() * (this._backoff / 2);
    this._backoff = Math.min(this._backoff * 2, BACKOFF_MAX);
    this._retry = setTimeout(() => {
      this._feedConnect().catch(() => this._scheduleReconnect());
    }, wait).unref();
  }

  _onNotification(feed, method, args) {
    if (feed !== this._feed || this._closed) return;
    if (method === 'revoked') this._onRevoked(args);
    else if (method === 'reset') this._onReset(args);
    else if (method === 'keys') this._onKeys(feed, args);
  }

  _onRevoked(entries) {
    const now = nowSec();
    let applied = 0;
    for (const e of entries) {
      if (!e || typeof e !== 'object') continue;
      const ok = typeof e.id === 'string' && Number.isInteger(e.until);
      if (ok && e.until >= now) {
        if (e.kind === 'jti') this._widen(this._revJti, e.id, e.until);
        else if (e.kind === 'family') this._widen(this._revFam, e.id, e.until);
        else if (e.kind === 'sub' && Number.isInteger(e.before)) {
          const s = this._revSub.get(e.id);
          this._revSub.set(e.id, { until: Math.max(e.until, s?.until ?? 0), before: Math.max(e.before, s?.before ?? 0) });
        }
      }
      if (ok && ['jti', 'family', 'sub'].includes(e.kind)) applied++;
      if (typeof e.cursor === 'string' && e.cursor.length >= 1 && e.cursor.length <= 64) this._cursor = e.cursor;
    }
    this._fed('revocationsApplied', applied);
  }

  _widen(map, id, until) {
    const old = map.get(id);
    if (old === undefined || until > old) map.set(id, until);
  }

  _onReset(args) {
    const c = args[0]?.cursor;
    this._cursor = typeof c === 'string' && c.length >= 1 && c.length <= 64 ? c : '0';
    this._cache.clear();
    this._resetAt = nowSec();
    this._fed('feedResets');
  }

  _onKeys(feed, args) {
    this._st.keysNotifications++;
    const ver = args[0]?.keys_version;
    if (Number.isInteger(ver) && ver === this._keysVersion) {
      this._fed(null);
      return;
    }
    this._fetchKeys(feed).then(
      () => this._fed(null),
      () => feed.disconnect(), // a failed refetch breaks the feed: the reconnect refetches
    );
  }

  _prune() {
    const now = nowSec();
    for (const m of [this._revJti, this._revFam]) for (const [id, until] of m) if (until < now) m.delete(id);
    for (const [id, s] of this._revSub) if (s.until < now) this._revSub.delete(id);
  }
}
