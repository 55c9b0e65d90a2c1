-- Replay check of a signed message just before it runs (flask_taskq/worker/replay.py).
-- KEYS[1]: the task's seen key, KEYS[2]: its result key (same hash tag: the task id).
-- ARGV[1]: attempt (the message's retry count), ARGV[2]: '<stream> <entry id>' of this
-- delivery, ARGV[3]: ttl seconds, ARGV[4]: '1' for a first delivery.
-- Returns false when the message may run (a new attempt, or the same stream entry again
-- after a crash) and records this start; returns why it is a replay otherwise.
local attempt = tonumber(ARGV[1])
local old = redis.call('GET', KEYS[1])
if old then
  local sep = string.find(old, ' ', 1, true)
  local was = tonumber(string.sub(old, 1, (sep or 1) - 1)) or -1
  local where = sep and string.sub(old, sep + 1) or ''
  if was > attempt then
    return 'attempt ' .. was .. ' already started from ' .. where
  end
  if was == attempt then
    if where == ARGV[2] then return false end
    return 'attempt ' .. was .. ' already started from ' .. where
  end
elseif ARGV[4] == '1' then
  -- a final state's name is plain bytes in the document whatever the serializer
  local result = redis.call('GET', KEYS[2])
  if result and (string.find(result, 'SUCCESS', 1, true) or string.find(result, 'FAILURE', 1, true)
      or string.find(result, 'REVOKED', 1, true)) then
    return 'it already has a final result'
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[3])
return false
