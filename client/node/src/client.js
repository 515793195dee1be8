// client.js: one MessagePack-RPC connection to tesserad (proto/PROTOCOL.md "Framing").
//
// Requests are pipelined: every call gets the next uint32 msgid and a pending entry; the one
// reader (decodeMultiStream over the socket) settles entries by msgid in whatever order replies
// come. Each call has its own timer (options.timeoutMs, or per call); a timed-out entry is
// dropped and a late reply for it ignored. Notifications ([2, method, args]) go to the
// 'notification' listeners (only a subscribed connection gets them).
//
// Reconnect: when the socket drops, calls in flight fail with code 'closed' (they may or may
// not have run: nothing is retried behind the caller's back) and the next call connects again
// (one connect at a time, bounded by connectTimeoutMs). close() ends it for good.
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { Encoder, decodeMultiStream } from '@msgpack/msgpack';
import { TesseraError, CLIENT_CODES } from './errors.js';
import { installMethods } from './methods.js';

const encoder = new Encoder({ ignoreUndefined: true });
const MAX_MSGID = 0xffffffff;

export function defaultSocket() {
  return process.env.TESSERA_SOCKET || '/run/tessera/tesserad.sock';
}

export class Client extends EventEmitter {
  /**
   * @param {string} [socketPath]
   * @param {{timeoutMs?: number, connectTimeoutMs?: number}} [options]
   */
  constructor(socketPath = defaultSocket(), options = {}) {
    super();
    if (typeof socketPath !== 'string' || socketPath === '')
      throw new TypeError('socketPath must be a non-empty string');
    this.socketPath = socketPath;
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 2000;
    this._socket = null;
    this._connecting = null;
    this._pending = new Map();
    this._nextId = 0;
    this._closed = false;
  }

  /** Connects now (calls connect on demand anyway). Resolves to this client. */
  async open() {
    await this._ensure();
    return this;
  }

  get connected() {
    return this._socket !== null;
  }

  /**
   * Calls method with params (a plain object; omitted: {}). Resolves to the result map, or
   * rejects with a TesseraError whose .code is the wire code.
   * @param {string} method
   * @param {object} [params]
   * @param {{timeoutMs?: number}} [options]
   */
  async call(method, params = {}, options = {}) {
    if (typeof method !== 'string' || method === '')
      throw new TypeError('method must be a non-empty string');
    if (params === null || typeof params !== 'object' || Array.isArray(params))
      throw new TypeError('params must be a plain object');
    let socket = await this._ensure();
    // The connection may have dropped while we waited for it: take the current one.
    while (this._socket !== socket) socket = await this._ensure();
    const msgid = this._nextId;
    this._nextId = this._nextId === MAX_MSGID ? 0 : this._nextId + 1;
    const bytes = encoder.encode([0, msgid, method, [params]]);
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, method, timer: null };
      if (timeoutMs >= 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          this._pending.delete(msgid);
          reject(new TesseraError(CLIENT_CODES.TIMEOUT, `${method}: no reply within ${timeoutMs} ms`, { method }));
        }, timeoutMs);
      }
      this._pending.set(msgid, entry);
      socket.write(bytes);
    });
  }

  /** Closes the connection; calls in flight fail with 'closed'. No call may follow. */
  close() {
    this._closed = true;
    if (this._socket) this._socket.destroy();
    this._failAll('client closed');
  }

  /** Lets the process exit while this connection is open (a background feed). */
  unref() {
    this._socket?.unref();
  }

  /** Drops the connection now (the next call reconnects). For tests and for resubscribing. */
  disconnect() {
    if (this._socket) this._socket.destroy();
  }

  _ensure() {
    if (this._closed) return Promise.reject(new TesseraError(CLIENT_CODES.CLOSED, 'client closed'));
    if (this._socket) return Promise.resolve(this._socket);
    if (!this._connecting) {
      this._connecting = this._connect().finally(() => {
        this._connecting = null;
      });
    }
    return this._connecting;
  }

  _connect() {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(this.socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TesseraError(CLIENT_CODES.CONNECT, `connect ${this.socketPath}: timed out`));
      }, this.connectTimeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new TesseraError(CLIENT_CODES.CONNECT, `connect ${this.socketPath}: ${err.code || err.message}`, { cause: err }));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        if (this._closed) {
          socket.destroy();
          reject(new TesseraError(CLIENT_CODES.CLOSED, 'client closed'));
          return;
        }
        socket.on('error', () => {}); // 'close' follows and does the work
        socket.once('close', () => this._lost(socket));
        this._socket = socket;
        this._read(socket);
        this.emit('connect');
        resolve(socket);
      });
    });
  }

  async _read(socket) {
    try {
      for await (const msg of decodeMultiStream(socket, { useBigInt64: false })) {
        this._dispatch(msg);
      }
    } catch {
      // a malformed stream or a reset: the connection is unusable
    }
    socket.destroy();
  }

  _dispatch(msg) {
    if (!Array.isArray(msg)) return;
    if (msg[0] === 1 && msg.length === 4) {
      const entry = this._pending.get(msg[1]);
      if (!entry) return; // timed out already
      this._pending.delete(msg[1]);
      clearTimeout(entry.timer);
      const [, , error, result] = msg;
      if (error == null) entry.resolve(result ?? {});
      else if (Array.isArray(error) && typeof error[0] === 'string')
        entry.reject(new TesseraError(error[0], `${entry.method}: ${String(error[1] ?? error[0])}`, { method: entry.method }));
      else entry.reject(new TesseraError(CLIENT_CODES.PROTOCOL, `${entry.method}: malformed error reply`, { method: entry.method }));
    } else if (msg[0] === 2 && msg.length === 3 && typeof msg[1] === 'string') {
      this.emit('notification', msg[1], Array.isArray(msg[2]) ? msg[2] : []);
    }
  }

  _lost(socket) {
    if (this._socket !== socket) return;
    this._socket = null;
    this._failAll('connection to tesserad lost');
    this.emit('disconnect');
  }

  _failAll(why) {
    const pending = this._pending;
    this._pending = new Map();
    for (const entry of pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new TesseraError(CLIENT_CODES.CLOSED, `${entry.method}: ${why}`, { method: entry.method }));
    }
  }
}

installMethods(Client);

/**
 * Connects to tesserad and resolves to a Client once the socket is open.
 * @param {string} [socketPath] default $TESSERA_SOCKET, else /run/tessera/tesserad.sock
 * @param {{timeoutMs?: number, connectTimeoutMs?: number}} [options]
 */
export function connect(socketPath, options) {
  return new Client(socketPath, options).open();
}
