// index.d.ts: hand-written types of the package (proto/PROTOCOL.md is the contract).
import { EventEmitter } from 'node:events';

export type WireCode = 'bad_request' | 'unknown_method' | 'unauthenticated' | 'expired' | 'revoked' | 'reused'
  | 'forbidden' | 'overloaded' | 'unavailable' | 'internal';
export type ClientCode = 'connect' | 'closed' | 'timeout' | 'protocol';

export declare const CLIENT_CODES: Readonly<{ CONNECT: 'connect'; CLOSED: 'closed'; TIMEOUT: 'timeout'; PROTOCOL: 'protocol' }>;

export declare class TesseraError extends Error {
  constructor(code: string, message: string, extra?: { method?: string; cause?: unknown });
  readonly code: WireCode | ClientCode | string;
  readonly method?: string;
  /** True for codes the daemon answers. */
  readonly remote: boolean;
}

export interface ClientOptions { timeoutMs?: number; connectTimeoutMs?: number }
export interface CallOptions { timeoutMs?: number }
export interface ClientInfo { ip?: string; ua?: string }
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface Jwk { kty: 'OKP'; crv: 'Ed25519'; x: string; kid: string; use: 'sig'; alg: 'EdDSA' }
export interface SessionCreated { sid: string; handle: string; expires_at: number; expires_in: number; idle_expires_at: number; cookie: string }
export interface SessionValidated { sub: string; handle: string; data: Json; created_at: number; expires_at: number; expires_in: number; idle_expires_at: number; anomalies: ('ip_changed' | 'ua_changed')[] }
export interface SessionListed { handle: string; created_at: number; last_seen_at: number; expires_at: number; idle_expires_at: number; data: Json; client: ClientInfo }
export interface TokenIssued { token: string; jti: string; expires_at: number; expires_in: number }
export interface TokenPair { access_token: string; refresh_token: string; family: string; access_expires_at: number; access_expires_in: number; refresh_expires_at: number; refresh_expires_in: number }
export interface Claims { iss: string; sub: string; iat: number; nbf: number; exp: number; jti: string; aud?: string | string[]; scope?: string; purpose?: string; fam?: string; [k: string]: Json | undefined }
type Aud = string | string[];

export declare class Client extends EventEmitter {
  constructor(socketPath?: string, options?: ClientOptions);
  readonly socketPath: string;
  readonly connected: boolean;
  open(): Promise<this>;
  call<R = Record<string, unknown>>(method: string, params?: Record<string, unknown>, options?: CallOptions): Promise<R>;
  close(): void;
  disconnect(): void;
  unref(): void;
  on(event: 'notification', listener: (method: string, args: unknown[]) => void): this;
  on(event: 'connect' | 'disconnect', listener: () => void): this;

  sysPing(params?: {}, o?: CallOptions): Promise<{ version: string; now: number }>;
  sysStats(params?: {}, o?: CallOptions): Promise<Record<string, number>>;
  keysJwks(params?: {}, o?: CallOptions): Promise<{ keys: Jwk[]; max_age: number; keys_version: number }>;
  keysRotate(params?: {}, o?: CallOptions): Promise<{ kid: string; previous: string; keys_version: number }>;
  sessionCreate(p: { sub: string; ttl?: number; idle_ttl?: number; data?: Json; client?: ClientInfo }, o?: CallOptions): Promise<SessionCreated>;
  sessionValidate(p: { sid: string; client?: ClientInfo }, o?: CallOptions): Promise<SessionValidated>;
  sessionRotate(p: { sid: string }, o?: CallOptions): Promise<SessionCreated>;
  sessionRevoke(p: { sid: string } | { handle: string }, o?: CallOptions): Promise<{ revoked: 0 | 1 }>;
  sessionList(p: { sub: string; limit?: number; after?: string }, o?: CallOptions): Promise<{ sessions: SessionListed[]; next?: string }>;
  sessionRevokeAll(p: { sub: string; except?: string }, o?: CallOptions): Promise<{ revoked: number }>;
  sessionExchange(p: { token: string; purpose: string }, o?: CallOptions): Promise<SessionCreated>;
  tokenIssue(p: { sub: string; ttl?: number; aud?: Aud; scope?: string; claims?: Record<string, Json>; purpose?: string }, o?: CallOptions): Promise<TokenIssued>;
  tokenVerify(p: { token: string; aud?: string; purpose?: string; check_revoked?: boolean }, o?: CallOptions): Promise<{ claims: Claims; kid: string }>;
  tokenConsume(p: { token: string; purpose: string }, o?: CallOptions): Promise<{ claims: Claims }>;
  tokenPair(p: { sub: string; aud?: Aud; scope?: string; claims?: Record<string, Json>; access_ttl?: number; refresh_ttl?: number }, o?: CallOptions): Promise<TokenPair>;
  tokenRefresh(p: { refresh_token: string }, o?: CallOptions): Promise<TokenPair>;
  tokenRevoke(p: { token: string } | { family: string } | { jti: string; exp: number }, o?: CallOptions): Promise<{ revoked: 0 | 1 }>;
  userRevoke(p: { sub: string }, o?: CallOptions): Promise<{ sessions: number; families: number }>;
  eventsSubscribe(p?: { since?: string }, o?: CallOptions): Promise<{ subscribed: true; keys_version: number; cursor: string }>;
}

export declare function connect(socketPath?: string, options?: ClientOptions): Promise<Client>;
export declare function defaultSocket(): string;
export declare const METHODS: Readonly<Record<string, string>>;

export interface VerifierOptions {
  issuer?: string;             // default 'tessera'
  audience?: string | null;    // default none: tokens carrying aud are refused
  leeway?: number;             // seconds, default 60
  cacheEntries?: number;       // default 10000; 0 disables the cache
  refetchCooldownMs?: number;  // default 1000
  timeoutMs?: number;          // each daemon call, default 2000
  subscribe?: boolean;         // the revocation feed, default true
  feedDownPolicy?: 'fail-closed' | 'ask-daemon'; // default 'fail-closed'
  feedStaleMs?: number;        // default 5000
}
export interface VerifierStats {
  verifies: number; accepted: number; cacheHits: number; signatureChecks: number; jwksFetches: number;
  jwksFetchFailures: number; unknownKidRefused: number; revocationsApplied: number; keysNotifications: number;
  feedConnects: number; feedDisconnects: number; feedEvents: number; feedResets: number; daemonFallbacks: number;
  cachedTokens: number; revocationEntries: number; keysVersion: number | null; feedUp: boolean;
}
export declare class Verifier extends EventEmitter {
  static create(socketPath?: string, options?: VerifierOptions): Promise<Verifier>;
  verify(token: string): Promise<Readonly<Claims>>;
  stats(): VerifierStats;
  waitFeed(seen: number, timeoutMs?: number): Promise<boolean>;
  close(): void;
}

export type Identity =
  | { kind: 'session'; sub: string; handle: string; data: Json; createdAt: number; expiresAt: number; idleExpiresAt: number; anomalies: string[] }
  | { kind: 'token'; sub: string; claims: Readonly<Claims> };
export interface MiddlewareOptions {
  client: Client;
  verifier?: Verifier | null;  // bearer tokens checked locally; without it, token.verify with check_revoked
  cookieName?: string;         // default '__Host-sid'
  rotateAfter?: number;        // seconds; 0 (default): never rotate
  optional?: boolean;          // hand over with identity null instead of 401 when no credential
}
export type AuthOutcome = { identity: Identity | null; setCookie?: string | null } | { status: number; code: string; headers: Record<string, string> };
export declare function makeAuthenticator(options: MiddlewareOptions): (req: { authorization?: string; cookie?: string; ip?: string; ua?: string }) => Promise<AuthOutcome>;
export declare function readCookie(header: string | undefined, name: string): string | null;
