// fastify.d.ts: types of the Fastify adapter.
import type { MiddlewareOptions, Identity } from './index.js';
import type { onRequestAsyncHookHandler } from 'fastify';
declare module 'fastify' {
  interface FastifyRequest { tessera: Identity | null }
}
export declare function tesseraFastify(options: MiddlewareOptions): onRequestAsyncHookHandler;
export default tesseraFastify;
