-- Drop an idle concurrency key from the registry (KEYS[1], zset: key -> times it was
-- noted), unless it was noted again since the caller read ARGV[2] (its score then).
-- ARGV: 1 the key, 2 the score read. Returns 1 when dropped.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
