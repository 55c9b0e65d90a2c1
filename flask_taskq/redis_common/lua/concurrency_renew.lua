-- Extend the leases of live holders of one concurrency key. KEYS[1]: holders (zset: task
-- id -> lease expiry, ms, by Redis's clock). ARGV: 1 lease (ms), 2... the task ids.
-- A holder no longer there (its lease ran out, its slot went to another) is not added
-- back. Returns how many were extended.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', until_ms, ARGV[i])
end
if n > 0 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2 + 60000)
end
return n
