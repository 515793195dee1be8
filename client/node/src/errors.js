// errors.js: the one error class of the package. A daemon refusal carries the wire code
// (proto/PROTOCOL.md "Errors": bad_request, unauthenticated, expired, revoked, ...); trouble on
// this side of the socket carries one of the client codes below. Messages never hold a sid or
// a token: they come from the daemon (which never echoes secrets) or are written here.

/** Codes the client itself raises (never sent by the daemon). */
export const CLIENT_CODES = Object.freeze({
  CONNECT: 'connect', // could not connect to the socket
  CLOSED: 'closed', // the connection dropped with the call in flight
  TIMEOUT: 'timeout', // no answer within the call's timeout
  PROTOCOL: 'protocol', // the daemon sent something that is not the documented shape
});

export class TesseraError extends Error {
  /**
   * @param {string} code the wire code, or a CLIENT_CODES value
   * @param {string} message
   * @param {{method?: string, cause?: unknown}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause !== undefined ? { cause: extra.cause } : undefined);
    this.name = 'TesseraError';
    this.code = code;
    if (extra.method) this.method = extra.method;
  }

  /** True for codes the daemon answers (not a connection problem on this side). */
  get remote() {
    return !Object.values(CLIENT_CODES).includes(this.code);
  }
}
