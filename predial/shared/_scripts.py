"""The shared tier's Lua scripts: each one atomic, each touching one hash slot.

Every key a script names carries the same hash tag (`{...}`), so the scripts run
unchanged on Redis Cluster. Times come from the server (`TIME`), never from a
client: one clock for the whole fleet, whatever the machines' clocks say.

A cache value is `<fresh until, server ms>|<kind>|<payload>|<adapter>`, where kind
is `p` (payload: an E.164 number) or `n` (payload: a permanent reason). The key's
expiry is the end of its stale grace; freshness is inside the value.
"""

from __future__ import annotations

__all__ = [
    "BREAKER_ALLOW",
    "BREAKER_FAILURE",
    "BREAKER_SUCCESS",
    "CAP_ADMIT",
    "HAND_OVER",
    "LOOKUP",
    "PUBLISH",
    "QUOTA_PAUSE",
    "RESERVE",
    "SETTLE",
    "STORE",
]

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Writes a value unless it would put a number over a fresh do-not-call: a number
# fetched while another process learnt do-not-call must not undo it (last writer
# would win otherwise). Once the do-not-call is no longer fresh, a new answer of the
# CRM's replaces it.
_WRITE = """
local function write(key, body, fresh_ms, keep_ms)
  if string.sub(body, 1, 2) == 'p|' then
    local old = redis.call('GET', key)
    if old then
      local until_ms, reason = string.match(old, '^(%d+)|n|([^|]*)|')
      if reason == 'do_not_call' and tonumber(until_ms) > now then
        return 0
      end
    end
  end
  redis.call('SET', key, (now + tonumber(fresh_ms)) .. '|' .. body, 'PX', keep_ms)
  return 1
end
"""

#: KEYS: cache, lock, waiters (a set). ARGV: token, lock ms, claim (1/0), the
#: caller's inbox (registered as a waiter when another process holds the key).
#: Returns {kind, value|false, server now ms, ttl ms, token|false} where kind is
#: `hit` (a fresh value), `claimed` (this caller fetches), `wait` (another holds the
#: key: ttl is its lock's) or `miss` (not claimed). A value that is not fresh comes
#: back too: it may be served stale while the CRM is unavailable.
LOOKUP = (
    _NOW_MS
    + """
local value = redis.call('GET', KEYS[1])
local value_ttl = -2
if value then
  value_ttl = redis.call('PTTL', KEYS[1])
  local fresh = tonumber(string.match(value, '^(%d+)|'))
  if fresh and fresh > now then
    return {'hit', value, now, value_ttl, false}
  end
end
if ARGV[3] ~= '1' then
  return {'miss', value or false, now, value_ttl, false}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {'claimed', value or false, now, value_ttl, false}
end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then
  -- This caller's own claim, taken by a try whose answer was lost.
  return {'claimed', value or false, now, value_ttl, false}
end
local lock_ttl = redis.call('PTTL', KEYS[2])
if not holder or lock_ttl <= 0 then
  return {'miss', value or false, now, value_ttl, false}
end
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('PEXPIRE', KEYS[3], lock_ttl + 1000)
return {'wait', value or false, now, lock_ttl, holder}
"""
)

#: KEYS: cache, lock, waiters. ARGV: token, body (`kind|payload|adapter`, or '' to
#: leave the cache as it is), fresh ms, keep ms. Writes the value, releases the lock
#: if this token holds it, and returns the inboxes of the waiters LOOKUP registered
#: (the holder then pushes its answer to each: another slot on a Cluster).
PUBLISH = (
    _NOW_MS
    + _WRITE
    + """
if ARGV[2] ~= '' then
  write(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  -- (bounded: a waiter set grown by a tampering client must not stall the holder)
  local waiting = redis.call('SRANDMEMBER', KEYS[3], 256)
  redis.call('DEL', KEYS[3])
  return waiting
end
-- Not the holder: the waiters are another flight's, left to it.
return {}
"""
)

#: KEYS: a process's inbox. ARGV: a flight's message, how long it may wait (ms).
HAND_OVER = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

#: KEYS: cache. ARGV: body, fresh ms, keep ms. A value written outside a flight
#: (`Resolver.warm`, a do-not-call learnt while the tier was unavailable).
STORE = (
    _NOW_MS
    + _WRITE
    + """
return write(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
"""
)

#: KEYS: the tenant's window (a sorted set of send times), its quota pause.
#: ARGV: limit (0: check the pause only), window µs, a unique member suffix.
#: Returns {0, 0, slot} when a slot was taken, {1, µs to wait} when the window is
#: full, {2, ms left} while the daily quota is paused. A sliding log: never more
#: than `limit` sends in any window, measured on the server's clock; a slot is
#: stamped again when its request has ended (SETTLE), so a request that reached the
#: CRM late still counts in the window it arrived in.
RESERVE = """
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then
  return {2, math.min(paused, 86400000)}
end
if ARGV[1] == '0' then
  return {0, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
-- (slots stamped in the future, a tampered or skewed entry, would hold the budget)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. (now + 1000000), '+inf')
if redis.call('ZCARD', KEYS[1]) < limit then
  local member = now .. ':' .. ARGV[3]
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return {0, 0, member}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = math.ceil((tonumber(oldest[2]) or now) + window - now)
return {1, math.max(1, math.min(wait, window))}
"""

#: KEYS: a frequency cap's attempts (a sorted set scored by µs). ARGV: now µs (the
#: caller's clock, unlike the other scripts: the compliance gate's clock is
#: injectable and the memory counter uses the same one), window µs, limit, a unique
#: member suffix. An attempt leaves the window exactly `window` after it was made.
#: Returns {0, 0} when this attempt was admitted and recorded, {1, µs until the
#: oldest attempt leaves} when the cap is reached (nothing recorded).
CAP_ADMIT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  -- (the member from ARGV's text: Lua would print a large number as 1.7e+15)
  redis.call('ZADD', KEYS[1], now, ARGV[1] .. ':' .. ARGV[4])
  -- Kept until the newest attempt leaves (one stamped later by a process whose
  -- clock is ahead included).
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  local last = math.max(now, tonumber(newest[2]) or now)
  redis.call('PEXPIRE', KEYS[1], math.ceil((last + window - now) / 1000) + 1000)
  return {0, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {1, math.max(1, (tonumber(oldest[2]) or now) + window - now)}
"""

#: KEYS: the tenant's window. ARGV: the slot RESERVE gave. Moves the slot to now,
#: the end of its request (a request reaches the CRM between its slot's two times).
SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
"""

#: KEYS: the tenant's quota pause. ARGV: pause ms. Lengthens a pause, never shortens it.
QUOTA_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

#: KEYS: the breaker's state (a hash), its probe claim. ARGV: open ms, token, how
#: long the probe's claim lasts (its call's deadline, at least the open period).
#: Returns {verdict, ms, failures}: `closed`, `open` (ms until a probe may go) or
#: `probe` (this caller holds the fleet's one half-open probe).
BREAKER_ALLOW = (
    _NOW_MS
    + """
local state = redis.call('HMGET', KEYS[1], 'state', 'opened', 'failures')
local failures = math.floor(math.max(0, tonumber(state[3] or '0') or 0))
if state[1] ~= 'open' then
  return {'closed', 0, failures}
end
-- (a garbage or future opening time counts as opened now: never open for longer)
local opened = tonumber(state[2] or '') or now
if opened ~= opened or opened > now then
  opened = now
end
local open_ms = tonumber(ARGV[1])
local left = math.min(opened + open_ms - now, open_ms)
if left > 0 then
  return {'open', math.floor(left), failures}
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return {'probe', 0, failures}
end
return {'open', math.min(open_ms, math.max(1, redis.call('PTTL', KEYS[2]))), failures}
"""
)

#: KEYS: state, probe. ARGV: threshold, token (the probe's, or ''), open ms.
#: Counts a failure fleet-wide; opens at the threshold, or at once when the
#: failure was the probe's. Returns {1, open ms} when this call opened the
#: circuit, {0, ms left} when it was open already, {0, -1} while it is closed.
BREAKER_FAILURE = (
    _NOW_MS
    + """
local probe = ARGV[2] ~= '' and redis.call('GET', KEYS[2]) == ARGV[2]
local state = redis.call('HMGET', KEYS[1], 'state', 'opened', 'failures')
-- (HINCRBY would fail on a garbage count: it is read and written instead)
local failures = math.floor(math.max(0, tonumber(state[3] or '0') or 0)) + 1
redis.call('HSET', KEYS[1], 'failures', failures)
redis.call('PEXPIRE', KEYS[1], 86400000)
if probe or (state[1] ~= 'open' and failures >= tonumber(ARGV[1])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened', now)
  if probe then
    redis.call('DEL', KEYS[2])
  end
  return {1, tonumber(ARGV[3])}
end
if state[1] == 'open' then
  local opened = tonumber(state[2] or '') or now
  if opened ~= opened or opened > now then
    opened = now
  end
  local open_ms = tonumber(ARGV[3])
  return {0, math.floor(math.max(0, math.min(opened + open_ms - now, open_ms)))}
end
return {0, -1}
"""
)

#: KEYS: state, probe. ARGV: token (the probe's, or ''). Resets the count; closes
#: the circuit when the success is the probe's (or the circuit is not open).
BREAKER_SUCCESS = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'open' then
  if ARGV[1] == '' or redis.call('GET', KEYS[2]) ~= ARGV[1] then
    return 0
  end
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
redis.call('PEXPIRE', KEYS[1], 86400000)
return 1
"""
