-- Renew the leases of entries ARGV[3..] that consumer ARGV[2] still owns in group ARGV[1]
-- of stream KEYS[1] (resets their idle time). Returns the ids it no longer owns (also all
-- of them when the group is gone, e.g. Redis restarted without its data).
local group, consumer = ARGV[1], ARGV[2]
local owned, lost = {}, {}
for i = 3, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1, consumer)
  if p.err == nil and #p > 0 then owned[#owned + 1] = ARGV[i] else lost[#lost + 1] = ARGV[i] end
end
if #owned > 0 then
  -- JUSTID: reset the idle time without counting a new delivery.
  owned[#owned + 1] = 'JUSTID'
  redis.call('XCLAIM', KEYS[1], group, consumer, 0, unpack(owned))
end
return lost
