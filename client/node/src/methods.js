// methods.js: one helper per method of proto/PROTOCOL.md, as Client methods:
// `session.create` is client.sessionCreate(params, options). Each is call() with the wire
// name; types live in index.d.ts. The table is the one list (tests check it is complete).

export const METHODS = Object.freeze({
  sysPing: 'sys.ping',
  sysStats: 'sys.stats',
  keysJwks: 'keys.jwks',
  keysRotate: 'keys.rotate',
  sessionCreate: 'session.create',
  sessionValidate: 'session.validate',
  sessionRotate: 'session.rotate',
  sessionRevoke: 'session.revoke',
  sessionList: 'session.list',
  sessionRevokeAll: 'session.revoke_all',
  sessionExchange: 'session.exchange',
  tokenIssue: 'token.issue',
  tokenVerify: 'token.verify',
  tokenConsume: 'token.consume',
  tokenPair: 'token.pair',
  tokenRefresh: 'token.refresh',
  tokenRevoke: 'token.revoke',
  userRevoke: 'user.revoke',
  eventsSubscribe: 'events.subscribe',
});

export function installMethods(Client) {
  for (const [name, wire] of Object.entries(METHODS)) {
    Object.defineProperty(Client.prototype, name, {
      value: function (params = {}, options = {}) {
        return this.call(wire, params, options);
      },
      writable: true,
      configurable: true,
    });
  }
}
