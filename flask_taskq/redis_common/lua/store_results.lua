-- Store a batch of task states. Per task three KEYS: its result key, its waiting mark,
-- its done list (one hash tag: the task id). ARGV[1]: ttl seconds (0 = keep); then per
-- task two ARGV: the encoded document and its kind: '0' a state that is not final, '1' a
-- final (ready) state, '2' STARTED.
-- A final state wakes waiters, only if one announced itself (the waiting mark): it
-- pushes one element on the done list, which stays, so every waiter wakes. Nobody
-- waiting: nothing but the SET.
-- STARTED never replaces a document that is not STARTED or RETRY (a final result, or a
-- state the task reported): the status names are plain bytes in every serializer.
local ttl = tonumber(ARGV[1])
local function final(old)
  return string.find(old, 'SUCCESS', 1, true) or string.find(old, 'FAILURE', 1, true)
    or string.find(old, 'REVOKED', 1, true)
end
for i = 1, #KEYS, 3 do
  local a = 2 + (i - 1) / 3 * 2
  local kind = ARGV[a + 1]
  local write = true
  if kind == '2' then
    local old = redis.call('GET', KEYS[i])
    if old then
      write = (string.find(old, 'STARTED', 1, true) or string.find(old, 'RETRY', 1, true))
        and not final(old)
    end
  end
  if write then
    if ttl > 0 then
      redis.call('SET', KEYS[i], ARGV[a], 'EX', ttl)
    else
      redis.call('SET', KEYS[i], ARGV[a])
    end
    if kind == '1' and redis.call('DEL', KEYS[i + 1]) == 1 then
      redis.call('DEL', KEYS[i + 2])
      redis.call('RPUSH', KEYS[i + 2], '1')
      if ttl > 0 then redis.call('EXPIRE', KEYS[i + 2], ttl) end
    end
  end
end
return 1
