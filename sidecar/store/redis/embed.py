#!/usr/bin/env python3
"""sidecar/store/redis/embed.py: tessera.lua as a C string (the build's only copy).

Usage: embed.py INPUT.lua OUTPUT.c  -- writes `const char ts_redis_lua[] = "...";`."""
import sys

src, dst = sys.argv[1], sys.argv[2]
data = open(src, 'rb').read()
out = ['/* Generated from tessera.lua by embed.py: do not edit. */\n',
       'const char ts_redis_lua[] =\n']
for line in data.splitlines(keepends=True):
    esc = ''.join(chr(c) if 32 <= c < 127 and chr(c) not in '"\\?' else '\\%03o' % c
                  for c in line)
    out.append('  "%s"\n' % esc)
out.append(';\n')
open(dst, 'w').write(''.join(out))
