#!lua name=tessera
-- sidecar/store/redis/tessera.lua: the Redis backend's atomic operations, one Redis Function
-- each (loaded with FUNCTION LOAD REPLACE at every connect, called with FCALL; embedded into
-- tesserad at build time by embed.py, so this file is the only copy).
--
-- Layout (every record has an absolute PXAT; nothing is swept):
--   t:{s:<hex hash(sid)>}  session record: msgpack [1, created, expires, last_seen, idle_ttl,
--                          handle, sub, ip, ua, data]; PXAT idle_expires_at
--   t:{h:<hex handle>}     hex hash(sid) of the handle's session; PXAT expires_at
--   t:{u:<hex sub>}:sl     ZSET, score 0, member hex handle: the sub's sessions in handle order
--   t:{u:<hex sub>}:sx     ZSET, score expires_at: trims sl/sx (the index outlives no session)
--   t:{u:<hex sub>}:f      ZSET, score exp + leeway, member family id: the sub's families
--   t:{f:<fam>}            HASH of the family record, every field's value JSON-encoded
--   t:{r:j:<jti>}, t:{r:f:<fam>}  "until": denylisted through that second
--   t:{c:<hex sub>}        "<before> <until>": the sub's cut-off
--   t:{rev}:feed           STREAM of announced revocations (k kind, i id, u until, b before)
--   t:{rev}:last, t:{rev}:trimmed, t:{rev}:id: last stream id, highest MINID applied, store id
--   t:{all}:sessions, t:{all}:families, t:{all}:revoked  ZSETs scored by when each session,
--                          family or revocation-list key (jti, family, cut-off) ends: the
--                          gauges of sys.stats, returned as a last element "s=<n> f=<n> r=<n>"
--                          by every function that changes them (and by ts_gauges)
-- Liveness always uses the caller's `now` (ARGV), never Redis's TIME. Results are arrays
-- whose first element is a status: 0 done, 1 not found, 2 revoked, 3 expired, 4 reused.
-- Cluster: the caller passes in KEYS every key it can name; the functions also reach keys
-- named by an index or a record (a sub's sessions and families, the handle's session) and the
-- shared t:{rev}:* and t:{all}:* keys, so they need one node: standalone and Sentinel, not
-- Cluster (README.md in this folder).

local OK, NOTFOUND, REVOKED, EXPIRED, REUSED = 0, 1, 2, 3, 4

local function hex(s)
  return (s:gsub('.', function(c) return string.format('%02x', string.byte(c)) end))
end
local function ms(sec) return string.format('%.0f', sec * 1000) end
local function num(v) return tonumber(v) or 0 end

local function skey(hashhex) return 't:{s:' .. hashhex .. '}' end
local function hkey(handlehex) return 't:{h:' .. handlehex .. '}' end
local function ukey(sub, what) return 't:{u:' .. hex(sub) .. '}:' .. what end
local function fkey(fam) return 't:{f:' .. fam .. '}' end
local ALL, ALLF, ALLR = 't:{all}:sessions', 't:{all}:families', 't:{all}:revoked'

local function gauges(now)
  local n = {}
  for i, k in ipairs({ALL, ALLF, ALLR}) do n[i] = redis.call('ZCOUNT', k, '(' .. now, '+inf') end
  return string.format('s=%d f=%d r=%d', n[1], n[2], n[3])
end

-- Trims the gauges' sets to what is alive at now and appends the counts to a result.
local function counted(res, now)
  for _, k in ipairs({ALL, ALLF, ALLR}) do redis.call('ZREMRANGEBYSCORE', k, '-inf', now) end
  res[#res + 1] = gauges(now)
  return res
end

-- Extends key's expiry to at_ms unless it already lasts at least that long.
local function extend(key, at_ms)
  local cur = redis.call('PEXPIRETIME', key)
  if cur == -2 then return end
  if cur >= 0 and cur >= tonumber(at_ms) then return end
  redis.call('PEXPIREAT', key, at_ms)
end

-- ---- sessions ------------------------------------------------------------------------------

local function idle_exp(r)
  local i = r[4] + r[5]
  if i < r[3] then return i end
  return r[3]
end

local function get_session(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local r = cmsgpack.unpack(v)
  if type(r) ~= 'table' or r[1] ~= 1 then return nil end
  return r
end

-- Stores r under hashhex and indexes it by handle and sub; trims the sub's dead entries.
local function put_session(hashhex, r, now)
  local h = hex(r[6])
  redis.call('SET', skey(hashhex), cmsgpack.pack(r), 'PXAT', ms(idle_exp(r)))
  redis.call('SET', hkey(h), hashhex, 'PXAT', ms(r[3]))
  redis.call('ZADD', ALL, idle_exp(r), hashhex)
  local sl, sx = ukey(r[7], 'sl'), ukey(r[7], 'sx')
  redis.call('ZADD', sl, 0, h)
  redis.call('ZADD', sx, r[3], h)
  local dead = redis.call('ZRANGEBYSCORE', sx, '-inf', now, 'LIMIT', 0, 100)
  for _, m in ipairs(dead) do
    redis.call('ZREM', sl, m)
    redis.call('ZREM', sx, m)
  end
  extend(sl, ms(r[3]))
  extend(sx, ms(r[3]))
end

-- Deletes the session of hashhex (record r) and its index entries.
local function del_session(hashhex, r)
  local h = hex(r[6])
  redis.call('DEL', skey(hashhex))
  redis.call('ZREM', ALL, hashhex)
  if redis.call('GET', hkey(h)) == hashhex then redis.call('DEL', hkey(h)) end
  redis.call('ZREM', ukey(r[7], 'sl'), h)
  redis.call('ZREM', ukey(r[7], 'sx'), h)
end

-- KEYS: s, h, sl, sx. ARGV: hashhex, record (msgpack), now.
redis.register_function('ts_session_create', function(keys, args)
  local r = cmsgpack.unpack(args[2])
  put_session(args[1], r, num(args[3]))
  return counted({OK}, num(args[3]))
end)

-- KEYS: s. ARGV: at, hashhex. Slides last_seen_at forward; never back.
-- allow-oom (as the two revokes below): it rewrites a record of the same size, and they only
-- delete, so a full store (maxmemory, noeviction) still validates sessions and logs users out.
redis.register_function{function_name = 'ts_session_touch', flags = {'allow-oom'},
  callback = function(keys, args)
  local r = get_session(keys[1])
  local at = num(args[1])
  if not r or at <= r[4] then return {NOTFOUND} end
  r[4] = at
  redis.call('SET', keys[1], cmsgpack.pack(r), 'PXAT', ms(idle_exp(r)))
  redis.call('ZADD', ALL, 'XX', idle_exp(r), args[2])
  return {OK}
end}

-- KEYS: s (old), s (new). ARGV: new hashhex, now, old hashhex. Returns {0, moved record}.
redis.register_function('ts_session_rotate', function(keys, args)
  local r = get_session(keys[1])
  local now = num(args[2])
  if not r or now >= idle_exp(r) then return {NOTFOUND} end
  redis.call('DEL', keys[1])
  redis.call('ZREM', ALL, args[3])
  r[4] = now
  local v = cmsgpack.pack(r)
  redis.call('SET', keys[2], v, 'PXAT', ms(idle_exp(r)))
  redis.call('SET', hkey(hex(r[6])), args[1], 'PXAT', ms(r[3]))
  redis.call('ZADD', ALL, idle_exp(r), args[1])
  return counted({OK, v}, now)
end)

-- KEYS: s or h. ARGV: 'hash' | 'handle', hashhex | '', now. Returns {0, 1 if it was alive}.
redis.register_function{function_name = 'ts_session_revoke', flags = {'allow-oom'},
  callback = function(keys, args)
  local hashhex = args[2]
  if args[1] == 'handle' then
    hashhex = redis.call('GET', keys[1])
    if not hashhex then return counted({OK, 0}, num(args[3])) end
  end
  local r = get_session(skey(hashhex))
  if not r then return counted({OK, 0}, num(args[3])) end
  del_session(hashhex, r)
  if num(args[3]) < idle_exp(r) then return counted({OK, 1}, num(args[3])) end
  return counted({OK, 0}, num(args[3]))
end}

-- Deletes every session of the index sl but except; returns how many were alive.
local function revoke_sessions(sl, sx, except, now)
  local n = 0
  for _, h in ipairs(redis.call('ZRANGE', sl, 0, -1)) do
    if h ~= except then
      local hashhex = redis.call('GET', hkey(h))
      local r = hashhex and get_session(skey(hashhex))
      if r then
        if now < idle_exp(r) then n = n + 1 end
        redis.call('DEL', skey(hashhex))
        redis.call('ZREM', ALL, hashhex)
      end
      redis.call('DEL', hkey(h))
      redis.call('ZREM', sl, h)
      redis.call('ZREM', sx, h)
    end
  end
  return n
end

-- KEYS: sl, sx. ARGV: now, except handle hex or ''. Returns {0, alive ones deleted}.
redis.register_function{function_name = 'ts_session_revoke_all', flags = {'allow-oom'},
  callback = function(keys, args)
  return counted({OK, revoke_sessions(keys[1], keys[2], args[2], num(args[1]))}, num(args[1]))
end}

-- KEYS: sl. ARGV: now, after handle hex or '', limit, scan extra.
-- Returns {0, more, last handle hex, record...}: at most limit live sessions after `after`,
-- in handle order, having examined at most limit + extra entries.
redis.register_function{function_name = 'ts_session_list', flags = {'no-writes'},
  callback = function(keys, args)
  local now, limit, extra = num(args[1]), num(args[3]), num(args[4])
  local from = args[2] == '' and '-' or '(' .. args[2]
  local hs = redis.call('ZRANGEBYLEX', keys[1], from, '+', 'LIMIT', 0, limit + extra + 1)
  local out, count, scanned, more, last = {}, 0, 0, 0, args[2]
  for _, h in ipairs(hs) do
    if count == limit or scanned == limit + extra then more = 1; break end
    scanned = scanned + 1
    last = h
    local hashhex = redis.call('GET', hkey(h))
    local v = hashhex and redis.call('GET', skey(hashhex))
    if v then
      local r = cmsgpack.unpack(v)
      if type(r) == 'table' and now < idle_exp(r) then
        out[#out + 1] = v
        count = count + 1
      end
    end
  end
  local res = {OK, more, last}
  for _, v in ipairs(out) do res[#res + 1] = v end
  return res
end}

-- ---- revocations and the feed --------------------------------------------------------------

-- Announces one revocation: XADD to the feed, trimmed to what may still be in force.
-- feed: {stream key, last key, trimmed key}; minid: ms before which nothing is in force.
local function announce(feed, kind, id, untl, before, minid)
  local sid = redis.call('XADD', feed[1], 'MINID', '~', minid, '*', 'k', kind, 'i', id,
                         'u', string.format('%.0f', untl), 'b', string.format('%.0f', before))
  redis.call('SET', feed[2], sid)
  if num(redis.call('GET', feed[3])) < num(minid) then redis.call('SET', feed[3], minid) end
  return sid
end

-- Lists key until `untl` (never shortening an entry). Returns true when it was not listed.
local function list_until(key, untl)
  local old = redis.call('GET', key)
  if old and num(old) >= untl then return false end
  redis.call('SET', key, string.format('%.0f', untl), 'PXAT', ms(untl + 1))
  redis.call('ZADD', ALLR, untl + 1, key)
  return old == nil
end

-- The cut-off of a sub: never moved back, kept through `untl`.
local function cutoff_put(key, before, untl)
  local old = redis.call('GET', key)
  if old then
    local ob, ou = string.match(old, '^(%-?%d+) (%-?%d+)$')
    if num(ob) > before then before = num(ob) end
    if num(ou) > untl then untl = num(ou) end
  end
  redis.call('SET', key, string.format('%.0f %.0f', before, untl), 'PXAT', ms(untl + 1))
  redis.call('ZADD', ALLR, untl + 1, key)
end

-- 0 or REVOKED: the jti or family listed at now, or iat at or before the sub's cut-off.
local function check(jkey, fkey_, ckey, now, iat)
  for _, k in ipairs({jkey, fkey_}) do
    if k ~= '' then
      local v = redis.call('GET', k)
      if v and num(v) >= now then return REVOKED end
    end
  end
  if ckey ~= '' then
    local v = redis.call('GET', ckey)
    if v then
      local b, u = string.match(v, '^(%-?%d+) (%-?%d+)$')
      if num(u) >= now and iat <= num(b) then return REVOKED end
    end
  end
  return OK
end

-- KEYS: r:j:<jti>, stream, last, trimmed. ARGV: jti, until, minid, now.
-- Returns {0, n, stream id}.
redis.register_function('ts_revoke_jti', function(keys, args)
  local untl = num(args[2])
  if redis.call('EXISTS', keys[1]) == 1 then
    list_until(keys[1], untl)
    return counted({OK, 0, ''}, num(args[4]))
  end
  list_until(keys[1], untl)
  local sid = announce({keys[2], keys[3], keys[4]}, 'j', args[1], untl, 0, args[3])
  return counted({OK, 1, sid}, num(args[4]))
end)

-- KEYS: r:j:<jti> or '', r:f:<fam> or '', c:<sub> or '', then for a session (exchange) s, h,
-- sl, sx. ARGV: now, iat, until, hashhex or '', record or ''. Returns {0} or {REVOKED}.
redis.register_function('ts_consume', function(keys, args)
  local now = num(args[1])
  local rc = check(keys[1], keys[2], keys[3], now, num(args[2]))
  if rc ~= OK then return {rc} end
  list_until(keys[1], num(args[3]))
  if args[4] ~= '' then put_session(args[4], cmsgpack.unpack(args[5]), now) end
  return counted({OK}, now)
end)

-- ---- refresh families ----------------------------------------------------------------------

local function get_family(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil, flat end
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = cjson.decode(flat[i + 1]) end
  return f, flat
end

-- Revokes a family: deletes its record and sub index entry, lists it until the last token
-- it issued could still verify; announces it when it was live. Returns n (0/1), stream id.
local function revoke_family(fam, untl, leeway, feed, minid)
  local f = get_family(fkey(fam))
  if f then
    local exp = num(f.exp)
    local access_exp = num(f.rotated_at) + num(f.access_ttl)
    if exp > untl then untl = exp end
    if access_exp > untl then untl = access_exp end
    redis.call('DEL', fkey(fam))
    redis.call('ZREM', ALLF, fam)
    if type(f.sub) == 'string' then redis.call('ZREM', ukey(f.sub, 'f'), fam) end
  end
  list_until('t:{r:f:' .. fam .. '}', untl + leeway)
  if not f then return 0, '' end
  return 1, announce(feed, 'f', fam, untl + leeway, 0, minid)
end

-- KEYS: f, u:<sub>:f. ARGV: fam, leeway, now, then field, JSON value pairs. Returns {0}.
redis.register_function('ts_family_create', function(keys, args)
  local fam, leeway = args[1], num(args[2])
  redis.call('DEL', keys[1])
  local exp, rotated_at = 0, 0
  for i = 4, #args, 2 do
    redis.call('HSET', keys[1], args[i], args[i + 1])
    if args[i] == 'exp' then exp = num(cjson.decode(args[i + 1])) end
    if args[i] == 'rotated_at' then rotated_at = num(cjson.decode(args[i + 1])) end
  end
  redis.call('PEXPIREAT', keys[1], ms(exp + leeway + 1))
  redis.call('ZADD', ALLF, exp + leeway + 1, fam)
  redis.call('ZADD', keys[2], exp + leeway, fam)
  redis.call('ZREMRANGEBYSCORE', keys[2], '-inf', '(' .. rotated_at)
  extend(keys[2], ms(exp + leeway + 1))
  return counted({OK}, num(args[3]))
end)

-- KEYS: f, r:j:<jti>, r:f:<fam>, c:<sub>, u:<sub>:f, stream, last, trimmed.
-- ARGV: fam, jti, now, iat, kid, next jti, next access jti, grace, max lifetime, leeway, minid.
-- Returns {status, record as field/JSON pairs (0 only), stream id (REUSED only)}.
redis.register_function('ts_family_refresh', function(keys, args)
  local fam, jti, now, iat = args[1], args[2], num(args[3]), num(args[4])
  local grace, max_life, leeway = num(args[8]), num(args[9]), num(args[10])
  local f, flat = get_family(keys[1])
  if not f then return {REVOKED} end
  if check(keys[2], '', keys[4], now, iat) ~= OK then return {REVOKED} end
  if f.current == jti then
    local born = f.created_at or f.rotated_at
    local stop = num(born) + max_life
    if now >= stop then return {EXPIRED} end
    local rtt = num(f.refresh_ttl)
    if now + rtt > stop then rtt = stop - now end
    local old_exp = num(f.exp)
    local set = {created_at = born, previous = f.current, current = args[6], access = args[7],
                 rotated_at = now, exp = now + rtt, kid = args[5],
                 generation = num(f.generation) + 1}
    for k, v in pairs(set) do
      redis.call('HSET', keys[1], k, type(v) == 'string' and cjson.encode(v)
                                        or string.format('%.0f', v))
    end
    redis.call('PEXPIREAT', keys[1], ms(now + rtt + leeway + 1))
    redis.call('ZADD', ALLF, now + rtt + leeway + 1, fam)
    if type(f.sub) == 'string' then
      redis.call('ZADD', keys[5], now + rtt + leeway, fam)
      extend(keys[5], ms(now + rtt + leeway + 1))
    end
    return {OK, redis.call('HGETALL', keys[1])}
  end
  if f.previous == jti and now - num(f.rotated_at) <= grace then return {OK, flat} end
  local _, sid = revoke_family(fam, num(f.exp), leeway, {keys[6], keys[7], keys[8]}, args[11])
  return counted({REUSED, {}, sid}, now)
end)

-- KEYS: f, r:f:<fam>, stream, last, trimmed. ARGV: fam, until, leeway, minid, now.
-- Returns {0, n, stream id}.
redis.register_function('ts_family_revoke', function(keys, args)
  local n, sid = revoke_family(args[1], num(args[2]), num(args[3]), {keys[3], keys[4], keys[5]},
                               args[4])
  return counted({OK, n, sid}, num(args[5]))
end)

-- ARGV: now. Returns "s=<n> f=<n> r=<n>": the gauges at now.
redis.register_function{function_name = 'ts_gauges', flags = {'no-writes'},
  callback = function(keys, args) return gauges(num(args[1])) end}

-- KEYS: sl, sx, u:<sub>:f, c:<sub>, stream, last, trimmed.
-- ARGV: sub, at, longest, leeway, minid. Returns {0, sessions, families, at, last stream id}.
redis.register_function('ts_user_revoke', function(keys, args)
  local sub, at, longest, leeway, minid = args[1], num(args[2]), num(args[3]), num(args[4]),
                                          args[5]
  local feed = {keys[5], keys[6], keys[7]}
  local sessions = revoke_sessions(keys[1], keys[2], '', at)
  local families, sid = 0, ''
  for _, fam in ipairs(redis.call('ZRANGE', keys[3], 0, -1)) do
    local n, s = revoke_family(fam, at, leeway, feed, minid)
    families = families + n
    if n == 1 then sid = s end
  end
  redis.call('DEL', keys[3])
  local untl = at + longest + leeway
  cutoff_put(keys[4], at, untl)
  sid = announce(feed, 's', sub, untl, at, minid)
  return counted({OK, sessions, families, string.format('%.0f', at), sid}, at)
end)

-- A sidecar changed its key set (keys.rotate): an entry of kind K on the feed, which each
-- sidecar's reader acts on (it reloads its key directory) and which replays skip.
-- KEYS: stream, last, trimmed. ARGV: keys_version, now, minid. Returns {0, stream id}.
redis.register_function('ts_keys_changed', function(keys, args)
  return {OK, announce(keys, 'K', args[1], num(args[2]), 0, args[3])}
end)

-- KEYS: id, last, trimmed. ARGV: a new random store id. Returns {store id, last, trimmed}.
-- allow-oom: a subscriber must be able to (re)subscribe on a full store; the only write is the
-- 8-byte id, once in the store's life.
redis.register_function{function_name = 'ts_feed_head', flags = {'allow-oom'},
  callback = function(keys, args)
  redis.call('SET', keys[1], args[1], 'NX')
  return {redis.call('GET', keys[1]), redis.call('GET', keys[2]) or '0-0',
          redis.call('GET', keys[3]) or '0'}
end}
