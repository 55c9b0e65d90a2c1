-- Add message ARGV[1] to the priority stream KEYS[1] of a queue whose default-priority
-- stream is KEYS[2]. A priority stream exists only while it holds messages, and idle
-- workers block only on the streams that exist: when KEYS[1] is new, an entry added to
-- KEYS[2] and deleted at once wakes them, and their next fetch finds it.
-- Returns the new entry's id.
local new = redis.call('EXISTS', KEYS[1]) == 0
local id = redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
if new then
  local wake = redis.call('XADD', KEYS[2], 'NOMKSTREAM', '*', 'w', '')
  if wake then redis.call('XDEL', KEYS[2], wake) end
end
return id
