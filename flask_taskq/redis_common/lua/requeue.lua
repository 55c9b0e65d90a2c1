-- Put held messages back at the tail of their stream, as new entries, and drop the old ones.
-- KEYS[1]: stream. ARGV[1]: group, ARGV[2]: consumer, then pairs of (entry id, body).
-- Only entries the consumer still owns are requeued: one another consumer took over (this
-- one's lease lapsed) stays with it, so no second copy is made.
-- Returns the ids it skipped.
local group, consumer = ARGV[1], ARGV[2]
local skipped = {}
for i = 3, #ARGV, 2 do
  local p = redis.pcall('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1, consumer)
  if p.err == nil and #p > 0 then
    redis.call('XADD', KEYS[1], '*', 'm', ARGV[i + 1])
    redis.call('XACK', KEYS[1], group, ARGV[i])
    redis.call('XDEL', KEYS[1], ARGV[i])
  else
    skipped[#skipped + 1] = ARGV[i]
  end
end
return skipped
