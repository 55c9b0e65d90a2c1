-- Read one concurrency key: {limit, live holders, waiting, waking}. KEYS as in
-- concurrency.lua (1 holders, 2 waiting, 3 waking, 4 parked, 5 limit).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {
  tonumber(redis.call('GET', KEYS[5])) or 0,
  redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'),
  redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
}
