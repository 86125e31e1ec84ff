"""Lua scripts of the Redis stores. Each runs atomically on the server with the server's clock.

Times are returned as strings (Redis truncates Lua numbers to integers in replies).
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function f(x) if x == nil or x == false or x == '' then return '' end
  return string.format('%.6f', tonumber(x)) end
"""

# Breaker: KEYS[1] state hash, KEYS[2] window hash.
_SNAPSHOT = """
local DAY = 86400000
local function snapshot()
  local s = redis.call('HMGET', KEYS[1], 'state', 'version', 'opened_at', 'until', 'openings',
                       'consecutive')
  local calls, fails, slow = 0, 0, 0
  local w = redis.call('HGETALL', KEYS[2])
  for i = 1, #w, 2 do
    local kind = string.sub(w[i], -1)
    local n = tonumber(w[i + 1])
    if kind == 'c' then calls = calls + n elseif kind == 'f' then fails = fails + n
    else slow = slow + n end
  end
  return {s[1] or 'closed', tonumber(s[2] or '0'), f(now), f(s[3]), f(s[4]),
          tonumber(s[5] or '0'), tonumber(s[6] or '0'), calls, fails, slow}
end
"""

BREAKER_LOAD = _NOW + _SNAPSHOT + "return snapshot()"

# ARGV: successes, failures, slow, trailing_failures, window, buckets
BREAKER_RECORD = (
    _NOW
    + _SNAPSHOT
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state ~= 'closed' then return snapshot() end
local succ, fails, slow = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if succ > 0 then
  redis.call('HSET', KEYS[1], 'consecutive', ARGV[4])
else
  redis.call('HINCRBY', KEYS[1], 'consecutive', fails)
end
local window = tonumber(ARGV[5])
if window > 0 then
  local buckets = tonumber(ARGV[6])
  local width = window / buckets
  local current = math.floor(now / width)
  local oldest = current - buckets + 1
  local fields = redis.call('HKEYS', KEYS[2])
  for _, field in ipairs(fields) do
    if tonumber(string.sub(field, 1, -3)) < oldest then redis.call('HDEL', KEYS[2], field) end
  end
  if succ + fails > 0 then redis.call('HINCRBY', KEYS[2], current .. ':c', succ + fails) end
  if fails > 0 then redis.call('HINCRBY', KEYS[2], current .. ':f', fails) end
  if slow > 0 then redis.call('HINCRBY', KEYS[2], current .. ':s', slow) end
  redis.call('PEXPIRE', KEYS[2], DAY)
else
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'state', 'closed')
redis.call('PEXPIRE', KEYS[1], DAY)
return snapshot()
"""
)

# ARGV: expected_version ('' = force), state, break_duration
BREAKER_TRANSITION = (
    _NOW
    + _SNAPSHOT
    + """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= version then return snapshot() end
local state, dur = ARGV[2], tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'version', version + 1, 'state', state)
if state == 'open' then
  redis.call('HSET', KEYS[1], 'opened_at', f(now), 'until', f(now + dur), 'consecutive', 0)
  redis.call('HINCRBY', KEYS[1], 'openings', 1)
  redis.call('DEL', KEYS[2])
elseif state == 'half_open' then
  redis.call('HSET', KEYS[1], 'until', f(now + dur))
elseif state == 'closed' then
  redis.call('HSET', KEYS[1], 'openings', 0, 'consecutive', 0)
  redis.call('HDEL', KEYS[1], 'opened_at', 'until')
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[1], 'opened_at', f(now))
  redis.call('HDEL', KEYS[1], 'until')
end
if state == 'closed' then redis.call('PEXPIRE', KEYS[1], DAY)
else redis.call('PERSIST', KEYS[1]) end
return snapshot()
"""
)

# Rate limiter: KEYS[1] bucket hash. ARGV: rate, per, burst, tokens, max_wait.
RATE_ACQUIRE = (
    _NOW
    + """
local rate, per, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, max_wait = tonumber(ARGV[4]), tonumber(ARGV[5])
local b = redis.call('HMGET', KEYS[1], 'level', 't')
local level = burst
if b[1] then
  level = math.min(burst, tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * rate / per)
end
local need = tokens - level
local wait = 0
if need > 0 then wait = need * per / rate end
if wait > max_wait then return {0, f(wait)} end
level = level - tokens
redis.call('HSET', KEYS[1], 'level', string.format('%.9f', level), 't', f(now))
local full_in = (burst - level) * per / rate
redis.call('PEXPIRE', KEYS[1], math.ceil(full_in * 1000) + 1000)
return {1, f(wait)}
"""
)

# Idempotency: KEYS[1] record hash.
# reserve ARGV: token, lease_ms
IDEM_RESERVE = """
local r = redis.call('HMGET', KEYS[1], 'done', 'result')
if r[1] == '1' then return {'completed', r[2]} end
if r[1] == '0' then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then return {'in_flight', tostring(ttl)} end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'done', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'reserved', ARGV[1]}
"""

# complete ARGV: token, result json, ttl_ms
IDEM_COMPLETE = """
local r = redis.call('HMGET', KEYS[1], 'token', 'done')
if r[1] ~= ARGV[1] or r[2] ~= '0' then return 0 end
redis.call('HSET', KEYS[1], 'done', '1', 'result', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# release ARGV: token
IDEM_RELEASE = """
local r = redis.call('HMGET', KEYS[1], 'token', 'done')
if r[1] ~= ARGV[1] or r[2] ~= '0' then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""
