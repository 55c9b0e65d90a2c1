-- Per-key concurrency limits (docs/concurrency.rst): the slots of one key, all under its
-- hash tag. KEYS: 1 holders (zset: task id -> lease expiry, ms), 2 waiting (zset: parked
-- task id -> arrival, ms; lowest first), 3 waking (zset: woken task id -> claim expiry,
-- ms), 4 parked (hash: task id -> "<priority>:<queue>\n<body>"), 5 limit (string).
-- ARGV: 1 op ('acquire' | 'release' | 'wake'), 2 task id ('' for wake), 3 limit ('' to
-- read KEYS[5]), 4 lease (ms), 5 the parked entry (acquire).
--
-- Every op first frees the slots of holders whose lease ran out (their worker died) and
-- puts back in line the woken messages whose waker never confirmed sending them. Then:
--   acquire: a holder already (a woken message, or the redelivery of a dead holder's)
--            keeps its slot; else the waiters ahead of it are woken into free slots
--            first; then it takes a free slot, or is parked (at its old place in line if
--            it was parked before: a duplicate delivery).
--   release: the holder gives its slot back; waiters are woken into free slots.
--   wake:    waiters are woken into free slots (the periodic reaper).
-- A woken waiter is moved to 'waking' and holds a reserved slot until its lease ends;
-- the caller sends it to its queue, then confirms (concurrency_woken.lua).
-- Returns {granted (1 = run it, 0 = parked, -1 = not an acquire), holders, waiting,
-- waking, woken id 1, woken entry 1, ...}.
local holders, waiting, waking, parked, limitkey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op, id, lease = ARGV[1], ARGV[2], tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local limit = tonumber(ARGV[3])
if limit then
  if tonumber(redis.call('GET', limitkey)) ~= limit then
    redis.call('SET', limitkey, limit)
  end
else
  limit = tonumber(redis.call('GET', limitkey)) or 1
end

redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
local stale = redis.call('ZRANGEBYSCORE', waking, '-inf', now)
for _, w in ipairs(stale) do
  redis.call('ZREM', waking, w)
  redis.call('ZADD', waiting, 0, w)
end

local granted = -1
local own = nil  -- this message's place in line when it was parked before
if op == 'release' then
  redis.call('ZREM', holders, id)
elseif op == 'acquire' then
  granted = 0
  if redis.call('ZSCORE', holders, id) then
    granted = 1
  else
    own = redis.call('ZSCORE', waiting, id)
    if own then own = tonumber(own) end
  end
end

local out = {}
local free = limit - redis.call('ZCARD', holders)
if free > 0 then
  local line = redis.call('ZRANGE', waiting, 0, free, 'WITHSCORES')
  for i = 1, #line, 2 do
    local w, score = line[i], tonumber(line[i + 1])
    if free <= 0 or w == id or (op == 'acquire' and own ~= nil and score > own) then
      break
    end
    local entry = redis.call('HGET', parked, w)
    redis.call('ZREM', waiting, w)
    if entry then
      redis.call('ZADD', waking, now + lease, w)
      redis.call('ZADD', holders, now + lease, w)
      out[#out + 1] = w
      out[#out + 1] = entry
      free = free - 1
    end
  end
  if op == 'acquire' and granted == 0 and free > 0 then
    granted = 1
  end
end

if granted == 1 then
  redis.call('ZADD', holders, now + lease, id)
  redis.call('ZREM', waiting, id)
  redis.call('ZREM', waking, id)
  redis.call('HDEL', parked, id)
elseif granted == 0 then
  redis.call('HSET', parked, id, ARGV[5])
  redis.call('ZADD', waiting, 'NX', own or now, id)
end

local nholders = redis.call('ZCARD', holders)
local nwaiting = redis.call('ZCARD', waiting)
local nwaking = redis.call('ZCARD', waking)
if nholders > 0 then
  redis.call('PEXPIRE', holders, lease * 2 + 60000)
elseif nwaiting == 0 and nwaking == 0 then
  redis.call('DEL', limitkey, parked)
end
local reply = {granted, nholders, nwaiting, nwaking}
for _, v in ipairs(out) do reply[#reply + 1] = v end
return reply
