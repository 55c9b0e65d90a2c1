-- Take one token from a task's token bucket KEYS[1] (hash: tokens, ts), shared by every
-- worker. The bucket holds at most ARGV[2] tokens and refills continuously at ARGV[1]
-- tokens per second; time is Redis' own (TIME), so all workers share one clock.
-- ARGV: rate (tokens/s, > 0), burst (capacity, >= 1), task id or '' (see below).
-- Returns the wait in milliseconds as an integer: 0 = a token was taken, run now; else
-- how long until a token may be had (nothing was taken; ask again then).
--
-- With a task id, a caller that finds no token books the next free one instead: the
-- bucket goes into debt (tokens < 0), field 'r:<id>' records the slot (microseconds) and
-- the wait until it is returned. The same id asking again at or after its slot is granted
-- at once without taking another token (and the field is deleted); asking before it gets
-- the time left. A backlog is thus spread over distinct slots instead of all its messages
-- asking again together at every token. A slot never redeemed (message lost or purged)
-- only wastes that token, and its field goes with the key.
--
-- The key expires once idle long enough to have refilled completely (it then equals a
-- full bucket), so only buckets in use take memory.
local rate, burst, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])  -- microseconds

local slot_field = nil
if id ~= nil and id ~= '' then slot_field = 'r:' .. id end

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts', slot_field or 'tokens')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
else
  -- A clock that went backwards (failover) refills nothing; it does not stall either.
  if now > ts then tokens = tokens + (now - ts) * rate / 1000000 end
  if tokens > burst then tokens = burst end
end

local wait = 0
local slot = slot_field and tonumber(state[3])
if slot then
  if now >= slot then
    redis.call('HDEL', KEYS[1], slot_field)
  else
    wait = math.ceil((slot - now) / 1000)
  end
elseif tokens >= 1 - 1e-9 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
  if slot_field then
    tokens = tokens - 1
    redis.call('HSET', KEYS[1], slot_field, string.format('%d', now + wait * 1000))
  end
end

redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts',
           string.format('%d', now))
-- Idle until full, then two more bucket-lengths; at least one second.
local full_ms = math.ceil((burst - tokens) * 1000 / rate)
local ttl = full_ms + math.ceil(2000 * burst / rate)
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', KEYS[1], ttl)
return wait
