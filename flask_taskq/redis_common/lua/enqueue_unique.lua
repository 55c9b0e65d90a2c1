-- Enqueue a unique task unless one with the same key is waiting or running.
-- KEYS[1]: lock (holds the owner's task id), KEYS[2]: stream, KEYS[3]: delayed set.
-- ARGV: task id, lock ttl seconds, body, eta (0 = now), now, priority digit.
-- Returns the id of the task that owns the key: ARGV[1] if this one was enqueued.
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if tonumber(ARGV[4]) > tonumber(ARGV[5]) then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6] .. ARGV[3])
else
  redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])
end
return ARGV[1]
