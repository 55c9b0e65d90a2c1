-- Move delayed messages whose time has come (score <= ARGV[1]) from the delayed set
-- KEYS[11] to their priority stream KEYS[p + 1] (KEYS[1..10] = priorities 0..9).
-- Members are "<priority digit><body>". At most ARGV[2] per call.
-- Returns the due time of the next waiting message, or -1 if none waits.
local due = redis.call('ZRANGEBYSCORE', KEYS[11], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local p = tonumber(string.sub(member, 1, 1))
  redis.call('XADD', KEYS[p + 1], '*', 'm', string.sub(member, 2))
  redis.call('ZREM', KEYS[11], member)
end
local nxt = redis.call('ZRANGE', KEYS[11], 0, 0, 'WITHSCORES')
if #nxt == 0 then return '-1' end
return nxt[2]
