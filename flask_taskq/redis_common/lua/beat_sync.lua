-- Make beat's entry registry match the leader's schedule. Only the lease holder may.
-- KEYS[1]: lease, KEYS[2]: set of entry names, KEYS[3 .. 2+n]: hashes of the n current
-- entries, then the hashes of entries to remove.
-- ARGV[1]: token, ARGV[2]: now (unix time), ARGV[3]: n, then per current entry its name,
-- schedule fingerprint and task name; then the names of entries to remove.
-- An entry that is new, or whose schedule changed, counts its due times from now.
-- Returns -1 when the token does not hold the lease, else n.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[3])
for i = 1, n do
  local key, name = KEYS[2 + i], ARGV[1 + 3 * i]
  local schedule, task = ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  if redis.call('HGET', key, 'schedule') ~= schedule
      or redis.call('HEXISTS', key, 'since') == 0 then
    redis.call('HSET', key, 'schedule', schedule, 'since', ARGV[2])
  end
  redis.call('HSET', key, 'task', task)
  redis.call('SADD', KEYS[2], name)
end
for i = 3 + n, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 4 + 3 * n, #ARGV do redis.call('SREM', KEYS[2], ARGV[i]) end
return n
