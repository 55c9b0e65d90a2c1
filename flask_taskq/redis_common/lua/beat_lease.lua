-- Take or keep the beat leader lease KEYS[1] for token ARGV[1], for ARGV[2] milliseconds.
-- Returns {code, ttl}: code 2 = taken now, 1 = renewed (this token already held it),
-- 0 = another beat holds it; ttl = the lease's remaining milliseconds (-2 when none).
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(ARGV[2])}
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {2, tonumber(ARGV[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
