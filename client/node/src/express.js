// express.js: the Express adapter of middleware.js. app.use(tesseraExpress({client, verifier}))
// puts the identity on req.tessera ({kind: 'session'|'token', sub, ...}; null when optional
// and absent), answers 401/503 itself with a JSON body {error: code}, and appends renewed or
// cleared session cookies to the response.
import { makeAuthenticator } from './middleware.js';

export function tesseraExpress(options) {
  const authenticate = makeAuthenticator(options);
  return function tessera(req, res, next) {
    authenticate({
      authorization: req.headers.authorization,
      cookie: req.headers.cookie,
      ip: req.ip,
      ua: req.headers['user-agent'],
    }).then((out) => {
      if (out.status) {
        res.status(out.status).set(out.headers).json({ error: out.code });
        return;
      }
      if (out.setCookie) res.append('Set-Cookie', out.setCookie);
      req.tessera = out.identity;
      next();
    }, next);
  };
}

export default tesseraExpress;
