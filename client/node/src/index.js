// index.js: the package's entry point: connect() and Client (client.js), the typed helpers
// (methods.js), TesseraError (errors.js), the local Verifier (verifier.js). The framework
// adapters are separate entry points: '@tessera/client/express', '@tessera/client/fastify'.
export { Client, connect, defaultSocket } from './client.js';
export { TesseraError, CLIENT_CODES } from './errors.js';
export { METHODS } from './methods.js';
export { Verifier } from './verifier.js';
export { makeAuthenticator, readCookie } from './middleware.js';
