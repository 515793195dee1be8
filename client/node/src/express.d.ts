// express.d.ts: types of the Express adapter.
import type { MiddlewareOptions, Identity } from './index.js';
import type { RequestHandler } from 'express';
declare global {
  namespace Express { interface Request { tessera?: Identity | null } }
}
export declare function tesseraExpress(options: MiddlewareOptions): RequestHandler;
export default tesseraExpress;
