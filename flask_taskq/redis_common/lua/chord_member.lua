-- Record a chord member's return value. KEYS[1]: the chord's results hash.
-- ARGV: member index, encoded value, chord size, ttl seconds (0 = keep).
-- Idempotent: a member run again (redelivered after a crash) keeps its first value.
-- Returns the flat HGETALL of every member's value once all are in, else the count.
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[4])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
local count = redis.call('HLEN', KEYS[1])
if count >= tonumber(ARGV[3]) then
  return redis.call('HGETALL', KEYS[1])
end
return count
