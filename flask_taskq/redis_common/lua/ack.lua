-- Acknowledge and delete entries ARGV[3..] of stream KEYS[1] that consumer ARGV[2] still
-- owns in group ARGV[1]. An entry another consumer took over (this one's lease lapsed) is
-- left to that consumer, and one no longer pending is left alone.
-- Returns the ids it did not acknowledge.
local group, consumer = ARGV[1], ARGV[2]
local owned, skipped = {}, {}
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1, consumer)
  if p.err == nil and #p > 0 then owned[#owned + 1] = ARGV[i] else skipped[#skipped + 1] = ARGV[i] end
end
if #owned > 0 then
  redis.call('XACK', KEYS[1], group, unpack(owned))
  redis.call('XDEL', KEYS[1], unpack(owned))
end
return skipped
