-- Replace a held message by its next attempt, atomically: the new message goes to the
-- delayed set KEYS[2] (or straight back to the stream KEYS[1] when already due) and the held
-- entry is acknowledged and deleted. A crash can neither lose nor duplicate the task.
-- ARGV: group, entry id, new body, due unix time, now, priority digit, consumer.
-- Only while consumer ARGV[7] still owns the entry: one another worker took over (this
-- one's lease lapsed) is left to it, so the task is not duplicated. Returns 1, or 0 when
-- it was skipped.
-- include: drop_if_empty
local group, entry, body, due, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local p = redis.pcall('XPENDING', KEYS[1], group, entry, entry, 1, ARGV[7])
if p.err ~= nil or #p == 0 then return 0 end
if tonumber(due) <= tonumber(now) then
  redis.call('XADD', KEYS[1], '*', 'm', body)
else
  redis.call('ZADD', KEYS[2], due, ARGV[6] .. body)
end
redis.call('XACK', KEYS[1], group, entry)
redis.call('XDEL', KEYS[1], entry)
drop_if_empty(KEYS[1], group)
return 1
