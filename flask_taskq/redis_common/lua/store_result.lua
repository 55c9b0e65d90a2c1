-- Store a task's state. KEYS[1]: result key, KEYS[2]: done list.
-- ARGV[1]: encoded meta, ARGV[2]: ttl seconds (0 = keep), ARGV[3]: '1' if the state is ready.
-- A ready state also pushes one element on the done list, which wakes every waiter.
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
  redis.call('RPUSH', KEYS[2], '1')
  if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
end
return 1
