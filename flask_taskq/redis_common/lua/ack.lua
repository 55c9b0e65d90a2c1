-- Acknowledge and delete entries ARGV[3..] of stream KEYS[1] that consumer ARGV[2] still
-- owns in group ARGV[1]. An entry another consumer took over (this one's lease lapsed) is
-- left to that consumer, and one no longer pending is left alone.
-- A stream of another priority than the default left empty is deleted (data-model.rst).
-- Returns the ids it did not acknowledge.
-- include: drop_if_empty
local group, consumer = ARGV[1], ARGV[2]
local owned, skipped = {}, {}
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1, consumer)
  if p.err == nil and #p > 0 then owned[#owned + 1] = ARGV[i] else skipped[#skipped + 1] = ARGV[i] end
end
if #owned > 0 then
  redis.call('XACK', KEYS[1], group, unpack(owned))
  redis.call('XDEL', KEYS[1], unpack(owned))
  drop_if_empty(KEYS[1], group)
end
return skipped
