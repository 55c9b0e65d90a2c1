-- Move delayed messages whose time has come (score <= ARGV[1]) from the delayed set
-- KEYS[11] to their priority stream KEYS[p + 1] (KEYS[1..10] = priorities 0..9).
-- Members are "<priority digit><body>". At most ARGV[2] per call.
-- Returns the due time of the next waiting message, or -1 if none waits.
local function wake(anchor)
  -- idle workers block only on the streams that exist: wake them for a new one
  local id = redis.call('XADD', anchor, 'NOMKSTREAM', '*', 'w', '')
  if id then redis.call('XDEL', anchor, id) end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local p = tonumber(string.sub(member, 1, 1))
  local new = p ~= 5 and redis.call('EXISTS', KEYS[p + 1]) == 0
  redis.call('XADD', KEYS[p + 1], '*', 'm', string.sub(member, 2))
  if new then wake(KEYS[6]) end
  redis.call('ZREM', KEYS[11], member)
end
local nxt = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
if #nxt == 0 then return '-1' end
return nxt[2]
