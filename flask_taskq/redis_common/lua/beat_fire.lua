-- Claim due time ARGV[2] of a periodic entry: only the lease holder may, only once, and
-- only after the entry's last handled due time.
-- KEYS[1]: lease, KEYS[2]: the entry's hash, KEYS[3]: the fired key of this due time.
-- ARGV: token, due, fired key ttl (seconds), now, mode ('fire' or 'skip': mark the due
-- time handled without sending, for catch_up), and optionally the id of the task to send.
-- Returns 1 = done (fire: claimed, the caller sends the task; skip: marked handled),
-- 0 = handled before (by a send whose fired key is still set, or a later due time),
-- -1 = the token does not hold the lease, -2 = the entry is unknown (registry lost).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
local last = tonumber(redis.call('HGET', KEYS[2], 'last'))
if last and last >= tonumber(ARGV[2]) then return 0 end
if ARGV[5] == 'fire' and redis.call('SET', KEYS[3], ARGV[1], 'NX', 'EX', ARGV[3]) then
  redis.call('HSET', KEYS[2], 'last', ARGV[2], 'run_due', ARGV[2], 'run_at', ARGV[4])
  if ARGV[6] then redis.call('HSET', KEYS[2], 'run_id', ARGV[6]) end
  return 1
end
-- Skipped, or fired before (its key is set): handled either way.
redis.call('HSET', KEYS[2], 'last', ARGV[2])
return ARGV[5] == 'fire' and 0 or 1
