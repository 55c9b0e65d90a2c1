-- Fire a chord at most once: claim its "fired" key and, in the same step, enqueue the
-- callback message. KEYS[1]: fired key, KEYS[2]: callback stream, KEYS[3]: delayed set.
-- ARGV: body ('' to only claim, when the chord failed), eta (0 = now), now,
-- priority digit, ttl of the fired key in seconds.
-- Returns 1 for the one caller that fired, 0 for every other.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[5]) then return 0 end
if ARGV[1] == '' then return 1 end
if tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4] .. ARGV[1])
else
  redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
end
return 1
