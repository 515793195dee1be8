#!/usr/bin/python3
"""tests/fuzz/make_corpus.py: writes the seed inputs of tests/fuzz/corpus/<target>/ and the
libFuzzer dictionaries tests/fuzz/*.dict.

Seeds are small files named for what they hold; regressions (crash-*, leak-*, oom-*, timeout-*
copied there by tests/fuzz/run) are never touched. Run again after changing a seed:
    /usr/bin/python3 tests/fuzz/make_corpus.py
Needs python3-msgpack and python3-cryptography (Debian packages)."""
import base64
import hashlib
import json
import os
import struct

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b'=').decode()


def req(msgid, method, params=None):
    return msgpack.packb([0, msgid, method, [] if params is None else [params]],
                         use_bin_type=True)


# ---------------------------------------------------------------- msgpack-rpc streams
SID = 'A' * 43
TOKEN = 'eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.' \
        'hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg'
requests = {
    'ping': req(1, 'sys.ping'),
    'stats': req(2, 'sys.stats'),
    'session-create': req(3, 'session.create', {
        'sub': 'alice', 'ttl': 3600, 'idle_ttl': 600, 'data': {'role': 'admin', 'n': 1},
        'client': {'ip': '10.0.0.1', 'ua': 'curl/8'}}),
    'session-validate': req(4, 'session.validate', {'sid': SID, 'client': {'ip': '10.0.0.2'}}),
    'session-rotate': req(5, 'session.rotate', {'sid': SID}),
    'session-revoke-sid': req(6, 'session.revoke', {'sid': SID}),
    'session-revoke-handle': req(7, 'session.revoke', {'handle': 'h' * 22}),
    'session-list': req(8, 'session.list', {'sub': 'alice'}),
    'session-revoke-all': req(9, 'session.revoke_all', {'sub': 'alice', 'except': 'h' * 22}),
    'session-exchange': req(10, 'session.exchange', {'token': TOKEN, 'purpose': 'login'}),
    'keys-jwks': req(11, 'keys.jwks'),
    'keys-rotate': req(12, 'keys.rotate'),
    'token-issue': req(13, 'token.issue', {
        'sub': 'alice', 'ttl': 300, 'aud': ['api', 'web'], 'scope': 'read write',
        'claims': {'tenant': 't1', 'roles': ['a', 'b'], 'x': 1.5, 'ok': True, 'z': None}}),
    'token-issue-purpose': req(14, 'token.issue', {'sub': 'bob', 'purpose': 'reset'}),
    'token-verify': req(15, 'token.verify', {'token': TOKEN, 'aud': 'api',
                                              'check_revoked': True}),
    'token-consume': req(16, 'token.consume', {'token': TOKEN, 'purpose': 'reset'}),
    'token-pair': req(17, 'token.pair', {'sub': 'alice', 'aud': 'api', 'scope': 's',
                                          'claims': {'k': 'v'}, 'access_ttl': 60,
                                          'refresh_ttl': 3600}),
    'token-refresh': req(18, 'token.refresh', {'refresh_token': TOKEN}),
    'token-revoke-token': req(19, 'token.revoke', {'token': TOKEN}),
    'token-revoke-family': req(20, 'token.revoke', {'family': 'f' * 22}),
    'token-revoke-jti': req(21, 'token.revoke', {'jti': 'j' * 22, 'exp': 2000000000}),
    'user-revoke': req(22, 'user.revoke', {'sub': 'alice'}),
    'events-subscribe': req(23, 'events.subscribe'),
}
bad = {
    'bad-unknown-method': req(30, 'no.such.method'),
    'bad-unknown-key': req(31, 'sys.ping', {'what\x01': 1}),
    'bad-wrong-type': req(32, 'session.create', {'sub': 5, 'ttl': -1}),
    'bad-invalid-utf8': msgpack.packb([0, 33, 'session.list', [{'sub': b'\xff\xfe'}]],
                                      use_bin_type=False),
    'bad-method-int': msgpack.packb([0, 34, 7, []]),
    'bad-params-not-array': msgpack.packb([0, 35, 'sys.ping', {}]),
    'bad-params-two-maps': msgpack.packb([0, 36, 'sys.ping', [{}, {}]]),
    'bad-params-int-key': msgpack.packb([0, 37, 'sys.ping', [{1: 2}]]),
    'bad-msgid-64bit': msgpack.packb([0, 2 ** 32, 'sys.ping', []]),
    'bad-msgid-negative': msgpack.packb([0, -1, 'sys.ping', []]),
    'bad-response-kind': msgpack.packb([1, 1, None, None]),
    'bad-not-array': msgpack.packb({'a': 1}),
    'bad-five-elements': msgpack.packb([0, 1, 'sys.ping', [], 0]),
    'notification': msgpack.packb([2, 'hello', []]),
    'empty-method': msgpack.packb([0, 38, '', []]),
    'deep-params': req(39, 'session.create', {'sub': 'a', 'data': {'a': [[[[[[1]]]]]]}}),
    'big-data-map': req(40, 'session.create', {'sub': 'a', 'data': {'k': 'v' * 5000}}),
    'admin-needs-no-params': req(41, 'keys.rotate', {'x': 1}),
}
hostile = {
    'hostile-array32': b'\xdd\xff\xff\xff\xff',
    'hostile-map32': b'\xdf\xff\xff\xff\xff',
    'hostile-str32': b'\xdb\xff\xff\xff\xff',
    'hostile-bin32': b'\xc6\xff\xff\xff\xff',
    'hostile-array16-in-envelope': b'\x94\x00\x01\xa8sys.ping\x91\xdc\xff\xff',
    'hostile-ext': b'\x94\x00\x01\xa8sys.ping\x91\xd4\x01\x02',
    'hostile-c1': b'\xc1',
    'hostile-deep': b'\x91' * 100 + b'\xc0',
    'hostile-truncated': req(50, 'session.create', {'sub': 'alice'})[:-3],
}
pipeline = b''.join([requests['ping'], requests['session-create'], requests['stats'],
                     requests['token-issue'], bad['bad-unknown-method'], requests['keys-jwks']])
for target in ('scan', 'rpc', 'dispatch'):
    for name, data in list(requests.items()) + list(bad.items()) + list(hostile.items()):
        if target == 'dispatch' and name == 'keys-rotate':
            continue  # every rotation writes a key file and fsyncs: one is enough, below
        put(target, name + '.mp', data)
    put(target, 'pipeline.mp', pipeline)
    put(target, 'pipeline-then-hostile.mp', pipeline + hostile['hostile-array32'])
put('dispatch', 'subscribe-then-rotate.mp', requests['events-subscribe'] + requests['keys-rotate'])
put('scan', 'float-ints.mp', msgpack.packb([1.5, 2 ** 64 - 1, -2 ** 63, True, None, b'bin']))

# ---------------------------------------------------------------- msgpack <-> JSON
put('json', 'map.mp', msgpack.packb({'a': 1, 'b': [1, -2, 3.25], 'c': {'d': None, 'e': True}}))
put('json', 'bin.mp', msgpack.packb({'k': b'\x00\xff\x10'}, use_bin_type=True))
put('json', 'u64max.mp', msgpack.packb(2 ** 64 - 1))
put('json', 'i64min.mp', msgpack.packb(-2 ** 63))
put('json', 'float32.mp', b'\xca\x3f\xc0\x00\x00')
put('json', 'nan.mp', b'\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00')
put('json', 'empty-key.mp', msgpack.packb({'': ''}))
put('json', 'dup-keys.mp', b'\x82\xa1a\x01\xa1a\x02')
put('json', 'int-key.mp', msgpack.packb({1: 2}))
put('json', 'bad-utf8.mp', b'\xa2\xc3\x28')
put('json', 'ext.mp', b'\xd4\x01\x02')
put('json', 'nested.mp', b'\x91' * 9 + b'\x80')
put('json', 'obj.json', '{"a":1,"b":[true,false,null],"c":{"d":"\\u00e9\\ud83d\\ude00"},"e":-1.5e10}')
put('json', 'nul.json', '"a\\u0000b"')
put('json', 'bigint.json', '[9223372036854775807,-9223372036854775808]')
put('json', 'deep.json', '[' * 40 + ']' * 40)
put('json', 'real.json', '[0.1,-0.0,1e308,5e-324]')

# ---------------------------------------------------------------- JWS
SEED = base64.urlsafe_b64decode('nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=')
rfc = Ed25519PrivateKey.from_private_bytes(SEED)
other = Ed25519PrivateKey.from_private_bytes(b'\x01' * 32)
X = b64u(rfc.public_key().public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw))
assert X == '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo'


def jws(header, payload, key=rfc, raw=False):
    h = header if raw else json.dumps(header, separators=(',', ':'))
    p = payload if raw else json.dumps(payload, separators=(',', ':'))
    h, p = (x if isinstance(x, bytes) else x.encode() for x in (h, p))
    si = b64u(h) + '.' + b64u(p)
    return si + '.' + b64u(key.sign(si.encode()))


AT = {'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': 'rfc8037'}
CL = {'iss': 'tessera', 'sub': 'alice', 'aud': 'api', 'exp': 1700000600, 'iat': 1700000000,
      'nbf': 1700000000, 'jti': 'j1', 'scope': 'read'}
good = jws(AT, CL)
toks = {
    'rfc8037-a4': TOKEN,
    'valid-at': good,
    'valid-k1-ed25519': jws({'alg': 'Ed25519', 'typ': 'at+jwt', 'kid': 'k1'}, CL),
    'valid-rt': jws({'alg': 'EdDSA', 'typ': 'rt+jwt', 'kid': 'rfc8037'},
                    {'sub': 'a', 'exp': 1700000600, 'fam': 'f1'}),
    'valid-aud-array': jws(AT, dict(CL, aud=['web', 'api'])),
    'valid-no-exp': jws(AT, {'sub': 'a'}),
    'valid-exp-float': jws(AT, {'exp': 1.5}),
    'valid-exp-huge': jws(AT, {'exp': 9223372036854775807, 'nbf': -9223372036854775808}),
    'tampered-payload': good.split('.')[0] + '.' + b64u(b'{"sub":"root","exp":9999999999}') +
                        '.' + good.split('.')[2],
    'tampered-sig': good[:-2] + ('A' if good[-2] != 'A' else 'B') + good[-1],
    'wrong-key-other': jws({'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': 'other'}, CL),
    'signed-by-other-as-rfc': jws(AT, CL, key=other),
    'kid-zero': jws({'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': 'zero'}, CL),
    'kid-unknown': jws({'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': 'nope'}, CL),
    'kid-dotdot': jws({'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': '../rfc8037'}, CL),
    'kid-control': jws({'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': 'rfc\n8037'}, CL),
    'kid-long': jws({'alg': 'EdDSA', 'typ': 'at+jwt', 'kid': 'k' * 200}, CL),
    'kid-nul': jws('{"alg":"EdDSA","typ":"at+jwt","kid":"rfc8037\\u0000x"}',
                   json.dumps(CL), raw=True),
    'alg-none': jws({'alg': 'none', 'typ': 'at+jwt', 'kid': 'rfc8037'}, CL),
    'alg-hs256': jws({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'rfc8037'}, CL),
    'hdr-jwk': jws(dict(AT, jwk={'kty': 'OKP', 'crv': 'Ed25519', 'x': X}), CL),
    'hdr-crit': jws(dict(AT, crit=['exp']), CL),
    'hdr-jku': jws(dict(AT, jku='https://evil/'), CL),
    'hdr-dup': jws('{"alg":"EdDSA","typ":"at+jwt","kid":"rfc8037","kid":"k1"}',
                   json.dumps(CL), raw=True),
    'payload-dup': jws(json.dumps(AT), '{"exp":1,"exp":2}', raw=True),
    'payload-array': jws(json.dumps(AT), '[1,2]', raw=True),
    'payload-bad-utf8': jws(json.dumps(AT), b'{"s":"\xff"}', raw=True),
    'padding': good + '==',
    'std-alphabet': good.replace('-', '+').replace('_', '/'),
    'four-segments': good + '.x',
    'two-segments': '.'.join(good.split('.')[:2]),
    'empty-segments': '..',
    'typ-missing': jws({'alg': 'EdDSA', 'kid': 'rfc8037'}, CL),
    'typ-jwt': jws({'alg': 'EdDSA', 'typ': 'JWT', 'kid': 'rfc8037'}, CL),
}
for name, t in toks.items():
    put('jws', name + '.txt', t)

# ---------------------------------------------------------------- JWK
D = b64u(SEED)
thumb = b64u(hashlib.sha256(('{"crv":"Ed25519","kty":"OKP","x":"%s"}' % X).encode()).digest())
jwks = {
    'rfc8037-private': {'kty': 'OKP', 'crv': 'Ed25519', 'd': D, 'x': X},
    'rfc8037-public': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X},
    'with-kid-use-alg': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X, 'd': D, 'kid': thumb,
                         'use': 'sig', 'alg': 'EdDSA'},
    'wrong-kid': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X, 'kid': 'rfc8037'},
    'use-enc': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X, 'use': 'enc'},
    'alg-es256': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X, 'alg': 'ES256'},
    'kty-ec': {'kty': 'EC', 'crv': 'P-256', 'x': X, 'y': X},
    'crv-x25519': {'kty': 'OKP', 'crv': 'X25519', 'x': X},
    'd-mismatch': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X, 'd': b64u(b'\x01' * 32)},
    'd-short': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X, 'd': D[:-2]},
    'd-null': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X, 'd': None},
    'x-padded': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X + '='},
    'x-trailing-bits': {'kty': 'OKP', 'crv': 'Ed25519', 'x': X[:-1] + 'p'},
    'x-zero': {'kty': 'OKP', 'crv': 'Ed25519', 'x': b64u(b'\x00' * 32)},
    'x-31-bytes': {'kty': 'OKP', 'crv': 'Ed25519', 'x': b64u(b'\x11' * 31)},
    'x-number': {'kty': 'OKP', 'crv': 'Ed25519', 'x': 5},
}
for name, j in jwks.items():
    put('jwk', name + '.jwk', json.dumps(j))
put('jwk', 'duplicate-x.jwk', '{"kty":"OKP","crv":"Ed25519","x":"%s","x":"%s"}' % (X, X))
put('jwk', 'not-object.jwk', '["OKP"]')
put('jwk', 'bad-utf8.jwk', b'{"kty":"OKP","crv":"Ed25519","x":"\xff"}')
put('jwk', 'trailing.jwk', json.dumps(jwks['rfc8037-public']) + ' {}')
put('jwk', 'export-format.jwk',
    '{"kty":"OKP","crv":"Ed25519","x":"%s","d":"%s","kid":"%s","use":"sig","alg":"EdDSA"}\n'
    % (X, D, thumb))
put('jwk', 'empty.jwk', '')

# ---------------------------------------------------------------- libFuzzer dictionaries
def dict_line(b):
    return '"' + ''.join(chr(c) if 0x20 <= c < 0x7f and c not in (0x22, 0x5c) else '\\x%02X' % c
                         for c in b) + '"\n'


def write_dict(name, entries, comment):
    with open(os.path.join(HERE, name), 'w') as f:
        f.write('# ' + comment + ' (written by make_corpus.py)\n')
        for e in entries:
            f.write(dict_line(e))


methods = ['sys.ping', 'sys.stats', 'session.create', 'session.validate', 'session.rotate',
           'session.revoke', 'session.list', 'session.revoke_all', 'session.exchange',
           'keys.jwks', 'keys.rotate', 'token.issue', 'token.verify', 'token.consume',
           'token.pair', 'token.refresh', 'token.revoke', 'user.revoke', 'events.subscribe']
keys = ['sub', 'ttl', 'idle_ttl', 'data', 'client', 'ip', 'ua', 'sid', 'handle', 'except',
        'token', 'purpose', 'aud', 'scope', 'claims', 'check_revoked', 'access_ttl',
        'refresh_ttl', 'refresh_token', 'family', 'jti', 'exp']
write_dict('msgpack-rpc.dict',
           [msgpack.packb(m) for m in methods + keys] +
           [b'\x94\x00', b'\x91\x8f', b'\x90', b'\xce\xff\xff\xff\xff', b'\xcf', b'\xdd', b'\xdf',
            b'\xdb', b'\xc6', b'\xd9', b'\xdc', b'\xde'],
           'scan, rpc, dispatch: msgpack-rpc methods and params keys')
write_dict('jose.dict',
           [('"%s"' % w).encode() for w in
            ['alg', 'typ', 'kid', 'EdDSA', 'Ed25519', 'at+jwt', 'rt+jwt', 'rfc8037', 'k1', 'other',
             'zero', 'jku', 'x5u', 'jwk', 'x5c', 'crit', 'exp', 'nbf', 'iat', 'iss', 'aud',
             'tessera', 'api', 'kty', 'OKP', 'crv', 'x', 'd', 'use', 'sig', X, D, thumb]] +
           [b64u(json.dumps(h, separators=(',', ':')).encode()).encode() for h in
            [AT, dict(AT, kid='k1'), dict(AT, kid='other'), dict(AT, kid='zero'),
             dict(AT, typ='rt+jwt'), dict(AT, alg='Ed25519'), dict(AT, crit=['exp'])]] +
           [b64u(json.dumps(c, separators=(',', ':')).encode()).encode() for c in
            [CL, {'exp': 1700000600}, {'exp': 1700000600, 'aud': ['api']}]] +
           [b'\\u0000'],
           'jws, jwk: JOSE member names and values')
