-- Fire a chord at most once: claim its "fired" key and, in the same step, enqueue the
-- callback message. KEYS[1]: fired key, KEYS[2]: callback stream, KEYS[3]: delayed set.
-- ARGV: body ('' to only claim, when the chord failed), eta (0 = now), now,
-- priority digit, ttl of the fired key in seconds.
-- KEYS[4] (optional): the callback queue's default-priority stream, woken when KEYS[2]
-- is new.
-- Returns 1 for the one caller that fired, 0 for every other.
local function wake(anchor)
  -- idle workers block only on the streams that exist: wake them for a new one
  local id = redis.call('XADD', anchor, 'NOMKSTREAM', '*', 'w', '')
  if id then redis.call('XDEL', anchor, id) end
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[5]) then return 0 end
if ARGV[1] == '' then return 1 end
if tonumber(ARGV[2]) > tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4] .. ARGV[1])
else
  local new = KEYS[4] and KEYS[4] ~= KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0
  redis.call('XADD', KEYS[2], '*', 'm', ARGV[1])
  if new then wake(KEYS[4]) end
end
return 1
