-- Enqueue a unique task unless one with the same key is waiting or running.
-- KEYS[1]: lock (holds the owner's task id), KEYS[2]: stream, KEYS[3]: delayed set.
-- ARGV: task id, lock ttl seconds, body, eta (0 = now), now, priority digit.
-- KEYS[4] (optional): the queue's default-priority stream, woken when KEYS[2] is new.
-- Returns the id of the task that owns the key: ARGV[1] if this one was enqueued.
local function wake(anchor)
  -- idle workers block only on the streams that exist: wake them for a new one
  local id = redis.call('XADD', anchor, 'NOMKSTREAM', '*', 'w', '')
  if id then redis.call('XDEL', anchor, id) end
end
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if tonumber(ARGV[4]) > tonumber(ARGV[5]) then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6] .. ARGV[3])
else
  local new = KEYS[4] and KEYS[4] ~= KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0
  redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])
  if new then wake(KEYS[4]) end
end
return ARGV[1]
