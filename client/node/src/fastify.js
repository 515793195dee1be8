// fastify.js: the Fastify adapter of middleware.js, as an onRequest hook:
//   app.decorateRequest('tessera', null);
//   app.addHook('onRequest', tesseraFastify({client, verifier}));
// puts the identity on request.tessera, answers 401/503 itself with {error: code}, and sets
// renewed or cleared session cookies on the reply.
import { makeAuthenticator } from './middleware.js';

export function tesseraFastify(options) {
  const authenticate = makeAuthenticator(options);
  return async function tessera(request, reply) {
    const out = await authenticate({
      authorization: request.headers.authorization,
      cookie: request.headers.cookie,
      ip: request.ip,
      ua: request.headers['user-agent'],
    });
    if (out.status) {
      reply.code(out.status).headers(out.headers).send({ error: out.code });
      return reply;
    }
    if (out.setCookie) reply.header('set-cookie', out.setCookie);
    request.tessera = out.identity;
  };
}

export default tesseraFastify;
