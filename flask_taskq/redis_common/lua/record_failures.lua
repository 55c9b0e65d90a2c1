-- Remember tasks that failed without being dead-lettered, newest kept.
-- KEYS[1]: sorted set of task ids scored by time, KEYS[2]: hash task id -> JSON record.
-- ARGV[1]: how many to keep; then triples (task id, unix time, record).
local limit = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
end
local extra = redis.call('ZCARD', KEYS[1]) - limit
local trimmed = extra
while extra > 0 do
  local n = math.min(extra, 500)
  local old = redis.call('ZRANGE', KEYS[1], 0, n - 1)
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
  extra = extra - n
end
return math.max(trimmed, 0)
